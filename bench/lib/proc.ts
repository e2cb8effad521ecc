/**
 * Child processes for the benchmarks: the service as `npm start` runs it, children with an IPC channel
 * (request/response with timeouts), RSS and CPU time from /proc, free ports. Every process started here
 * is tracked and killed when the bench exits, whatever happens.
 */
import { fork, spawn, type ChildProcess } from "child_process";
import { closeSync, existsSync, openSync, readFileSync } from "fs";
import { createServer } from "net";
import * as path from "path";

import { REPO_ROOT } from "./root";

export { REPO_ROOT };
export const REGISTER = path.join(REPO_ROOT, "automation", "register.js");

/** `-r automation/register.js` for a TypeScript entry point (the CLI's loader); nothing for compiled JavaScript. */
function loaderFor(entry: string): string[] {
  return entry.endsWith(".ts") ? ["-r", REGISTER] : [];
}

const live = new Set<ChildProcess>();

function track(child: ChildProcess): ChildProcess {
  live.add(child);
  child.once("exit", () => live.delete(child));
  return child;
}

/** Kills (SIGKILL) every child still running: the last resort on exit and on a benchmark's timeout. */
export function killAllChildren(): void {
  for (const child of live) {
    try {
      child.kill("SIGKILL");
    } catch {
      // already gone
    }
  }
}
process.once("exit", killAllChildren);

/** The environment children get: this one's minus anything that would change what is measured. */
export function childEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const key of Object.keys(env)) {
    if (key.startsWith("DEPLOYER_") || key === "PORT" || key === "NODE_OPTIONS" || key === "DEBUG") delete env[key];
  }
  return { ...env, ...extra };
}

export function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once("exit", () => resolve()));
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves once the process is gone. */
export async function stopProcess(child: ChildProcess | undefined, graceMs = 5_000): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const gone = exited(child);
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
  await gone;
  clearTimeout(timer);
}

/** Resident set size of a process in bytes (VmRSS from /proc/<pid>/status). */
export function rssBytes(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
  if (!m) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(m[1]) * 1024;
}

/** CPU time (user + system) a process has used so far, in seconds (/proc/<pid>/stat; 0 when it is gone). */
export function cpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Fields after the command name (which may contain spaces): state is field 3, utime 14, stime 15.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
  } catch {
    return 0;
  }
}
const CLOCK_TICKS = 100; // USER_HZ on Linux

/** Measures the CPU use (fraction of one core) of some processes over a stretch of work. */
export async function withCpu<T>(pids: Record<string, number>, work: () => Promise<T>): Promise<{ result: T; cpu: Record<string, number> }> {
  const before = Object.fromEntries(Object.entries(pids).map(([k, pid]) => [k, cpuSeconds(pid)]));
  const t0 = performance.now();
  const result = await work();
  const seconds = (performance.now() - t0) / 1000;
  const cpu = Object.fromEntries(Object.entries(pids).map(([k, pid]) => [k, (cpuSeconds(pid) - before[k]) / seconds]));
  return { result, cpu };
}

/** `name 85%, other 40%` */
export function cpuText(cpu: Record<string, number>): string {
  return Object.entries(cpu)
    .map(([k, v]) => `${k} ${Math.round(v * 100)}%`)
    .join(", ");
}

/** A TCP port free on 127.0.0.1 right now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/** The last error a service logged (a JSON line at level 50+), as `msg: err.message at <first frame>`; "" if none. */
export function lastLoggedError(file: string): string {
  if (!existsSync(file)) return "";
  const lines = readFileSync(file, "utf8").trimEnd().split("\n");
  for (let i = lines.length - 1; i >= 0 && i >= lines.length - 200; i--) {
    try {
      const entry = JSON.parse(lines[i]) as { level?: number; msg?: string; err?: { message?: string; stack?: string } };
      if ((entry.level ?? 0) < 50 || !entry.err) continue;
      const frame = /\n\s+at (.*)/.exec(entry.err.stack ?? "")?.[1];
      return `${entry.msg ?? "error"}: ${entry.err.message ?? ""}${frame ? ` at ${frame}` : ""}`;
    } catch {
      // not a JSON line
    }
  }
  return "";
}

/** The last lines of a log file, for error messages. */
export function tail(file: string, lines = 5): string {
  if (!existsSync(file)) return "";
  return readFileSync(file, "utf8").trimEnd().split("\n").slice(-lines).join("\n");
}

export interface Spawned {
  readonly child: ChildProcess;
  /** When spawn() was called (performance.now()). */
  readonly spawnedAt: number;
  readonly logFile: string;
}

/**
 * Spawns a Node entry point (compiled JavaScript; a .ts one through the repository's loader), its
 * stdout and stderr going to `logFile`.
 */
