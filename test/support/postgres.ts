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
 * The cluster (tools/postgres-cluster.ts, shared with the benchmarks): `initdb` into a temp directory
 * (trust auth), `pg_ctl start` listening on a unix socket in a temp directory only (no TCP). As root
 * the server runs as the `postgres` user (`runuser`), which owns both directories. A test may stop its
 * server and start it again over the same data (`stopTestClusterServer()` / `startTestClusterServer()`,
 * `restartTestCluster()`), when `testClusterRestartable()`. With `DEPLOYER_TEST_DATABASE_URL` set, that server is used instead: each
 * caller still gets its own database, created on it (the URL's user needs CREATEDB).
 *
 * The binaries are looked for in `DEPLOYER_TEST_PG_BIN` (only there, when it is set), else in
 * /usr/lib/postgresql/<newest>/bin, then PATH.
 */
import * as path from "path";
import { Client } from "pg";
import { postgresBinDir, startLocalCluster, stopAtExit, type ServerAddress } from "../../tools/postgres-cluster";

export { postgresBinDir, type ServerAddress };

export const TEST_DATABASE_URL_ENV = "DEPLOYER_TEST_DATABASE_URL";

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

interface Cluster {
  /** URL of the `postgres` database (for CREATE DATABASE), with `{db}` where the database name goes. */
  readonly template: string;
  readonly address: ServerAddress;
  stop(): void;
  /** The throwaway cluster's server alone, stopped and started over the same data (none for an external server). */
  readonly server?: { stop(): void; start(): void };
}

let cluster: Promise<Cluster> | undefined;
let counter = 0;

function startCluster(): Cluster {
  const local = startLocalCluster();
  stopAtExit(local);
  return { template: local.template, address: local.address, stop: local.stop, server: { stop: () => local.stopServer("fast"), start: local.startServer } };
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

/**
 * Stops the throwaway cluster's server, keeping its data, so a test sees what clients do while the
 * database is away; `startTestClusterServer()` starts it again. A clean (`fast`) shutdown, as a
 * restart by an operator: every session is ended and everything committed is kept (an immediate stop
 * of this cluster, which runs with synchronous_commit=off, would lose the last commits). Throws with an external server
 * (DEPLOYER_TEST_DATABASE_URL), which a test cannot stop.
 */
export async function stopTestClusterServer(): Promise<void> {
  (await runningCluster()).server!.stop();
}

/** Starts the server `stopTestClusterServer()` stopped (over the same data and socket); resolves once it accepts connections. */
export async function startTestClusterServer(): Promise<void> {
  (await runningCluster()).server!.start();
}

/** Stops the throwaway cluster's server and starts it again (every connection to it is lost). */
export async function restartTestCluster(): Promise<void> {
  await stopTestClusterServer();
  await startTestClusterServer();
}

/** Whether the server can be stopped and started by a test (a throwaway cluster, not DEPLOYER_TEST_DATABASE_URL's). */
export function testClusterRestartable(env: NodeJS.ProcessEnv = process.env): boolean {
  return !env[TEST_DATABASE_URL_ENV] && postgresBinDir(env) !== undefined;
}

async function runningCluster(): Promise<Cluster & { server: NonNullable<Cluster["server"]> }> {
  const c = await getCluster();
  if (!c.server) throw new Error(`the test server is external (${TEST_DATABASE_URL_ENV}): it cannot be stopped by a test`);
  return c as Cluster & { server: NonNullable<Cluster["server"]> };
}
