/**
 * The update locks a DIY backend (file:// or s3://) holds for a stack. The pulumi CLI writes one
 * JSON file per running update under `.pulumi/locks/organization/<project>/<stack>/` (or
 * `.pulumi/locks/<stack>/` in a legacy, non-project backend) and deletes it when the update ends;
 * `pulumi cancel` deletes them all. Reading them is how recovery says what was really there,
 * instead of assuming that `pulumi cancel` exiting 0 cleared something.
 */
import { promises as fsp } from "fs";
import * as path from "path";
import { awsClientConfig } from "../checks/aws-config";

export interface BackendLock {
  /** Where the lock is (a file path or an s3 key). */
  readonly key: string;
  readonly pid: number | null;
  readonly username: string;
  readonly hostname: string;
  readonly timestamp: string;
  /** The file does not parse: a lock the CLI was killed while writing. */
  readonly cutShort?: true;
}

function lockDirs(project: string, stack: string): string[] {
  return [path.posix.join(".pulumi", "locks", "organization", project, stack), path.posix.join(".pulumi", "locks", stack)];
}

function parseLock(key: string, text: string): BackendLock {
  try {
    const l = JSON.parse(text) as { pid?: number; username?: string; hostname?: string; timestamp?: string };
    return { key, pid: typeof l.pid === "number" ? l.pid : null, username: l.username ?? "unknown", hostname: l.hostname ?? "unknown", timestamp: l.timestamp ?? "unknown" };
  } catch {
    return { key, pid: null, username: "unknown", hostname: "unknown", timestamp: "unknown", cutShort: true };
  }
}

/** The stack's locks in the backend at `backendUrl` (file:// paths absolute). */
export async function readBackendLocks(backendUrl: string, project: string, stack: string, env: NodeJS.ProcessEnv = process.env): Promise<BackendLock[]> {
  if (backendUrl.startsWith("file://")) return readFileLocks(backendUrl.slice("file://".length).replace(/^~(?=\/|$)/, env.HOME ?? "~"), project, stack);
  if (backendUrl.startsWith("s3://")) return readS3Locks(new URL(backendUrl), project, stack, env);
  throw new Error(`locks of backend ${backendUrl} cannot be read (only file:// and s3:// backends)`);
}

async function readFileLocks(root: string, project: string, stack: string): Promise<BackendLock[]> {
  const found: BackendLock[] = [];
  for (const dir of lockDirs(project, stack)) {
    const abs = path.join(root, dir);
    let names: string[];
    try {
      names = (await fsp.readdir(abs, { withFileTypes: true })).filter((d) => d.isFile()).map((d) => d.name);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") continue;
      throw err;
    }
    // Every object in the directory is a lock to the CLI (it refuses to update while one is there),
    // the temporary file of a lock it was killed while writing included; fileblob's sidecars are not.
    for (const name of names.filter((n) => !n.endsWith(".attrs"))) {
      const file = path.join(abs, name);
      found.push(parseLock(file, await fsp.readFile(file, "utf8")));
    }
  }
  return found;
}

async function readS3Locks(url: URL, project: string, stack: string, env: NodeJS.ProcessEnv): Promise<BackendLock[]> {
  const { S3Client, ListObjectsV2Command, GetObjectCommand } = await import("@aws-sdk/client-s3");
  const bucket = url.hostname;
  const prefix = url.pathname.replace(/^\/+|\/+$/g, "");
  const params = url.searchParams;
  const settings = awsClientConfig(env, "S3", params.get("region") ?? env.AWS_REGION ?? env.AWS_DEFAULT_REGION ?? "us-east-1");
  const endpoint = params.get("endpoint") ?? settings.endpoint;
  const client = new S3Client({
    ...settings,
    // The backend URL's own endpoint wins, as it does for the CLI (gocloud's `endpoint` parameter).
    ...(endpoint ? { endpoint } : {}),
    // A local endpoint (moto, MinIO) has no bucket subdomains.
    forcePathStyle: params.get("s3ForcePathStyle") === "true" || params.get("use_path_style") === "true" || endpoint !== undefined,
  });
  try {
    const found: BackendLock[] = [];
    for (const dir of lockDirs(project, stack)) {
      const listed = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: `${prefix === "" ? "" : `${prefix}/`}${dir}/` }));
      for (const obj of listed.Contents ?? []) {
        if (!obj.Key || obj.Key.endsWith("/")) continue;
        const got = await client.send(new GetObjectCommand({ Bucket: bucket, Key: obj.Key }));
        found.push(parseLock(`s3://${bucket}/${obj.Key}`, (await got.Body?.transformToString()) ?? ""));
      }
    }
    return found;
  } finally {
    client.destroy();
  }
}
