/**
 * The service as a real child process (`node -r ./automation/register.js api/main.ts`), for crash and
 * signal tests. Unless the environment names a tokens file (or `tokens: false` asks for the first
 * start's own admin token), it gets a tokens file with an admin token, which `http()` and `auth()` send.
 */
import { spawn, type ChildProcess } from "child_process";
import { rmSync } from "fs";
import * as path from "path";
import { createInterface } from "readline";
import request from "supertest";
import { REPO_ROOT } from "../../../automation/environment";
import { writeTokensFile, type TestPrincipal } from "./server";

export interface ServiceProcess {
  readonly child: ChildProcess;
  readonly url: string;
  /** Every stdout line so far (JSON log lines). */
  readonly lines: string[];
  readonly stderr: () => string;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** The admin's token (undefined when the service made its own: read it from stderr). */
  readonly token?: string;
  /** Tokens by principal name. */
  readonly tokens: ReadonlyMap<string, string>;
  /** A supertest agent sending the admin's token (or `name`'s). */
  http(name?: string): ReturnType<typeof request>;
  /** `{Authorization: "Bearer …"}` of the admin (or `name`). */
  auth(name?: string): Record<string, string>;
}

export interface SpawnOptions {
  /** false: no tokens file (the service creates its first admin token). Default: a file with an admin token and these principals. */
  readonly tokens?: false | readonly TestPrincipal[];
}

export const MAIN = path.join(REPO_ROOT, "api", "main.ts");
export const REGISTER = path.join(REPO_ROOT, "automation", "register.js");
export const HANGING_PROGRAM = path.join(REPO_ROOT, "test", "automation", "fixtures", "offline-program-hang.ts");

/** Spawns the service with `env` added to a clean environment; resolves once it logs that it listens. */
export function spawnService(env: Record<string, string>, options: SpawnOptions = {}): Promise<ServiceProcess> {
  const tokensFile = options.tokens === false || env.DEPLOYER_TOKENS_FILE !== undefined ? undefined : writeTokensFile(options.tokens ?? []);
  const tokens: ReadonlyMap<string, string> = tokensFile?.tokens ?? new Map();
  const tokenOf = (name = "admin") => {
    const token = tokens.get(name);
    if (token === undefined) throw new Error(`no token for ${name}`);
    return token;
  };
  const child = spawn(process.execPath, ["-r", REGISTER, MAIN], {
    cwd: REPO_ROOT,
    env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "", PORT: "0", DEPLOYER_LOG_LEVEL: "info", ...(tokensFile ? { DEPLOYER_TOKENS_FILE: tokensFile.file } : {}), ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const lines: string[] = [];
  let stderr = "";
  child.stderr!.setEncoding("utf8").on("data", (c: string) => (stderr += c));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on("exit", (code, signal) => {
      if (tokensFile) rmSync(tokensFile.dir, { recursive: true, force: true });
      resolve({ code, signal });
    }),
  );
  return new Promise((resolve, reject) => {
    createInterface({ input: child.stdout! }).on("line", (line) => {
      lines.push(line);
      let entry: { msg?: string; url?: string };
      try {
        entry = JSON.parse(line);
      } catch {
        return;
      }
      if (entry.msg === "listening" && entry.url) {
        const url = entry.url;
        resolve({
          child,
          url,
          lines,
          stderr: () => stderr,
          exited,
          token: tokens.get("admin"),
          tokens,
          http: (name) => request.agent(url).set("Authorization", `Bearer ${tokenOf(name)}`),
          auth: (name) => ({ Authorization: `Bearer ${tokenOf(name)}` }),
        });
      }
    });
    void exited.then(({ code, signal }) => reject(new Error(`the service exited (${code ?? signal}) before listening: ${stderr.slice(0, 500)}`)));
  });
}

/** Runs the service to its exit, for configuration errors; resolves with its exit code and output. */
export function runServiceToExit(env: Record<string, string>): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, ["-r", REGISTER, MAIN], {
    cwd: REPO_ROOT,
    env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout!.setEncoding("utf8").on("data", (c: string) => (stdout += c));
  child.stderr!.setEncoding("utf8").on("data", (c: string) => (stderr += c));
  return new Promise((resolve) => child.on("close", (code) => resolve({ code, stdout, stderr })));
}
