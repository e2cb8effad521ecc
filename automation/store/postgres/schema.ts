/**
 * The PostgreSQL schema, as an append-only list of migrations that follows SQLite's (schema.ts) step
 * for step: entry i takes the database from version i to i + 1 and is recorded as a row of
 * `schema_migrations`. Never edit a shipped entry; add one (to both lists).
 *
 * The store opens by migrating inside one transaction that first takes a transaction-level advisory
 * lock, so replicas starting together migrate once: the others wait, then find the work done. A
 * database from a newer deployer is refused.
 *
 * Same columns as SQLite: times the store compares (lease expiry) are integer milliseconds (BIGINT);
 * times it only shows are ISO strings, which sort correctly as text under the "C" collation (so do
 * the ids). JSON columns are `json` (kept as written: `jsonb` would refuse a `\u0000` in a log line).
 */
import { ConfigError } from "../../errors";
import type { Db, Queryable } from "./db";

/** `pg_advisory_xact_lock` key of the migration ("deployer" in ASCII). */
export const MIGRATION_LOCK_KEY = 0x6465706c6f796572n.toString();

const AUDIT = `
  CREATE TABLE audit (
    id          TEXT COLLATE "C" PRIMARY KEY,
    time        TEXT COLLATE "C" NOT NULL,
    actor       TEXT,
    action      TEXT NOT NULL,
    stack       TEXT,
    job_id      TEXT,
    request_id  TEXT,
    address     TEXT,
    result      TEXT NOT NULL CHECK (result IN ('allowed', 'denied', 'failed')),
    status      INTEGER,
    details     TEXT           -- JSON, redacted (cut at 20 000 characters, so not always valid JSON)
  );
  CREATE INDEX audit_time ON audit (time);
  CREATE INDEX audit_stack_id ON audit (stack, id);

  -- Append-only, as SQLite's triggers: no UPDATE, no TRUNCATE, and a DELETE only of records older
  -- than a day (by the server's clock), which is what the retention prune deletes.
  CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
  BEGIN
    IF TG_OP = 'DELETE' THEN
      IF OLD.time > to_char((statement_timestamp() AT TIME ZONE 'UTC') - interval '1 day', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') COLLATE "C" THEN
        RAISE EXCEPTION 'audit records younger than a day are never deleted' USING ERRCODE = 'P0001';
      END IF;
      RETURN OLD;
    END IF;
    RAISE EXCEPTION 'the audit trail is append-only' USING ERRCODE = 'P0001';
  END;
  $$;
  CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit FOR EACH ROW EXECUTE FUNCTION audit_append_only();
  CREATE TRIGGER audit_retention_only BEFORE DELETE ON audit FOR EACH ROW EXECUTE FUNCTION audit_append_only();
  CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();
`;

