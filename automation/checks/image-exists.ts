/**
 * Does a recorded image still exist? ECR's lifecycle policy expires images beyond the newest
 * `app.keepImages`, so a rollback to an old deployment's digest would fail at the task's start with
 * CannotPullContainerError, after the service had already changed. The rollback asks first.
 *
 * `EcrImageCatalog` asks ECR (DescribeImages by digest); `OfflineImageCatalog` reads the offline
 * data directory's `expired-images.json` (a list of digests), so an expired image can be simulated.
 */
import type { ECRClient } from "@aws-sdk/client-ecr";
import { existsSync, readFileSync } from "fs";
import * as path from "path";
import { z } from "zod";
import { assertStackName } from "../environment";
import { ConfigError } from "../errors";
import { dataDir as defaultDataDir, offlineStackDir } from "../paths";
import { awsErrorName, describeAwsError } from "./aws-errors";
import { parseEcrImageRef } from "./image-scan";

/** `present`, `missing`, or `unknown` (not an ECR image, or ECR could not say: the caller goes ahead). */
export type ImagePresence = { readonly status: "present" } | { readonly status: "missing" } | { readonly status: "unknown"; readonly reason: string };

export interface ImageCatalog {
  /** Whether `<registry>/<repo>@sha256:…` can still be pulled. */
  presence(imageRef: string, stack: string, options?: { signal?: AbortSignal }): Promise<ImagePresence>;
}

export class EcrImageCatalog implements ImageCatalog {
  constructor(private readonly ecr?: ECRClient | ((region: string) => ECRClient)) {}

  async presence(imageRef: string, _stack: string, options: { signal?: AbortSignal } = {}): Promise<ImagePresence> {
    const ref = parseEcrImageRef(imageRef);
    if (typeof ref === "string") return { status: "unknown", reason: ref };
    if (ref.imageDigest === undefined) return { status: "unknown", reason: `${imageRef} is not pinned by digest` };
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const sdk = require("@aws-sdk/client-ecr") as typeof import("@aws-sdk/client-ecr");
    const client = typeof this.ecr === "function" ? this.ecr(ref.region) : this.ecr ?? new sdk.ECRClient({ region: ref.region });
    try {
      const out = await client.send(new sdk.DescribeImagesCommand({ registryId: ref.registryId, repositoryName: ref.repositoryName, imageIds: [{ imageDigest: ref.imageDigest }] }), { abortSignal: options.signal });
      return (out.imageDetails ?? []).length > 0 ? { status: "present" } : { status: "missing" };
    } catch (err) {
      if (awsErrorName(err) === "ImageNotFoundException") return { status: "missing" };
      return { status: "unknown", reason: describeAwsError(err) };
    }
  }
}

export const EXPIRED_IMAGES_FILE = "expired-images.json";
const expiredFileSchema = z.array(z.string().regex(/^sha256:[a-f0-9]{64}$/, "must be an image digest like sha256:<64 hex>"));

export class OfflineImageCatalog implements ImageCatalog {
  constructor(private readonly dataDir: string = defaultDataDir()) {}

  async presence(imageRef: string, stack: string): Promise<ImagePresence> {
    assertStackName(stack);
    const file = path.join(offlineStackDir(stack, this.dataDir), EXPIRED_IMAGES_FILE);
    if (!existsSync(file)) return { status: "present" };
    let raw: unknown;
    try {
      raw = JSON.parse(readFileSync(file, "utf8"));
    } catch (err) {
      throw new ConfigError(`${file}: is not valid JSON: ${err instanceof Error ? err.message : String(err)}`, { details: { file } });
    }
    const parsed = expiredFileSchema.safeParse(raw);
    if (!parsed.success) throw new ConfigError(`${file}: ${parsed.error.issues[0].path.join(".") || "(file)"}: ${parsed.error.issues[0].message}`, { details: { file } });
    const digest = /@(sha256:[a-f0-9]{64})$/.exec(imageRef)?.[1];
    return digest !== undefined && parsed.data.includes(digest) ? { status: "missing" } : { status: "present" };
  }
}
