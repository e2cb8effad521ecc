/**
 * PostgreSQL in the tests: one throwaway cluster per mocha process, started the first time a suite
 * asks for a database, and stopped (its directories removed) when the process exits.
 *
 *   before(function () {
 *     requirePostgresOrSkip(this);    // skips locally without PostgreSQL, fails in CI
 *   });
 *   const db = await createTestDatabase();   // a fresh, empty database: db.url
 *   await db.drop();
 *
 * The cluster: `initdb` into a temp directory (trust auth), `pg_ctl start` listening on a unix socket
 * in a temp directory only (no TCP). As root the server runs as the `postgres` user (`runuser`), which
 * owns both directories. With `DEPLOYER_TEST_DATABASE_URL` set, that server is used instead: each
 * caller still gets its own database, created on it (the URL's user needs CREATEDB).
 *
 * The binaries are looked for in `DEPLOYER_TEST_PG_BIN` (only there, when it is set), else in
 * /usr/lib/postgresql/<newest>/bin, then PATH.
 */
import { execFileSync, spawnSync } from "child_process";
import { chmodSync, existsSync, mkdtempSync, readdirSync, rmSync } from "fs";
import * as os from "os";
import * as path from "path";
import { Client } from "pg";

export const TEST_DATABASE_URL_ENV = "DEPLOYER_TEST_DATABASE_URL";

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

/** Whether the Postgres suites can run here: a server URL is given, or PostgreSQL is installed. */
export function postgresAvailable(env: NodeJS.ProcessEnv = process.env): boolean {
  return Boolean(env[TEST_DATABASE_URL_ENV]) || postgresBinDir(env) !== undefined;
}

/**
 * Call first in a Postgres suite's `before` (with `this`). Without PostgreSQL: locally the suite is
 * skipped with one line saying how to get it; in CI (`CI=true`) the hook throws, so a missing server
 * fails the run instead of passing it silently.
 */
export function requirePostgresOrSkip(ctx: Pick<Mocha.Context, "skip">, env: NodeJS.ProcessEnv = process.env, log: (line: string) => void = console.log): void {
  if (postgresAvailable(env)) return;
  const message = `PostgreSQL is not installed (no initdb in /usr/lib/postgresql/*/bin or PATH) and ${TEST_DATABASE_URL_ENV} is not set: apt-get install -y postgresql`;
  if (env.CI === "true") throw new Error(`${message} (CI runs every PostgreSQL suite)`);
  log(`      skipped: ${message}`);
  ctx.skip();
}

/** Where the server listens: a unix socket's path, or a TCP address. */
export type ServerAddress = { readonly path: string } | { readonly host: string; readonly port: number };

interface Cluster {
  /** URL of the `postgres` database (for CREATE DATABASE), with `{db}` where the database name goes. */
  readonly template: string;
  readonly address: ServerAddress;
  stop(): void;
}

let cluster: Promise<Cluster> | undefined;
let counter = 0;

function runAsServer(bin: string, args: string[], asPostgres: boolean): void {
  const [cmd, argv] = asPostgres ? ["runuser", ["-u", "postgres", "--", bin, ...args]] : [bin, args];
  const result = spawnSync(cmd, argv, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
  if (result.status !== 0) {
    throw new Error(`${path.basename(bin)} failed (${result.error?.message ?? `exit ${result.status}`}): ${result.stderr || result.stdout}`);
  }
}

function startCluster(): Cluster {
  const bin = postgresBinDir();
  if (bin === undefined) throw new Error("PostgreSQL is not installed");
  const asRoot = typeof process.getuid === "function" && process.getuid() === 0;
  const base = mkdtempSync(path.join(os.tmpdir(), "deployer-pg-"));
  const data = path.join(base, "data");
  const socket = path.join(base, "s");
  const log = path.join(base, "server.log");
  let started = false;
  const stop = () => {
    if (started) {
      started = false;
      try {
        runAsServer(path.join(bin, "pg_ctl"), ["-D", data, "-m", "immediate", "-w", "stop"], asRoot);
      } catch {
        // already gone
      }
    }
    rmSync(base, { recursive: true, force: true });
  };
  try {
    execFileSync("mkdir", ["-p", socket]);
    if (asRoot) {
      execFileSync("chown", ["-R", "postgres:postgres", base]);
      chmodSync(base, 0o700);
    }
    runAsServer(path.join(bin, "initdb"), ["-D", data, "-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C", "--no-sync"], asRoot);
    const serverOptions = [
      "-c listen_addresses=''",
      `-k ${socket}`,
      "-c fsync=off",
      "-c synchronous_commit=off",
      "-c full_page_writes=off",
      "-c max_connections=200",
    ].join(" ");
    started = true;
    runAsServer(path.join(bin, "pg_ctl"), ["-D", data, "-l", log, "-o", serverOptions, "-w", "-t", "60", "start"], asRoot);
  } catch (err) {
    stop();
    throw err;
  }
  process.once("exit", stop);
  // Interrupted (Ctrl-C, a CI timeout): stop the server, then die of the signal as before.
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
    process.once(signal, () => {
      stop();
      process.kill(process.pid, signal);
    });
  }
  return { template: `postgresql://postgres@/{db}?host=${encodeURIComponent(socket)}`, address: { path: path.join(socket, ".s.PGSQL.5432") }, stop };
}

function externalCluster(url: string): Cluster {
  const u = new URL(url);
  const port = Number(u.searchParams.get("port") ?? (u.port || 5432));
  const socketDir = u.searchParams.get("host");
  const address: ServerAddress = socketDir?.startsWith("/") ? { path: path.join(socketDir, `.s.PGSQL.${port}`) } : { host: u.hostname || "localhost", port };
  u.pathname = "/{db}";
  return { template: u.toString().replace(encodeURIComponent("{db}"), "{db}"), address, stop: () => undefined };
}

function getCluster(): Promise<Cluster> {
  cluster ??= (async () => {
    const external = process.env[TEST_DATABASE_URL_ENV];
    return external ? externalCluster(external) : startCluster();
  })();
  return cluster;
}

export interface TestDatabase {
  readonly url: string;
  readonly name: string;
  /** Where its server listens (for a test that puts a proxy in between). */
  readonly address: ServerAddress;
  /** Drops it (closing whatever is still connected). */
  drop(): Promise<void>;
}

async function admin<T>(c: Cluster, fn: (client: Client) => Promise<T>): Promise<T> {
  const maintenance = process.env[TEST_DATABASE_URL_ENV] ? new URL(process.env[TEST_DATABASE_URL_ENV] as string).pathname.slice(1) || "postgres" : "postgres";
  const client = new Client({ connectionString: c.template.replace("{db}", maintenance) });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

/** A fresh, empty database on the test server (starting it on first use). */
export async function createTestDatabase(): Promise<TestDatabase> {
  const c = await getCluster();
  const name = `deployer_test_${process.pid}_${++counter}_${Math.random().toString(36).slice(2, 8)}`;
  await admin(c, (client) => client.query(`CREATE DATABASE ${name}`));
  return {
    url: c.template.replace("{db}", name),
    name,
    address: c.address,
    drop: () => admin(c, (client) => client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)).then(() => undefined),
  };
}

/** Stops the throwaway cluster now (it is stopped at exit anyway). */
export async function stopTestCluster(): Promise<void> {
  const c = cluster;
  cluster = undefined;
  if (c) (await c.catch(() => undefined))?.stop();
}
