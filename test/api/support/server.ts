/**
 * The real service, in-process on 127.0.0.1:0, over a temporary data dir, for API tests: with the
 * controllable TestEngine (default) or the real offline engine (`engine: "offline"`). Jobs are awaited
 * through the queue's `job:done` event, never by polling.
 *
 * It authenticates like any client: a tokens file (outside the data dir) holds an `admin` token with
 * `{"*": [admin]}` and any `principals` asked for; `t.http()` sends the admin's token on every request,
 * `t.as(name)` another principal's, `t.anonymous()` none. Rate limits are set high unless asked for.
 */
import { mkdtempSync, rmSync, writeFileSync } from "fs";
import { tmpdir } from "os";
import * as path from "path";
import request from "supertest";
import { stringify as stringifyYaml } from "yaml";

import { TERMINAL_STATUSES, type Job } from "../../../automation/store";
import type { Role } from "../../../api/auth";
import { createLogger } from "../../../api/logging";
import { generateToken, sha256Hex } from "../../../api/tokens";
import { startServer, type RunningServer, type ServerOptions } from "../../../api/server";
import { TestEngine, testDeps, testEnvDir } from "../../automation/support/test-engine";

export interface TestServerOptions extends Partial<Omit<ServerOptions, "deps" | "dataDir" | "envDir">> {
  /** `test` (default): a TestEngine for every stack; `offline`: the real offline engine. */
  readonly engine?: "test" | "offline";
  /** Environment names (copies of local.yaml, offline engine). Default ["s1", "s2"]. */
  readonly stacks?: readonly string[];
  /** Edits each environment file's text. */
  readonly editEnv?: (name: string, text: string) => string;
  /** An existing data dir (a restart); default a new temp dir. */
  readonly dataDir?: string;
  readonly envDir?: string;
  /** Principals besides `admin` (`{"*": [admin]}`), each with a token of its own. */
  readonly principals?: readonly TestPrincipal[];
}

export interface TestPrincipal {
  readonly name: string;
  readonly roles: Readonly<Record<string, readonly Role[]>>;
}

/** A tokens file with a new token per principal; returns the file's text and the tokens by name. */
export function tokensFileFor(principals: readonly TestPrincipal[]): { text: string; tokens: Map<string, string> } {
  const tokens = new Map<string, string>();
  const entries = principals.map((p) => {
    const token = generateToken();
    tokens.set(p.name, token);
    return { name: p.name, sha256: sha256Hex(token), roles: p.roles };
  });
  return { text: stringifyYaml({ tokens: entries }), tokens };
}

/** Writes a tokens file for `principals` (admin first, always) into a new temp dir. */
export function writeTokensFile(principals: readonly TestPrincipal[] = []): { file: string; dir: string; tokens: Map<string, string> } {
  const dir = mkdtempSync(path.join(tmpdir(), "deployer-tokens-"));
  const file = path.join(dir, "tokens.yaml");
  const { text, tokens } = tokensFileFor([ADMIN, ...principals.filter((p) => p.name !== ADMIN.name)]);
  writeFileSync(file, text, { mode: 0o600 });
  return { file, dir, tokens };
}

export const ADMIN: TestPrincipal = { name: "admin", roles: { "*": ["admin"] } };

export interface TestServer {
  readonly url: string;
  readonly server: RunningServer;
  readonly engine: TestEngine;
  readonly dataDir: string;
  readonly envDir: string;
  /** Job timeout for jobs that start from now on (ms); undefined: the environment's. */
  timeoutMs?: number;
  /** The tokens file the server reads (rewrite it and call `server.reloadTokens()` to change tokens). */
  readonly tokensFile: string;
  /** A supertest agent on the server's URL, sending the admin's bearer token. */
  http(): ReturnType<typeof request>;
  /** A supertest agent sending `name`'s bearer token. */
  as(name: string): ReturnType<typeof request>;
  /** A supertest agent sending no token. */
  anonymous(): ReturnType<typeof request>;
  /** The bearer token of a principal (default admin). */
  token(name?: string): string;
  /** `{Authorization: "Bearer …"}` of a principal (default admin), for clients other than supertest (SSE). */
  auth(name?: string): Record<string, string>;
  /** Resolves with the job once it is in a final status. */
  done(jobId: string): Promise<Job>;
  /** Resolves with the job once it has started (running). */
  started(jobId: string): Promise<Job>;
  jobCount(): Promise<number>;
  close(): Promise<void>;
}

