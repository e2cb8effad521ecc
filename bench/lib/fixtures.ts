/**
 * What the benchmarks run against: temporary directories, a tokens file with one admin token (sent as
 * `Authorization: Bearer` on every request, harmless while authentication is not wired), environment
 * directories of offline stacks, and the service as a process (`node dist/api/main.js`, exactly what
 * `npm start` runs after compiling).
 */
import { createHash, randomBytes } from "crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "fs";
import { request } from "http";
import { tmpdir } from "os";
import * as path from "path";
import { COMPILED_SERVICE } from "./compile";
import { httpJson, pollUntil200 } from "./http";
import { REPO_ROOT, freePort, lastLoggedError, rssBytes, spawnNode, stopProcess, tail, type Spawned } from "./proc";

const liveDirs = new Set<string>();

export function tempDir(prefix: string): string {
  const dir = mkdtempSync(path.join(tmpdir(), `deployer-bench-${prefix}-`));
  liveDirs.add(dir);
  return dir;
}

export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
  liveDirs.delete(dir);
}

/** Removes every temporary directory not removed yet (an interrupted run). */
export function removeAllTempDirs(): void {
  for (const dir of [...liveDirs]) {
    try {
      removeDir(dir);
    } catch {
      // best effort
    }
  }
}

export interface Token {
  readonly token: string;
  readonly file: string;
  readonly headers: Record<string, string>;
}

/** Writes `<dir>/tokens.yaml` with one admin token on every stack. */
export function writeTokens(dir: string): Token {
  const token = `bench_${randomBytes(24).toString("hex")}`;
  const sha256 = createHash("sha256").update(token).digest("hex");
  const file = path.join(dir, "tokens.yaml");
  writeFileSync(file, `tokens:\n  - name: bench\n    sha256: ${sha256}\n    roles: {"*": [admin]}\n`, { mode: 0o600 });
  return { token, file, headers: { authorization: `Bearer ${token}` } };
}

/**
 * `<dir>/envs/`: for each name a copy of environments/local.yaml (offline engine, no approvals), each
 * with its own VPC CIDR so the loader's overlap check passes.
 */
export function writeEnvDir(dir: string, names: readonly string[]): string {
  const envDir = path.join(dir, "envs");
  mkdirSync(envDir, { recursive: true });
  const local = readFileSync(path.join(REPO_ROOT, "environments", "local.yaml"), "utf8");
  if (!/cidr: 10\.0\.0\.0\/16/.test(local)) throw new Error("environments/local.yaml no longer has cidr 10.0.0.0/16; update bench/lib/fixtures.ts");
  names.forEach((name, i) => {
    if (i >= 250) throw new Error("at most 250 bench environments");
    writeFileSync(path.join(envDir, `${name}.yaml`), local.replace(/cidr: 10\.0\.0\.0\/16/, `cidr: 10.${i + 1}.0.0/16`));
  });
  return envDir;
}

export interface ServiceOptions {
  readonly dir: string;
  readonly token: Token;
  /** Default: the repository's environments/. */
  readonly envDir?: string;
  readonly maxConcurrent?: number;
  /** Extra environment variables. */
  readonly env?: Record<string, string>;
  /** Default 10 ms. */
  readonly pollMs?: number;
  readonly readyTimeoutMs?: number;
  /** Node options for the service process (`--cpu-prof`). */
  readonly nodeArgs?: readonly string[];
}

/** The service as `npm start` runs it, on a free loopback port, over `<dir>/data`. */
export class ServiceProcess {
  readonly url: string;
  readonly headers: Record<string, string>;
  /** ms from spawn to the first 200 from /readyz. */
  readonly readyMs: number;

  private constructor(
    readonly spawned: Spawned,
    url: string,
    token: Token,
    readyMs: number,
  ) {
    this.url = url;
    this.headers = token.headers;
    this.readyMs = readyMs;
  }

