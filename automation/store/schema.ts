/**
 * The SQLite schema as an append-only list of migrations: entry i moves `PRAGMA user_version` from i
 * to i + 1. Never edit a shipped entry; add one. Times the store compares (lease expiry) are integer
 * milliseconds; times it only shows are ISO strings, which sort correctly as text.
 */
import { AUDIT_MIGRATION } from "./audit";

export const MIGRATIONS: readonly string[] = [
  // 1: jobs, their events, leases, stack flags
  `
  CREATE TABLE jobs (
    id                TEXT PRIMARY KEY,
    stack             TEXT NOT NULL,
    operation         TEXT NOT NULL,
    status            TEXT NOT NULL,
    version           TEXT,
    image_digest      TEXT,
    requested_by      TEXT NOT NULL,
    source            TEXT NOT NULL,
    message           TEXT,
    reason            TEXT,
    target            TEXT,          -- JSON string[]
    created_at        TEXT NOT NULL,
    started_at        TEXT,
    finished_at       TEXT,
    changes           TEXT,          -- JSON ChangeSummary
    steps             TEXT,          -- JSON ResourceStep[]
    drift             TEXT,          -- JSON DriftedResource[]
    outputs           TEXT,          -- JSON Outputs, secret values masked
    config            TEXT,          -- JSON Record<string,string>
    rollback_of       TEXT,
    rollback_to       TEXT,
    rolled_back_by    TEXT,
    auto_rollback_of  TEXT,
    error             TEXT,          -- JSON {code,message}
    engine            TEXT NOT NULL,
    approvals_required INTEGER NOT NULL DEFAULT 0,
    idempotency_key   TEXT UNIQUE,
    request_hash      TEXT,
    last_event_seq    INTEGER NOT NULL DEFAULT 0,
    events_elided     INTEGER NOT NULL DEFAULT 0   -- events 1..n were dropped by the cap
  );
  CREATE INDEX jobs_stack_id ON jobs (stack, id);
  CREATE INDEX jobs_status_id ON jobs (status, id);
  CREATE INDEX jobs_deployments ON jobs (stack, status, operation, finished_at);

  CREATE TABLE job_events (
    job_id  TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    seq     INTEGER NOT NULL,
    time    TEXT NOT NULL,
    type    TEXT NOT NULL,
    data    TEXT,                    -- JSON
    PRIMARY KEY (job_id, seq)
  ) WITHOUT ROWID;

  -- One row per stack, kept after release so the fencing token never goes back.
  CREATE TABLE leases (
    stack        TEXT PRIMARY KEY,
    owner        TEXT NOT NULL,
    token        INTEGER NOT NULL,
    acquired_at  INTEGER NOT NULL,   -- ms since epoch
    expires_at   INTEGER NOT NULL,   -- ms since epoch
    job_id       TEXT,
    released_at  INTEGER             -- ms since epoch; NULL while held
  );

  CREATE TABLE stack_state (
    stack             TEXT PRIMARY KEY,
    blocked_reason    TEXT,
    blocked_job_id    TEXT,
    blocked_at        TEXT,
    drifted           INTEGER,
    last_drift_at     TEXT,
    last_drift_job_id TEXT,
    updated_at        TEXT NOT NULL
  );
  `,
  // 2: the request a queued job runs with (JSON JobRequestParams), so a restarted service can run it;
  //    the queue's per-stack FIFO reads queued jobs by (status, stack, id)
  `
  ALTER TABLE jobs ADD COLUMN params TEXT;
  CREATE INDEX jobs_status_stack_id ON jobs (status, stack, id);
  `,
  // 3: the audit trail: append-only (triggers refuse updates, and deletes of anything younger than a day)
  AUDIT_MIGRATION,
  // 4: approvals: each approver's decision on a job awaiting approval (one per principal and job), and
  //    on the job, what its approvers are asked to approve (JSON ApprovalRequest: plan and expiry)
  `
  CREATE TABLE approvals (
    id         INTEGER PRIMARY KEY,  -- order of the decisions
    job_id     TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    principal  TEXT NOT NULL,
    decision   TEXT NOT NULL CHECK (decision IN ('approved', 'rejected')),
    comment    TEXT,
    at         TEXT NOT NULL,
    UNIQUE (job_id, principal)
  );
  ALTER TABLE jobs ADD COLUMN approval_request TEXT;
  `,
  // 5: rate-limit counters shared by replicas: used on PostgreSQL only (one SQLite service counts in
  //    memory); here so that both lists keep the same versions
  `
  CREATE TABLE rate_limits (
    key       TEXT PRIMARY KEY,
    hits      INTEGER NOT NULL,
    reset_at  INTEGER NOT NULL   -- ms since epoch
  );
  `,
  // 6: the job row's revision, for PostgreSQL's compare-and-set of a job (postgres/jobs.ts); SQLite
  //    writes a job under its database's write lock, but keeps the column so that both lists keep the
  //    same versions
  `
  ALTER TABLE jobs ADD COLUMN revision INTEGER NOT NULL DEFAULT 0;
  `,
];

export const SCHEMA_VERSION = MIGRATIONS.length;
