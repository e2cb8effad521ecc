/**
 * The store: every operation's durable record (jobs and their event logs), the per-stack lease shared
 * by the CLI and the service, and per-stack flags. `openStore` is the one way in for both.
 */
import { mkdirSync } from "fs";
import * as path from "path";
import { dataDir } from "../paths";
import { SqliteStore, type SqliteStoreOptions } from "./sqlite";
import type { Store } from "./types";

export * from "./types";
export { newId, newJobId } from "./id";
export { SCHEMA_VERSION } from "./schema";
export { DEFAULT_LIST_LIMIT, DEFAULT_MAX_EVENTS_PER_JOB, MAX_DECISION_COMMENT, MAX_LIST_LIMIT, SqliteStore, type SqliteStoreOptions } from "./sqlite";

/** The store file inside a data directory. */
export function storeFile(dir: string = dataDir()): string {
  return path.join(dir, "deployer.db");
}

/** Opens `<dir>/deployer.db` (creating the directory, the file and the schema as needed). */
export function openStore(dir: string = dataDir(), options: SqliteStoreOptions = {}): Store {
  mkdirSync(dir, { recursive: true });
  return SqliteStore.open(storeFile(dir), options);
}