export async function startTestServer(options: TestServerOptions = {}): Promise<TestServer> {
  const dataDir = options.dataDir ?? mkdtempSync(path.join(tmpdir(), "deployer-api-"));
  const envDir = options.envDir ?? testEnvDir(options.stacks ?? ["s1", "s2"], options.editEnv);
  const engine = new TestEngine({ delayMs: 0 });
  const tokens = writeTokensFile(options.principals);
  const tokenOf = (name = ADMIN.name) => {
    const token = tokens.tokens.get(name);
    if (token === undefined) throw new Error(`no test principal ${name}`);
    return token;
  };
  const state: { timeoutMs?: number } = {};
  const server = await startServer({
    port: 0,
    logger: createLogger({ level: "silent" }),
    driftSchedule: false,
    readinessCacheMs: 0,
    rateLimits: { mutationsPerWindow: 1_000_000, unauthenticatedPerWindow: 1_000_000 },
    // Queue caps high too (the concurrency tests queue 50 at once as one principal), unless asked for.
    maxQueuedPerStack: 1_000,
    maxQueuedPerPrincipal: 1_000,
    ...options,
    tokensFile: tokens.file,
    dataDir,
    envDir,
    timeoutMs: options.timeoutMs ?? ((env) => state.timeoutMs ?? env.deploy.timeoutMinutes * 60_000),
    deps: options.engine === "offline" ? undefined : (store) => testDeps(store, engine),
  });
  const { queue, store } = server;
  const waitFor = (jobId: string, event: "job:start" | "job:done", ok: (job: Job) => boolean) =>
    new Promise<Job>((resolve) => {
      const listener = (job: Job) => {
        if (job.id !== jobId || !ok(job)) return;
        queue.off(event, listener);
        resolve(job);
      };
      queue.on(event, listener);
      void store.getJob(jobId).then((now) => {
        if (now && ok(now)) {
          queue.off(event, listener);
          resolve(now);
        }
      });
    });
  return {
    url: server.url,
    server,
    engine,
    dataDir,
    envDir,
    get timeoutMs() {
      return state.timeoutMs;
    },
    set timeoutMs(value: number | undefined) {
      state.timeoutMs = value;
    },
    tokensFile: tokens.file,
    http: () => request.agent(server.url).set("Authorization", `Bearer ${tokenOf()}`),
    as: (name) => request.agent(server.url).set("Authorization", `Bearer ${tokenOf(name)}`),
    anonymous: () => request(server.url),
    token: tokenOf,
    auth: (name) => ({ Authorization: `Bearer ${tokenOf(name)}` }),
    done: (jobId) => waitFor(jobId, "job:done", (job) => TERMINAL_STATUSES.has(job.status)),
    started: (jobId) => waitFor(jobId, "job:start", (job) => job.status !== "queued"),
    jobCount: async () => (await store.listJobs({ limit: 500 })).length,
    async close() {
      engine.unhold();
      await server.stop({ graceMs: 2_000 });
      if (options.dataDir === undefined) rmSync(dataDir, { recursive: true, force: true });
      if (options.envDir === undefined) rmSync(envDir, { recursive: true, force: true });
      rmSync(tokens.dir, { recursive: true, force: true });
    },
  };
}

/** Asserts the design's error shape and returns it. */
export function errorOf(res: { status: number; body: any; text: string }): { code: string; message: string; details?: any; requestId: string } {
  const error = res.body?.error;
  if (!error || typeof error.code !== "string" || typeof error.message !== "string" || typeof error.requestId !== "string" || error.requestId === "") {
    throw new Error(`expected the error shape, got ${res.status}: ${res.text.slice(0, 300)}`);
  }
  if (/\n\s+at\s/.test(res.text) || /\.ts:\d+/.test(res.text)) throw new Error(`error response carries a stack trace: ${res.text.slice(0, 300)}`);
  return error;
}
