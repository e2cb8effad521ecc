/**
 * The store: every operation's durable record (jobs and their event logs), the per-stack lease shared
 * by the CLI and the service, and per-stack flags. `openStore` is the one way in for both.
 */
import { chmodSync, closeSync, existsSync, lstatSync, mkdirSync, openSync, statSync } from "fs";
import * as path from "path";
import { dataDir } from "../paths";
import { ConfigError } from "../errors";
import { SqliteStore, type SqliteStoreOptions } from "./sqlite";
import { asyncStore } from "./async";
import { openPostgresStore } from "./postgres";
import type { Store } from "./types";

export * from "./types";
export { newId, newJobId } from "./id";
export { asyncStore, syncStoreOf } from "./async";
export { interruptedBlockReason } from "./rows";
export { SCHEMA_VERSION } from "./schema";
export { DEFAULT_LIST_LIMIT, DEFAULT_MAX_EVENTS_PER_JOB, MAX_DECISION_COMMENT, MAX_LIST_LIMIT, SqliteStore, type SqliteStoreOptions } from "./sqlite";
export { openPostgresStore, PG_SCHEMA_VERSION, PostgresStore, type PostgresStoreOptions } from "./postgres";

/** The store file inside a data directory. */
export function storeFile(dir: string = dataDir()): string {
  return path.join(dir, "deployer.db");
}

/**
 * The data directory holds the audit trail, job configs and drift values: created 0700, and refused
 * (ConfigError) when it is not a directory or when its group or others may write to it (someone who
 * can write there can replace the database).
 */
export function ensureDataDir(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const st = lstatSync(dir).isSymbolicLink() ? statSync(dir) : lstatSync(dir);
  if (!st.isDirectory()) throw new ConfigError(`data directory ${dir} is not a directory`);
  if ((st.mode & 0o022) !== 0) {
    throw new ConfigError(
      `data directory ${dir} is writable by ${(st.mode & 0o002) !== 0 ? "everyone" : "its group"} (mode ${(st.mode & 0o777).toString(8).padStart(4, "0")}); ` +
        `make it private (chmod 700 ${dir}) or point DEPLOYER_DATA_DIR elsewhere`,
    );
  }
}

/**
 * Opens `<dir>/deployer.db` (creating the directory, the file and the schema as needed). The file is
 * created 0600 before SQLite opens it, so its -wal and -shm files (which SQLite creates with the
 * database's mode) are 0600 too.
 */
export function openStore(dir: string = dataDir(), options: SqliteStoreOptions = {}): Store {
  ensureDataDir(dir);
  const file = storeFile(dir);
  closeSync(openSync(file, "a", 0o600));
  const store = asyncStore(SqliteStore.open(file, options));
  // A database from before this rule (0644): made private as well.
  for (const f of [file, `${file}-wal`, `${file}-shm`]) {
    if (existsSync(f) && (statSync(f).mode & 0o077) !== 0) chmodSync(f, 0o600);
  }
  return store;
}

/** The variable that points the CLI and the service at a PostgreSQL store shared by several replicas. */
export const DATABASE_URL_VARIABLE = "DEPLOYER_DATABASE_URL";

export interface StoreChoice {
  /** The data directory: SQLite's file, and the kept outcomes of either store. */
  readonly dataDir: string;
  /** `postgres://…` or `postgresql://…`: PostgreSQL instead of SQLite (DEPLOYER_DATABASE_URL). */
  readonly databaseUrl?: string;
  /** SQLite: how long a write waits for another process's write lock. */
  readonly busyTimeoutMs?: number;
}

/**
 * The store the CLI and the service use: PostgreSQL when a database URL is given (several replicas
 * share it), otherwise SQLite under the data directory. Kept outcomes stay files in the data
 * directory either way. A URL of another scheme is a ConfigError that names the variable and never
 * the URL (it may hold a password).
 */
export async function connectStore(choice: StoreChoice): Promise<Store> {
  const url = choice.databaseUrl?.trim();
  if (url === undefined || url === "") return openStore(choice.dataDir, { busyTimeoutMs: choice.busyTimeoutMs });
  if (!/^postgres(ql)?:\/\//i.test(url)) {
    throw new ConfigError(`${DATABASE_URL_VARIABLE} must be a postgres:// or postgresql:// URL`, { details: { field: DATABASE_URL_VARIABLE } });
  }
  ensureDataDir(choice.dataDir);
  return openPostgresStore(url, { outcomesDir: path.join(choice.dataDir, "outcomes") });
}
