/** The service as a real child process (`node -r ./automation/register.js api/main.ts`), for crash and signal tests. */
import { spawn, type ChildProcess } from "child_process";
import * as path from "path";
import { createInterface } from "readline";
import { REPO_ROOT } from "../../../automation/environment";

export interface ServiceProcess {
  readonly child: ChildProcess;
  readonly url: string;
  /** Every stdout line so far (JSON log lines). */
  readonly lines: string[];
  readonly stderr: () => string;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

export const MAIN = path.join(REPO_ROOT, "api", "main.ts");
export const REGISTER = path.join(REPO_ROOT, "automation", "register.js");
export const HANGING_PROGRAM = path.join(REPO_ROOT, "test", "automation", "fixtures", "offline-program-hang.ts");

/** Spawns the service with `env` added to a clean environment; resolves once it logs that it listens. */
export function spawnService(env: Record<string, string>): Promise<ServiceProcess> {
  const child = spawn(process.execPath, ["-r", REGISTER, MAIN], {
    cwd: REPO_ROOT,
    env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "", PORT: "0", DEPLOYER_LOG_LEVEL: "info", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const lines: string[] = [];
  let stderr = "";
  child.stderr!.setEncoding("utf8").on("data", (c: string) => (stderr += c));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on("exit", (code, signal) => resolve({ code, signal })));
  return new Promise((resolve, reject) => {
    createInterface({ input: child.stdout! }).on("line", (line) => {
      lines.push(line);
      let entry: { msg?: string; url?: string };
      try {
        entry = JSON.parse(line);
      } catch {
        return;
      }
      if (entry.msg === "listening" && entry.url) resolve({ child, url: entry.url, lines, stderr: () => stderr, exited });
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
