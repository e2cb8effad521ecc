/**
 * A throwaway PostgreSQL cluster, for the tests (test/support/postgres.ts) and the benchmarks
 * (bench/replicas.ts): `initdb` into a temp directory (trust auth), `pg_ctl start` listening on a
 * unix socket in a temp directory only (no TCP). As root the server runs as the `postgres` user
 * (`runuser`), which owns both directories. `stop()` stops it and removes its directories; the server
 * alone can be stopped and started again over the same data (`stopServer()` / `startServer()`), to
 * see what its clients do while it is away.
 *
 * The binaries are looked for in `DEPLOYER_TEST_PG_BIN` (only there, when it is set), else in
 * /usr/lib/postgresql/<newest>/bin, then PATH.
 */
import { execFileSync, spawnSync } from "child_process";
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "fs";
import * as os from "os";
import * as path from "path";
import { procStatFields } from "../automation/jobs/lease";

/** The directory holding initdb, pg_ctl and postgres; undefined when PostgreSQL is not installed. */
export function postgresBinDir(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const has = (dir: string) => existsSync(path.join(dir, "initdb")) && existsSync(path.join(dir, "pg_ctl"));
  // Given explicitly: that directory or nothing.
  if (env.DEPLOYER_TEST_PG_BIN) return has(env.DEPLOYER_TEST_PG_BIN) ? env.DEPLOYER_TEST_PG_BIN : undefined;
  const candidates: string[] = [];
  const debian = "/usr/lib/postgresql";
  if (existsSync(debian)) {
    const versions = readdirSync(debian)
      .filter((v) => /^\d+$/.test(v))
      .sort((a, b) => Number(b) - Number(a));
    candidates.push(...versions.map((v) => path.join(debian, v, "bin")));
  }
  candidates.push(...(env.PATH ?? "").split(path.delimiter).filter((p) => p !== ""));
  return candidates.find(has);
}

/** Where the server listens: a unix socket's path, or a TCP address. */
export type ServerAddress = { readonly path: string } | { readonly host: string; readonly port: number };

export interface LocalCluster {
  /** URL of a database on it, with `{db}` where the database name goes. */
  readonly template: string;
  readonly address: ServerAddress;
  /**
   * Stops the server, keeping its data: a clean shutdown (`fast`, as a restart by an operator: every
   * session is ended, committed data is on disk) by default; `immediate` is a crash, which with this
   * cluster's `synchronous_commit=off` loses the last few hundred milliseconds of commits.
   */
  stopServer(mode?: "fast" | "immediate"): void;
  /** Starts the server again over the same data and socket (waits until it accepts connections). */
  startServer(): void;
  /** Stops the server and removes its directories. Idempotent. */
  stop(): void;
  /**
   * CPU time (ms) the server has used since it started: the postmaster's own and its ended children's
   * (backends it reaped), plus its live children's (backends, the checkpointer, autovacuum…), from
   * /proc; undefined without /proc or while the server is not running. Differences of two readings are
   * what the server spent between them (a benchmark's database side).
   */
  cpuMs(): number | undefined;
}

/** The kernel's clock ticks per second (the unit of /proc/<pid>/stat's times). */
let clockTicks: number | undefined;
function ticksPerSecond(): number {
  if (clockTicks === undefined) {
    try {
      clockTicks = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
    } catch {
      clockTicks = 100;
    }
  }
  return clockTicks;
}

/** utime + stime (+ cutime + cstime with `reaped`) of a process, in ticks; fields counted from the state (index 0 = field 3). */
function cpuTicks(fields: string[], reaped: boolean): number {
  const at = (field: number) => Number(fields[field - 3]) || 0;
  return at(14) + at(15) + (reaped ? at(16) + at(17) : 0);
}

function serverCpuMs(dataDir: string): number | undefined {
  let postmaster: number;
  try {
    postmaster = Number(readFileSync(path.join(dataDir, "postmaster.pid"), "utf8").split("\n")[0]);
  } catch {
    return undefined;
  }
  const own = procStatFields(postmaster);
  if (own === undefined) return undefined;
  let ticks = cpuTicks(own, true);
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const fields = procStatFields(entry);
    if (fields !== undefined && Number(fields[1]) === postmaster) ticks += cpuTicks(fields, false);
  }
  return (ticks * 1000) / ticksPerSecond();
}

function runAsServer(bin: string, args: string[], asPostgres: boolean): void {
  const [cmd, argv] = asPostgres ? ["runuser", ["-u", "postgres", "--", bin, ...args]] : [bin, args];
  const result = spawnSync(cmd, argv, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
  if (result.status !== 0) {
    throw new Error(`${path.basename(bin)} failed (${result.error?.message ?? `exit ${result.status}`}): ${result.stderr || result.stdout}`);
  }
}

/** initdb + pg_ctl start; throws when PostgreSQL is not installed or does not start. */
export function startLocalCluster(options: { readonly maxConnections?: number } = {}): LocalCluster {
  const bin = postgresBinDir();
  if (bin === undefined) throw new Error("PostgreSQL is not installed");
  const asRoot = typeof process.getuid === "function" && process.getuid() === 0;
  const base = mkdtempSync(path.join(os.tmpdir(), "deployer-pg-"));
  const data = path.join(base, "data");
  const socket = path.join(base, "s");
  const log = path.join(base, "server.log");
  const serverOptions = [
    "-c listen_addresses=''",
    `-k ${socket}`,
    "-c fsync=off",
    "-c synchronous_commit=off",
    "-c full_page_writes=off",
    `-c max_connections=${options.maxConnections ?? 200}`,
  ].join(" ");
  let running = false;
  let removed = false;
  const stopServer = (mode: "fast" | "immediate" = "fast") => {
    if (!running) return;
    running = false;
    try {
      runAsServer(path.join(bin, "pg_ctl"), ["-D", data, "-m", mode, "-w", "stop"], asRoot);
    } catch {
      // already gone
    }
  };
  const startServer = () => {
    if (removed) throw new Error("the cluster was removed");
    if (running) return;
    running = true;
    runAsServer(path.join(bin, "pg_ctl"), ["-D", data, "-l", log, "-o", serverOptions, "-w", "-t", "60", "start"], asRoot);
  };
  const stop = () => {
    stopServer("immediate");
    removed = true;
    rmSync(base, { recursive: true, force: true });
  };
  try {
    execFileSync("mkdir", ["-p", socket]);
    if (asRoot) {
      execFileSync("chown", ["-R", "postgres:postgres", base]);
      chmodSync(base, 0o700);
    }
    runAsServer(path.join(bin, "initdb"), ["-D", data, "-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C", "--no-sync"], asRoot);
    startServer();
  } catch (err) {
    stop();
    throw err;
  }
  return {
    template: `postgresql://postgres@/{db}?host=${encodeURIComponent(socket)}`,
    address: { path: path.join(socket, ".s.PGSQL.5432") },
    stopServer,
    startServer,
    stop,
    cpuMs: () => (running ? serverCpuMs(data) : undefined),
  };
}

/** Stops `cluster` when this process exits, and on SIGINT/SIGTERM/SIGHUP before dying of the signal. */
export function stopAtExit(cluster: Pick<LocalCluster, "stop">): void {
  process.once("exit", () => cluster.stop());
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
    process.once(signal, () => {
      cluster.stop();
      process.kill(process.pid, signal);
    });
  }
}