export function spawnNode(entry: string, env: Record<string, string>, logFile: string, nodeArgs: readonly string[] = []): Spawned {
  const fd = openSync(logFile, "a");
  try {
    const spawnedAt = performance.now();
    const child = track(spawn(process.execPath, [...nodeArgs, ...loaderFor(entry), entry], { cwd: REPO_ROOT, env: childEnv(env), stdio: ["ignore", fd, fd] }));
    return { child, spawnedAt, logFile };
  } finally {
    closeSync(fd);
  }
}

/** Runs a command to its exit; resolves with its wall time (ms), exit code and output. Killed after `timeoutMs`. */
export function runToExit(args: readonly string[], timeoutMs: number, env: Record<string, string> = {}): Promise<{ ms: number; code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const child = track(spawn(process.execPath, args, { cwd: REPO_ROOT, env: childEnv(env), stdio: ["ignore", "pipe", "pipe"] }));
    let stdout = "";
    let stderr = "";
    child.stdout!.setEncoding("utf8").on("data", (c: string) => (stdout += c));
    child.stderr!.setEncoding("utf8").on("data", (c: string) => (stderr += c));
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`${args.join(" ")} did not finish within ${timeoutMs} ms`));
    }, timeoutMs);
    child.once("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
    // exit, not close: the wall time is the process's, not the pipes' draining.
    child.once("exit", (code) => {
      const ms = performance.now() - started;
      clearTimeout(timer);
      child.once("close", () => resolve({ ms, code, stdout, stderr }));
    });
  });
}

// IPC children ------------------------------------------------------------------------------------

interface Reply {
  readonly id: number;
  readonly ok: boolean;
  readonly result?: unknown;
  readonly error?: string;
}

/**
 * A child with an IPC channel (bench/children/*, compiled to dist/bench/children/*.js, or a .ts entry
 * through the loader): `call(cmd, args)` sends a request and resolves with the child's reply. The
 * child answers with `serve()` (ipc-child.ts).
 */
export class IpcChild {
  readonly child: ChildProcess;
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }>();
  private readonly ready: Promise<void>;
  private stderr = "";

  constructor(entry: string, options: { env?: Record<string, string>; nodeArgs?: readonly string[]; name?: string; stdoutFile?: string } = {}) {
    const name = options.name ?? path.basename(entry);
    const out = options.stdoutFile ? openSync(options.stdoutFile, "a") : "ignore";
    try {
      this.child = track(
        fork(entry, [], {
          cwd: REPO_ROOT,
          env: childEnv(options.env),
          execArgv: [...(options.nodeArgs ?? []), ...loaderFor(entry)],
          stdio: ["ignore", out, "pipe", "ipc"],
        }),
      );
    } finally {
      if (typeof out === "number") closeSync(out);
    }
    this.child.stderr!.setEncoding("utf8").on("data", (c: string) => (this.stderr = (this.stderr + c).slice(-4000)));
    const gone = (why: string) => {
      const err = new Error(`${name} ${why}${this.stderr ? `: ${this.stderr.trim().split("\n").slice(-3).join(" | ")}` : ""}`);
      for (const [id, p] of this.pending) {
        clearTimeout(p.timer);
        p.reject(err);
        this.pending.delete(id);
      }
      return err;
    };
    this.ready = new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${name} did not start within 30 s`)), 30_000);
      this.child.on("message", (raw: unknown) => {
        const msg = raw as Reply & { ready?: boolean };
        if (msg.ready) {
          clearTimeout(timer);
          resolve();
          return;
        }
        const p = this.pending.get(msg.id);
        if (!p) return;
        this.pending.delete(msg.id);
        clearTimeout(p.timer);
        if (msg.ok) p.resolve(msg.result);
        else p.reject(new Error(msg.error ?? "failed"));
      });
      this.child.once("exit", (code, signal) => {
        clearTimeout(timer);
        reject(gone(`exited (${code ?? signal})`));
      });
    });
    this.ready.catch(() => undefined);
  }

  get pid(): number {
    return this.child.pid!;
  }

  /** Resolves once the child has loaded and said so. */
  started(): Promise<void> {
    return this.ready;
  }

  async call<T>(cmd: string, args: unknown = {}, timeoutMs = 60_000): Promise<T> {
    await this.ready;
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`${cmd} got no answer within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject, timer });
      this.child.send({ id, cmd, args }, (err) => {
        if (err) {
          clearTimeout(timer);
          this.pending.delete(id);
          reject(err);
        }
      });
    });
  }

  stop(graceMs = 3_000): Promise<void> {
    return stopProcess(this.child, graceMs);
  }
}