  static async start(options: ServiceOptions): Promise<ServiceProcess> {
    const port = await freePort();
    const env: Record<string, string> = {
      PORT: String(port),
      DEPLOYER_HOST: "127.0.0.1",
      DEPLOYER_DATA_DIR: path.join(options.dir, "data"),
      DEPLOYER_TOKENS_FILE: options.token.file,
      DEPLOYER_SHUTDOWN_GRACE_SECONDS: "5",
      // The bench submits deployments faster than the default 60 a minute per principal; reads are not limited.
      DEPLOYER_RATE_LIMIT_PER_MINUTE: "100000",
      ...(options.envDir ? { DEPLOYER_ENV_DIR: options.envDir } : {}),
      ...(options.maxConcurrent ? { DEPLOYER_MAX_CONCURRENT: String(options.maxConcurrent) } : {}),
      ...(options.env ?? {}),
    };
    const logFile = path.join(options.dir, `service-${port}.log`);
    const spawned = spawnNode(COMPILED_SERVICE, env, logFile, options.nodeArgs);
    const url = `http://127.0.0.1:${port}`;
    try {
      const at = await pollUntil200(`${url}/readyz`, {
        intervalMs: options.pollMs ?? 10,
        timeoutMs: options.readyTimeoutMs ?? 30_000,
        alive: () => spawned.child.exitCode === null && spawned.child.signalCode === null,
      });
      return new ServiceProcess(spawned, url, options.token, at - spawned.spawnedAt);
    } catch (err) {
      await stopProcess(spawned.child, 1_000);
      throw new Error(`${(err as Error).message}${tail(logFile) ? `; service log: ${tail(logFile, 3)}` : ""}`);
    }
  }

  get pid(): number {
    return this.spawned.child.pid!;
  }

  rss(): number {
    return rssBytes(this.pid);
  }

  stop(): Promise<void> {
    return stopProcess(this.spawned.child, 7_000);
  }

  /** POSTs a deployment; resolves with the job (202). */
  deploy(stack: string, version: string): Promise<{ id: string; status: string }> {
    return withLog(this.spawned.logFile, httpJson(`${this.url}/v1/stacks/${stack}/deployments`, { method: "POST", headers: this.headers, body: { version }, expect: 202 }));
  }

  getJob(id: string): Promise<{ id: string; status: string; error?: { message: string } }> {
    return withLog(this.spawned.logFile, httpJson(`${this.url}/v1/jobs/${id}`, { headers: this.headers }));
  }

  /** Resolves with the job from the `end` event of its event stream (and performance.now() when it arrived). */
  waitEnd(id: string, timeoutMs: number): Promise<{ job: { id: string; status: string; error?: { message: string } }; at: number }> {
    return waitJobEnd(this.url, id, this.headers, timeoutMs);
  }

  /** Like waitEnd, and throws unless the job succeeded. */
  async waitSucceeded(id: string, timeoutMs: number): Promise<number> {
    const { job, at } = await this.waitEnd(id, timeoutMs);
    if (job.status !== "succeeded") throw new Error(`job ${id} ended ${job.status}${job.error ? `: ${job.error.message}` : ""}`);
    return at;
  }

  logTail(lines = 3): string {
    return tail(this.spawned.logFile, lines);
  }
}

/** A failed request's error, with what the service logged about it (a 500 says "see the log"). */
export async function withLog<T>(logFile: string, request: Promise<T>): Promise<T> {
  try {
    return await request;
  } catch (err) {
    const logged = lastLoggedError(logFile);
    throw logged ? new Error(`${(err as Error).message.split(" {")[0]}; service log: ${logged}`) : err;
  }
}

/** Follows `GET /v1/jobs/:id/events` until `event: end`; resolves with the job it carries. */
export function waitJobEnd(baseUrl: string, id: string, headers: Record<string, string>, timeoutMs: number): Promise<{ job: any; at: number }> {
  return new Promise((resolve, reject) => {
    const req = request(`${baseUrl}/v1/jobs/${id}/events`, { headers: { ...headers, accept: "text/event-stream" }, agent: false }, (res) => {
      if (res.statusCode !== 200) {
        res.resume();
        finish(new Error(`GET /v1/jobs/${id}/events: ${res.statusCode}`));
        return;
      }
      let buf = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => {
        const at = performance.now();
        buf += chunk;
        let i: number;
        while ((i = buf.indexOf("\n\n")) >= 0) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          if (/^event: end$/m.test(block)) {
            const data = /^data: (.*)$/m.exec(block)?.[1];
            finish(undefined, { job: data ? JSON.parse(data) : undefined, at });
            return;
          }
        }
      });
      res.on("end", () => finish(new Error(`the event stream of job ${id} ended without an end event`)));
    });
    let settled = false;
    const timer = setTimeout(() => finish(new Error(`job ${id} did not end within ${timeoutMs} ms`)), timeoutMs);
    function finish(err?: Error, value?: { job: any; at: number }) {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      req.destroy();
      if (err) reject(err);
      else resolve(value!);
    }
    req.on("error", (err) => finish(err));
    req.end();
  });
}
