/**
 * Registry: where the image the service runs comes from. Building from source gets an ECR repository
 * (scan on push, immutable tags, KMS) and a docker build pushed as `<repo>:<version>`; the task
 * definition then runs the pushed digest, so each deployment records exactly which image it ran.
 * A prebuilt `image` runs as `<image>:<version>`; a pinned digest (rollback) never builds.
 */
import * as aws from "@pulumi/aws";
import * as docker from "@pulumi/docker";
import * as pulumi from "@pulumi/pulumi";
import { readFileSync } from "fs";
import * as path from "path";
import { REPO_ROOT } from "./repo-root";
import { VERSION_RE } from "./config";
import { ComponentArgumentError, checkName, childName, ecrRepositoryArn } from "./naming";

export const REGISTRY_TYPE = "deployer:infra:Registry";

/** The repository root: build contexts are given relative to it. */

export interface RegistryBuild {
  /** The build context, relative to the repository root (or absolute). */
  readonly context: string;
  /** The Dockerfile, relative to the context. Default: `Dockerfile` in the context. */
  readonly dockerfile?: string;
}

export interface RegistryArgs {
  /** Build the image from source and push it to a new ECR repository. Give this or `image`. */
  readonly build?: RegistryBuild;
  /** Or run a prebuilt image, `<registry>/<repository>` without a tag. No repository is created. */
  readonly image?: string;
  /** The deploy version: the image tag. Never `latest`. */
  readonly version: string;
  /** Pin the image to this digest (`sha256:…`) instead of building or resolving the tag; rollbacks do this. */
  readonly imageDigest?: string;
  /** Images the lifecycle policy keeps in the repository. Default 30. */
  readonly keepImages?: number;
  /** Keep the repository (and its images) on destroy (`retainOnDelete`). Default false: destroy removes it with its images. */
  readonly deletionProtection?: boolean;
  /** Build platform. Default `linux/amd64`, what the Fargate task definition runs. */
  readonly platform?: string;
  /**
   * Paths the task mounts writable volumes at (the service's `/tmp`). A build's Dockerfile must
   * declare each as a `VOLUME`: ECS then copies the image's directory, with its owner and mode,
   * onto the volume; otherwise the volume is root-owned 0755 and a non-root user cannot write.
   */
  readonly writablePaths?: readonly string[];
}

/** The paths a Dockerfile's `VOLUME` instructions declare (JSON and plain forms). */
export function dockerfileVolumes(text: string): string[] {
  const out: string[] = [];
  const lines = text.replace(/\\\r?\n/g, " ").split(/\r?\n/);
  for (const line of lines) {
    const m = /^\s*VOLUME\s+(.+)$/i.exec(line);
    if (!m) continue;
    const arg = m[1].trim();
    if (arg.startsWith("[")) {
      try {
        out.push(...(JSON.parse(arg) as unknown[]).filter((v): v is string => typeof v === "string"));
      } catch {
        continue;
      }
    } else {
      out.push(...arg.split(/\s+/));
    }
  }
  return out.map((p) => (p.length > 1 ? p.replace(/\/+$/, "") : p));
}

/** Keeps the newest `keep` images whatever their tags; older ones expire. */
export function lifecyclePolicy(keep: number): object {
  return {
    rules: [
      {
        rulePriority: 1,
        description: `keep the last ${keep} images`,
        selection: { tagStatus: "any", countType: "imageCountMoreThan", countNumber: keep },
        action: { type: "expire" },
      },
    ],
  };
}

/** What the task definition runs when nothing is built: the digest when pinned, else the version tag. */
export function imageReference(repository: string, version: string, digest?: string): string {
  return digest === undefined ? `${repository}:${version}` : `${repository}@${digest}`;
}