export const PG_MIGRATIONS: readonly string[] = [
  // 1: jobs, their events, leases, stack flags
  `
  CREATE TABLE jobs (
    id                 TEXT COLLATE "C" PRIMARY KEY,
    stack              TEXT NOT NULL,
    operation          TEXT NOT NULL,
    status             TEXT NOT NULL,
    version            TEXT,
    image_digest       TEXT,
    requested_by       TEXT NOT NULL,
    source             TEXT NOT NULL,
    message            TEXT,
    reason             TEXT,
    target             JSON,
    created_at         TEXT COLLATE "C" NOT NULL,
    started_at         TEXT COLLATE "C",
    finished_at        TEXT COLLATE "C",
    changes            JSON,
    steps              JSON,
    drift              JSON,
    outputs            JSON,          -- secret values masked
    config             JSON,
    rollback_of        TEXT,
    rollback_to        TEXT,
    rolled_back_by     TEXT,
    auto_rollback_of   TEXT,
    error              JSON,
    engine             TEXT NOT NULL,
    approvals_required INTEGER NOT NULL DEFAULT 0,
    idempotency_key    TEXT,
    request_hash       TEXT,
    last_event_seq     INTEGER NOT NULL DEFAULT 0,
    events_elided      INTEGER NOT NULL DEFAULT 0,   -- events 1..n were dropped by the cap
    CONSTRAINT jobs_idempotency_key UNIQUE (idempotency_key)
  );
  CREATE INDEX jobs_stack_id ON jobs (stack, id);
  CREATE INDEX jobs_status_id ON jobs (status, id);
  CREATE INDEX jobs_deployments ON jobs (stack, status, operation, finished_at);

  CREATE TABLE job_events (
    job_id  TEXT COLLATE "C" NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    seq     INTEGER NOT NULL,
    time    TEXT NOT NULL,
    type    TEXT NOT NULL,
    data    JSON,
    PRIMARY KEY (job_id, seq)
  );

  -- One row per stack, kept after release so the fencing token never goes back.
  CREATE TABLE leases (
    stack        TEXT PRIMARY KEY,
    owner        TEXT NOT NULL,
    token        BIGINT NOT NULL,
    acquired_at  BIGINT NOT NULL,   -- ms since epoch
    expires_at   BIGINT NOT NULL,   -- ms since epoch
    job_id       TEXT,
    released_at  BIGINT             -- ms since epoch; NULL while held
  );

  CREATE TABLE stack_state (
    stack             TEXT PRIMARY KEY,
    blocked_reason    TEXT,
    blocked_job_id    TEXT,
    blocked_at        TEXT,
    drifted           BOOLEAN,
    last_drift_at     TEXT,
    last_drift_job_id TEXT,
    updated_at        TEXT NOT NULL
  );
  `,
  // 2: the request a queued job runs with; the queue's per-stack FIFO reads by (status, stack, id)
  `
  ALTER TABLE jobs ADD COLUMN params JSON;
  CREATE INDEX jobs_status_stack_id ON jobs (status, stack, id);
  `,
  // 3: the audit trail, append-only
  AUDIT,
  // 4: approvals (one decision per principal and job) and what the approvers are asked to approve
  `
  CREATE TABLE approvals (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,  -- order of the decisions
    job_id     TEXT COLLATE "C" NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    principal  TEXT NOT NULL,
    decision   TEXT NOT NULL CHECK (decision IN ('approved', 'rejected')),
    comment    TEXT,
    at         TEXT NOT NULL,
    CONSTRAINT approvals_job_principal UNIQUE (job_id, principal)
  );
  ALTER TABLE jobs ADD COLUMN approval_request JSON;
  `,
  // 5: rate-limit counters shared by the replicas (postgres/rate-limits.ts): one row per limiter key
  `
  CREATE TABLE rate_limits (
    key       TEXT PRIMARY KEY,
    hits      INTEGER NOT NULL,
    reset_at  BIGINT NOT NULL   -- ms since epoch: the window ends
  );
  CREATE INDEX rate_limits_reset_at ON rate_limits (reset_at);
  `,
  // 6: the job row's revision, bumped by every write of the job's fields (not by an event's append,
  //    which bumps last_event_seq alone): updateJob's compare-and-set (postgres/jobs.ts)
  `
  ALTER TABLE jobs ADD COLUMN revision INTEGER NOT NULL DEFAULT 0;
  `,
];

export const PG_SCHEMA_VERSION = PG_MIGRATIONS.length;

async function currentVersion(tx: Queryable): Promise<number> {
  const { rows } = await tx.query<{ v: number | null }>("SELECT max(version) AS v FROM schema_migrations");
  return rows[0]?.v ?? 0;
}

/** Migrates the database to PG_SCHEMA_VERSION, once across replicas; refuses a newer one (ConfigError). */
export async function migrate(db: Db, now: () => number): Promise<void> {
  await db.transaction(async (tx) => {
    await tx.query(`SELECT pg_advisory_xact_lock(${MIGRATION_LOCK_KEY})`);
    await tx.query(`CREATE TABLE IF NOT EXISTS schema_migrations (
      version     INTEGER PRIMARY KEY,
      applied_at  TEXT NOT NULL
    )`);
    const from = await currentVersion(tx);
    if (from > PG_SCHEMA_VERSION) {
      throw new ConfigError(
        `the store ${db.description} has schema version ${from}, newer than this deployer knows (${PG_SCHEMA_VERSION}); upgrade the deployer`,
      );
    }
    for (let v = from; v < PG_SCHEMA_VERSION; v++) {
      await tx.query(PG_MIGRATIONS[v]);
      await tx.query("INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)", [v + 1, new Date(now()).toISOString()]);
    }
  });
}