export function validateRegistryArgs(name: string, args: RegistryArgs): void {
  checkName(REGISTRY_TYPE, name);
  const fail = (arg: string, reason: string) => new ComponentArgumentError(REGISTRY_TYPE, name, arg, reason);
  if ((args.build === undefined) === (args.image === undefined)) throw fail("build", "give either `build` or `image`, not both and not neither");
  if (args.build !== undefined && args.build.context.trim() === "") throw fail("build.context", "must name a directory");
  if (args.image !== undefined && /(:[^/]*|@.*)$/.test(args.image.replace(/^[^/]*\//, ""))) throw fail("image", `"${args.image}" must not carry a tag or digest; the version is the tag`);
  if (!VERSION_RE.test(args.version) || args.version.toLowerCase() === "latest") throw fail("version", `"${args.version}" must match ${VERSION_RE.source} and not be "latest"`);
  if (args.imageDigest !== undefined && !/^sha256:[a-f0-9]{64}$/.test(args.imageDigest)) throw fail("imageDigest", "must be an image digest like sha256:<64 hex>");
  const keep = args.keepImages;
  if (keep !== undefined && (!Number.isInteger(keep) || keep < 1)) throw fail("keepImages", "must be a whole number of at least 1");
  if (args.build !== undefined && (args.writablePaths ?? []).length > 0) {
    const context = path.resolve(REPO_ROOT, args.build.context);
    const dockerfile = path.join(context, args.build.dockerfile ?? "Dockerfile");
    let text: string;
    try {
      text = readFileSync(dockerfile, "utf8");
    } catch (err) {
      throw fail("build.dockerfile", `cannot be read at ${dockerfile} (${err instanceof Error ? err.message : String(err)})`);
    }
    const declared = new Set(dockerfileVolumes(text));
    const missing = (args.writablePaths ?? []).filter((p) => !declared.has(p));
    if (missing.length > 0) {
      throw fail("build.dockerfile", `${path.relative(REPO_ROOT, dockerfile)} must declare VOLUME ${JSON.stringify(missing)}: the task mounts a writable volume there over a read-only root, and only a declared path gets the image's owner and mode (otherwise it is root-owned 0755)`);
    }
  }
}

export class Registry extends pulumi.ComponentResource {
  /** What the task definition runs: the pushed `repo@sha256:…` for a build, else the tag or pinned digest. */
  public readonly imageRef: pulumi.Output<string>;
  /** The ECR repository URL for a build, else the prebuilt `image`. */
  public readonly repositoryUrl: pulumi.Output<string>;
  /** The ECR repository tasks pull from, when the image is in ECR; undefined for other registries. */
  public readonly repositoryArn?: pulumi.Output<string>;

  constructor(name: string, args: RegistryArgs, opts?: pulumi.ComponentResourceOptions) {
    validateRegistryArgs(name, args);
    super(REGISTRY_TYPE, name, {}, opts);
    const parent = { parent: this };
    const n = (role: string) => childName(name, role);

    if (args.build !== undefined) {
      const repo = new aws.ecr.Repository(
        n("repo"),
        {
          // Named after the deployment so operators find it; a repository is never renamed.
          name,
          imageTagMutability: "IMMUTABLE",
          imageScanningConfiguration: { scanOnPush: true },
          encryptionConfigurations: [{ encryptionType: "KMS" }],
          forceDelete: !(args.deletionProtection ?? false),
        },
        // Destroy, protected: the repository and its images stay (a rollback or an audit needs them),
        // since `forceDelete: false` alone would only make destroy fail with RepositoryNotEmpty.
        { parent: this, retainOnDelete: args.deletionProtection ?? false },
      );
      new aws.ecr.LifecyclePolicy(n("repo-lifecycle"), { repository: repo.name, policy: JSON.stringify(lifecyclePolicy(args.keepImages ?? 30)) }, parent);
      this.repositoryUrl = repo.repositoryUrl;
      this.repositoryArn = repo.arn;

      if (args.imageDigest !== undefined) {
        const digest = args.imageDigest;
        this.imageRef = repo.repositoryUrl.apply((url) => imageReference(url, args.version, digest));
      } else {
        const context = path.resolve(REPO_ROOT, args.build.context);
        const creds = aws.ecr.getAuthorizationTokenOutput({ registryId: repo.registryId }, parent);
        const image = new docker.Image(
          n("image"),
          {
            imageName: pulumi.interpolate`${repo.repositoryUrl}:${args.version}`,
            build: {
              context,
              dockerfile: args.build.dockerfile === undefined ? undefined : path.join(context, args.build.dockerfile),
              platform: args.platform ?? "linux/amd64",
            },
            // Previews (and the review gates) must not need a Docker engine.
            buildOnPreview: false,
            registry: { server: repo.repositoryUrl, username: creds.userName, password: pulumi.secret(creds.password) },
          },
          parent,
        );
        this.imageRef = image.repoDigest;
      }
    } else {
      const repository = args.image as string;
      this.repositoryUrl = pulumi.output(repository);
      const arn = ecrRepositoryArn(repository);
      if (arn !== undefined) this.repositoryArn = pulumi.output(arn);
      this.imageRef = pulumi.output(imageReference(repository, args.version, args.imageDigest));
    }

    this.registerOutputs({ imageRef: this.imageRef, repositoryUrl: this.repositoryUrl, repositoryArn: this.repositoryArn });
  }
}
