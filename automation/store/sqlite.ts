/**
 * The `Store` on one SQLite file (better-sqlite3), opened side by side by the CLI and the service.
 * WAL mode so readers never wait for the writer; a busy timeout so two processes writing at once
 * queue instead of failing; every read-modify-write runs in an IMMEDIATE transaction (the write lock
 * is taken first), which is what makes a lease race across processes have exactly one winner.
 * Statements are prepared once per SQL text and reused.
 */
import Database from "better-sqlite3";
import * as path from "path";
import { ConfigError, ConflictError, DeployerError, NotFoundError } from "../errors";
import type { Outputs } from "../engine/port";
import { AuditTable, type AuditEntry, type ListAuditQuery, type NewAuditEntry } from "./audit";
import { OutcomeJournal } from "./outcomes";
import {
  asArray,
  checkDecision,
  checkOwner,
  checkTtl,
  conflictDetails,
  DEFAULT_LIST_LIMIT,
  describeHolder,
  checkedEvent,
  dispatchableStacksSql,
  elidedThrough,
  interruptedBlockReason,
  isLive,
  iso,
  JOB_FIELDS,
  leaseConflict,
  listLimit,
  maskOutputs,
  MAX_DECISION_COMMENT,
  MAX_LIST_LIMIT,
  MUTABLE_JOB_KEYS,
  newJobRecord,
  patchedJob,
  rejectionMessage,
  rowToLease,
  STACK_STATE_FIELDS,
  toDispatchableStack,
  type DispatchableRow,
  type LeaseRow,
} from "./rows";
import { MIGRATIONS, SCHEMA_VERSION } from "./schema";
import {
  ELIDED_EVENT_TYPE,
  MUTATING_OPERATIONS,
  type AcquireLeaseOptions,
  type ApprovalDecision,
  type DispatchableStack,
  type Job,
  type JobEvent,
  type JobPatch,
  type LastGoodDeploymentQuery,
  type Lease,
  type ListEventsQuery,
  type ListJobsQuery,
  type MarkInterruptedOptions,
  type NewApprovalDecision,
  type NewJob,
  type NewJobEvent,
  type QueuedStack,
  type StackState,
  type StackStatePatch,
  type SyncStore,
  type UpdateJobOptions,
} from "./types";

export interface SqliteStoreOptions {
  /** The clock (ms since epoch) for every time the store writes and every lease expiry it checks. Default `Date.now`. */
  readonly now?: () => number;
  /** Events kept per job, the `elided` marker included (default 5000, at least 2). */
  readonly maxEventsPerJob?: number;
  /** How long a write waits for another process's write lock before failing (default 5000 ms). */
  readonly busyTimeoutMs?: number;
}

export const DEFAULT_MAX_EVENTS_PER_JOB = 5000;
/** The CLI's wait for another process's write lock (the service uses a shorter one: api/server.ts). */
export const DEFAULT_BUSY_TIMEOUT_MS = 5000;
export { MAX_DECISION_COMMENT };
export { DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT };

type SqlValue = string | number | null;
type Row = Record<string, SqlValue>;

const JOB_INSERT_SQL = `INSERT INTO jobs (${JOB_FIELDS.map((f) => f.column).join(", ")})
  VALUES (${JOB_FIELDS.map((f) => "@" + f.column).join(", ")})`;
const JOB_UPDATE_SQL = `UPDATE jobs SET ${JOB_FIELDS.filter((f) => MUTABLE_JOB_KEYS.has(f.key))
  .map((f) => `${f.column} = @${f.column}`)
  .join(", ")} WHERE id = @id`;


export class SqliteStore implements SyncStore {
  private readonly statements = new Map<string, Database.Statement>();
  private readonly now: () => number;
  private readonly maxEventsPerJob: number;
  private readonly audit: AuditTable;
  /** Outcomes the database would not take, beside the database file (none for `:memory:`). */
  private readonly outcomes?: OutcomeJournal;

  private constructor(
    private readonly db: Database.Database,
    /** The database file (or `:memory:`). */
    readonly file: string,
    options: SqliteStoreOptions,
  ) {
    this.now = options.now ?? Date.now;
    this.maxEventsPerJob = options.maxEventsPerJob ?? DEFAULT_MAX_EVENTS_PER_JOB;
    this.audit = new AuditTable((sql) => this.stmt(sql), this.now);
    if (file !== ":memory:" && file !== "") this.outcomes = new OutcomeJournal(path.join(path.dirname(file), "outcomes"));
  }

  /** Opens (creating or migrating as needed) the store in `file`. */
  static open(file: string, options: SqliteStoreOptions = {}): SqliteStore {
    const max = options.maxEventsPerJob ?? DEFAULT_MAX_EVENTS_PER_JOB;
    if (!Number.isInteger(max) || max < 2) {
      throw new ConfigError(`maxEventsPerJob must be an integer of at least 2, got ${String(max)}`);
    }
    const busyTimeoutMs = options.busyTimeoutMs ?? DEFAULT_BUSY_TIMEOUT_MS;
    if (!Number.isInteger(busyTimeoutMs) || busyTimeoutMs < 0) throw new ConfigError(`busyTimeoutMs must be a whole number of milliseconds, got ${String(busyTimeoutMs)}`);
    // Opening and migrating wait the default (two processes starting together); then the caller's timeout.
    const db = new Database(file, { timeout: Math.max(busyTimeoutMs, DEFAULT_BUSY_TIMEOUT_MS) });
    try {
      db.pragma("journal_mode = WAL");
      // WAL + NORMAL survives any process crash; only an OS crash can lose the last commits, and it
      // saves an fsync on every event appended.
      db.pragma("synchronous = NORMAL");
      db.pragma("foreign_keys = ON");
      migrate(db);
      db.pragma(`busy_timeout = ${busyTimeoutMs}`);
    } catch (err) {
      db.close();
      throw err;
    }
    return new SqliteStore(db, file, options);
  }

  // Jobs ------------------------------------------------------------------------------------------

  createJob(input: NewJob): Job {
    const job = newJobRecord(input, this.now());
    try {
      this.stmt(JOB_INSERT_SQL).run(jobToRow(job));
    } catch (err) {
      if (isUniqueViolation(err, "jobs.idempotency_key")) {
        const existing = this.findByIdempotencyKey(job.idempotencyKey ?? "");
        throw new ConflictError(`idempotency key "${job.idempotencyKey}" is already used by job ${existing?.id}`, {
          cause: err,
          details: { jobId: existing?.id },
        });
      }
      throw err;
    }
    return this.mustGetJob(job.id);
  }

  getJob(id: string): Job | undefined {
    const row = this.stmt("SELECT * FROM jobs WHERE id = ?").get(id) as Row | undefined;
    return row && this.toJob(row);
  }

  jobStack(id: string): string | undefined {
    return (this.stmt("SELECT stack FROM jobs WHERE id = ?").get(id) as { stack: string } | undefined)?.stack;
  }

  jobStamp(id: string): string | undefined {
    const row = this.stmt("SELECT status, finished_at, rolled_back_by, last_event_seq FROM jobs WHERE id = ?").get(id) as
      | { status: string; finished_at: string | null; rolled_back_by: string | null; last_event_seq: number }
      | undefined;
    return row && `${row.status}|${row.finished_at ?? ""}|${row.rolled_back_by ?? ""}|${row.last_event_seq}`;
  }

  updateJob(id: string, patch: JobPatch, options: UpdateJobOptions = {}): Job {
    return this.immediate(() => {
      const current = this.getJob(id);
      if (!current) throw new NotFoundError(`job ${id} not found`);
      this.stmt(JOB_UPDATE_SQL).run(jobToRow(patchedJob(current, patch, options)));
      return this.mustGetJob(id);
    });
  }

  listJobs(query: ListJobsQuery = {}): Job[] {
    const where: string[] = [];
    const params: SqlValue[] = [];
    if (query.stack !== undefined) {
      const stacks = asArray(query.stack);
      where.push(`stack IN (${placeholders(stacks.length)})`);
      params.push(...stacks);
    }
    if (query.status !== undefined) {
      const statuses = asArray(query.status);
      where.push(`status IN (${placeholders(statuses.length)})`);
      params.push(...statuses);
    }
    if (query.operation !== undefined) {
      const operations = asArray(query.operation);
      where.push(`operation IN (${placeholders(operations.length)})`);
      params.push(...operations);
    }
    if (query.version !== undefined) {
      where.push("version = ?");
      params.push(query.version);
    }
    if (query.before !== undefined) {
      where.push("id < ?");
      params.push(query.before);
    }
    const sql = `SELECT * FROM jobs ${where.length ? "WHERE " + where.join(" AND ") : ""} ORDER BY id DESC LIMIT ?`;
    return this.all(sql, [...params, listLimit(query.limit)]);
  }

  deployments(stack: string, options: { limit?: number; version?: string } = {}): Job[] {
    const version = options.version === undefined ? "" : " AND version = ?";
    return this.all(
      `SELECT * FROM jobs WHERE stack = ? AND status = 'succeeded' AND operation IN ('up', 'rollback')${version}
       ORDER BY finished_at DESC, id DESC LIMIT ?`,
      [stack, ...(options.version === undefined ? [] : [options.version]), listLimit(options.limit)],
    );
  }

  lastGoodDeployment(stack: string, query: LastGoodDeploymentQuery = {}): Job | undefined {
    const where = ["stack = ?", "status = 'succeeded'", "operation IN ('up', 'rollback')"];
    const params: SqlValue[] = [stack];
    if (!query.includeRolledBack) where.push("rolled_back_by IS NULL");
    if (query.excludeJobId !== undefined) {
      where.push("id != ?");
      params.push(query.excludeJobId);
    }
    if (query.beforeJobId !== undefined) {
      const ref = this.getJob(query.beforeJobId);
      if (!ref) throw new NotFoundError(`job ${query.beforeJobId} not found`);
      where.push("id != ?");
      params.push(ref.id);
      // Deployments take effect when they finish; one that has not finished comes after all that have.
      if (ref.finishedAt !== undefined) {
        where.push("(finished_at < ? OR (finished_at = ? AND id < ?))");
        params.push(ref.finishedAt, ref.finishedAt, ref.id);
      }
    }
    const sql = `SELECT * FROM jobs WHERE ${where.join(" AND ")} ORDER BY finished_at DESC, id DESC LIMIT 1`;
    return this.all(sql, params)[0];
  }

  findByIdempotencyKey(key: string): Job | undefined {
    const row = this.stmt("SELECT * FROM jobs WHERE idempotency_key = ?").get(key) as Row | undefined;
    return row && this.toJob(row);
  }

  queuedJobs(options: { stack?: string; limit?: number } = {}): Job[] {
    const limit = options.limit ?? -1; // SQLite: a negative LIMIT is no limit
    return options.stack === undefined
      ? this.all("SELECT * FROM jobs WHERE status = 'queued' ORDER BY id ASC LIMIT ?", [limit])
      : this.all("SELECT * FROM jobs WHERE status = 'queued' AND stack = ? ORDER BY id ASC LIMIT ?", [options.stack, limit]);
  }

  countQueued(options: { stack?: string; requestedBy?: string } = {}): number {
    const where = ["status = 'queued'"];
    const args: string[] = [];
    if (options.stack !== undefined) (where.push("stack = ?"), args.push(options.stack));
    if (options.requestedBy !== undefined) (where.push("requested_by = ?"), args.push(options.requestedBy));
    return (this.stmt(`SELECT COUNT(*) AS n FROM jobs WHERE ${where.join(" AND ")}`).get(...args) as { n: number }).n;
  }

  pruneEvents(retentionMs: number): number {
    const before = iso(this.now() - retentionMs);
    return this.stmt(
      "DELETE FROM job_events WHERE job_id IN (SELECT id FROM jobs WHERE finished_at IS NOT NULL AND finished_at < ? AND status NOT IN ('queued', 'running', 'awaiting_approval'))",
    ).run(before).changes;
  }

  queuedStacks(): QueuedStack[] {
    const rows = this.stmt(
      "SELECT stack, COUNT(*) AS queued, MIN(id) AS oldest FROM jobs WHERE status = 'queued' GROUP BY stack ORDER BY oldest ASC",
    ).all() as { stack: string; queued: number; oldest: string }[];
    return rows.map((r) => ({ stack: r.stack, queued: r.queued, oldestJobId: r.oldest }));
  }

  dispatchableStacks(options: { stack?: string } = {}): DispatchableStack[] {
    // Named parameters: the statement names the stack (in its WITH) before the time.
    const sql = dispatchableStacksSql((i) => `@p${i}`, options.stack !== undefined);
    const rows = this.stmt(sql).all(options.stack === undefined ? { p1: this.now() } : { p1: this.now(), p2: options.stack }) as DispatchableRow[];
    return rows.map(toDispatchableStack);
  }

  queuePosition(jobId: string): number | undefined {
    const job = this.stmt("SELECT stack, status FROM jobs WHERE id = ?").get(jobId) as { stack: string; status: string } | undefined;
    if (job?.status !== "queued") return undefined;
    const row = this.stmt("SELECT COUNT(*) AS ahead FROM jobs WHERE status = 'queued' AND stack = ? AND id < ?").get(job.stack, jobId) as { ahead: number };
    return row.ahead + 1;
  }

  keepOutcome(jobId: string, patch: JobPatch): string | undefined {
    return this.outcomes?.keep(jobId, patch);
  }

  applyKeptOutcomes(): Job[] {
    return this.outcomes?.applyTo((id, patch) => this.updateJob(id, patch, { ifStatus: "running" })) ?? [];
  }

  markRunningAsInterrupted(reason: string, options: MarkInterruptedOptions = {}): Job[] {
    // An outcome kept on disk is what happened to its job: written before anything counts as interrupted.
    this.applyKeptOutcomes();
    return this.immediate(() => {
      const nowMs = this.now();
      const finishedAt = iso(nowMs);
      const error = JSON.stringify({ code: "interrupted", message: reason });
      const changed: Job[] = [];
      for (const job of this.all("SELECT * FROM jobs WHERE status = 'running' ORDER BY id ASC", [])) {
        const lease = this.leaseRow(job.stack);
        const aliveElsewhere =
          lease !== undefined &&
          isLive(lease, nowMs) &&
          lease.owner !== options.owner &&
          (lease.job_id === null || lease.job_id === job.id);
        if (aliveElsewhere) continue;
        this.stmt("UPDATE jobs SET status = 'interrupted', finished_at = ?, error = ? WHERE id = ?").run(
          finishedAt,
          error,
          job.id,
        );
        if (MUTATING_OPERATIONS.has(job.operation)) {
          this.writeStackState(job.stack, {
            blockedReason: interruptedBlockReason(job, reason),
            blockedJobId: job.id,
            blockedAt: finishedAt,
          });
        }
        changed.push(this.mustGetJob(job.id));
      }
      return changed;
    });
  }

  // Approvals -------------------------------------------------------------------------------------

  recordDecision(jobId: string, input: NewApprovalDecision): Job {
    checkDecision(input);
    return this.immediate(() => {
      const job = this.mustGetJob(jobId);
      if (job.status !== "awaiting_approval") {
        throw new ConflictError(`job ${jobId} is ${job.status}, not awaiting approval`, { details: { jobId, status: job.status } });
      }
      const earlier = (job.decisions ?? []).find((d) => d.by === input.by);
      if (earlier) {
        throw new ConflictError(`${input.by} already ${earlier.decision} job ${jobId} (${earlier.at}); one decision per principal`, {
          details: { jobId, by: input.by, decision: earlier.decision },
        });
      }
      const at = iso(this.now());
      this.stmt("INSERT INTO approvals (job_id, principal, decision, comment, at) VALUES (?, ?, ?, ?, ?)").run(jobId, input.by, input.decision, input.comment ?? null, at);
      if (input.decision === "rejected") {
        const message = rejectionMessage(input);
        return this.updateJob(jobId, { status: "rejected", finishedAt: at, error: { code: "rejected", message } });
      }
      const approvals = this.listDecisions(jobId).filter((d) => d.decision === "approved").length;
      if (approvals >= job.approvalsRequired) return this.updateJob(jobId, { status: "queued" });
      return this.mustGetJob(jobId);
    });
  }

  listDecisions(jobId: string): ApprovalDecision[] {
    const rows = this.stmt("SELECT principal, decision, comment, at FROM approvals WHERE job_id = ? ORDER BY id ASC").all(jobId) as {
      principal: string;
      decision: ApprovalDecision["decision"];
      comment: string | null;
      at: string;
    }[];
    return rows.map((r) => ({ by: r.principal, decision: r.decision, ...(r.comment === null ? {} : { comment: r.comment }), at: r.at }));
  }

  // Job events ------------------------------------------------------------------------------------

  appendEvent(jobId: string, event: NewJobEvent): { seq: number; time: string } {
    return this.appendEvents(jobId, [event])[0];
  }

  appendEvents(jobId: string, events: readonly NewJobEvent[]): { seq: number; time: string }[] {
    const rows = events.map(checkedEvent);
    if (rows.length === 0) return [];
    return this.immediate(() => {
      const job = this.stmt("SELECT last_event_seq, events_elided FROM jobs WHERE id = ?").get(jobId) as
        | { last_event_seq: number; events_elided: number }
        | undefined;
      if (!job) throw new NotFoundError(`job ${jobId} not found`);
      const time = iso(this.now());
      const insert = this.stmt("INSERT INTO job_events (job_id, seq, time, type, data) VALUES (?, ?, ?, ?, ?)");
      const appended = rows.map(({ type, data }, i) => {
        const seq = job.last_event_seq + 1 + i;
        insert.run(jobId, seq, time, type, data);
        return { seq, time };
      });
      const last = job.last_event_seq + rows.length;
      this.stmt("UPDATE jobs SET last_event_seq = ? WHERE id = ?").run(last, jobId);
      const elided = elidedThrough(last, job.events_elided, this.maxEventsPerJob);
      if (elided !== undefined) {
        this.stmt("DELETE FROM job_events WHERE job_id = ? AND seq <= ?").run(jobId, elided);
        insert.run(jobId, elided, time, ELIDED_EVENT_TYPE, JSON.stringify({ count: elided }));
        this.stmt("UPDATE jobs SET events_elided = ? WHERE id = ?").run(elided, jobId);
      }
      return appended;
    });
  }

  listEvents(jobId: string, query: ListEventsQuery = {}): JobEvent[] {
    const rows = this.stmt(
      "SELECT seq, time, type, data FROM job_events WHERE job_id = ? AND seq > ? ORDER BY seq ASC LIMIT ?",
    ).all(jobId, query.afterSeq ?? 0, query.limit ?? -1) as { seq: number; time: string; type: string; data: string | null }[];
    return rows.map((r) => ({ seq: r.seq, time: r.time, type: r.type, data: r.data === null ? null : JSON.parse(r.data) }));
  }

  // Leases ----------------------------------------------------------------------------------------

  acquireLease(stack: string, options: AcquireLeaseOptions): Lease {
    checkOwner(options.owner);
    checkTtl(options.ttlMs);
    return this.immediate(() => {
      const nowMs = this.now();
      const expiresAt = nowMs + options.ttlMs;
      const row = this.leaseRow(stack);
      if (row === undefined) {
        this.stmt(
          "INSERT INTO leases (stack, owner, token, acquired_at, expires_at, job_id, released_at) VALUES (?, ?, 1, ?, ?, ?, NULL)",
        ).run(stack, options.owner, nowMs, expiresAt, options.jobId ?? null);
      } else if (!isLive(row, nowMs)) {
        this.stmt(
          "UPDATE leases SET owner = ?, token = token + 1, acquired_at = ?, expires_at = ?, job_id = ?, released_at = NULL WHERE stack = ?",
        ).run(options.owner, nowMs, expiresAt, options.jobId ?? null, stack);
      } else if (row.owner === options.owner) {
        this.stmt("UPDATE leases SET expires_at = ?, job_id = ? WHERE stack = ?").run(
          expiresAt,
          options.jobId ?? row.job_id,
          stack,
        );
      } else {
        throw leaseConflict(row);
      }
      return rowToLease(this.leaseRow(stack) as LeaseRow);
    });
  }

  renewLease(stack: string, owner: string, token: number, ttlMs: number): Lease {
    checkTtl(ttlMs);
    return this.immediate(() => {
      const nowMs = this.now();
      const row = this.leaseRow(stack);
      // Expired but untouched is still ours: nobody acquired it since, or the token would have moved.
      if (row === undefined || row.owner !== owner || row.token !== token || row.released_at !== null) {
        const heldBy = row !== undefined && isLive(row, nowMs) ? row : undefined;
        throw new ConflictError(
          `the lease on stack "${stack}" is no longer held by ${owner} (token ${token})` +
            (heldBy ? `; it is held by ${describeHolder(heldBy)}` : ""),
          { details: heldBy ? conflictDetails(heldBy) : { stack } },
        );
      }
      this.stmt("UPDATE leases SET expires_at = ? WHERE stack = ?").run(nowMs + ttlMs, stack);
      return rowToLease(this.leaseRow(stack) as LeaseRow);
    });
  }

  releaseLease(stack: string, owner: string, token: number): void {
    this.stmt(
      "UPDATE leases SET released_at = ? WHERE stack = ? AND owner = ? AND token = ? AND released_at IS NULL",
    ).run(this.now(), stack, owner, token);
  }

  getLease(stack: string): Lease | undefined {
    const row = this.leaseRow(stack);
    return row !== undefined && isLive(row, this.now()) ? rowToLease(row) : undefined;
  }

  forceReleaseLease(stack: string): Lease | undefined {
    return this.immediate(() => {
      const row = this.leaseRow(stack);
      if (row === undefined || row.released_at !== null) return undefined;
      this.stmt("UPDATE leases SET released_at = ? WHERE stack = ?").run(this.now(), stack);
      return rowToLease(row);
    });
  }

  // Stack flags -----------------------------------------------------------------------------------

  getStackState(stack: string): StackState {
    const row = this.stmt("SELECT * FROM stack_state WHERE stack = ?").get(stack) as Row | undefined;
    const state: Record<string, unknown> = { stack };
    if (row) {
      for (const f of STACK_STATE_FIELDS) {
        const v = row[f.column];
        if (v !== null) state[f.key] = f.key === "drifted" ? v === 1 : v;
      }
    }
    return state as unknown as StackState;
  }

  setStackState(stack: string, patch: StackStatePatch): StackState {
    return this.immediate(() => {
      this.writeStackState(stack, patch);
      return this.getStackState(stack);
    });
  }

  // Audit trail -----------------------------------------------------------------------------------

  appendAudit(entry: NewAuditEntry): AuditEntry {
    return this.audit.append(entry);
  }

  listAudit(query: ListAuditQuery = {}): AuditEntry[] {
    return this.audit.list(query);
  }

  pruneAudit(retentionMs: number): number {
    return this.audit.prune(retentionMs);
  }

  // Lifecycle -------------------------------------------------------------------------------------

  ping(): void {
    this.stmt("SELECT 1").get();
  }

  close(): void {
    this.statements.clear();
    this.db.close();
  }

  // Internals -------------------------------------------------------------------------------------

  private stmt(sql: string): Database.Statement {
    let s = this.statements.get(sql);
    if (s === undefined) {
      s = this.db.prepare(sql);
      this.statements.set(sql, s);
    }
    return s;
  }

  private all(sql: string, params: SqlValue[]): Job[] {
    return (this.stmt(sql).all(...params) as Row[]).map((row) => this.toJob(row));
  }

  private immediate<T>(fn: () => T): T {
    return this.db.transaction(fn).immediate();
  }

  /** A row as a Job; a job that needs approvals comes with its decisions. */
  private toJob(row: Row): Job {
    const job = rowToJob(row);
    return job.approvalsRequired > 0 ? { ...job, decisions: this.listDecisions(job.id) } : job;
  }

  private mustGetJob(id: string): Job {
    const job = this.getJob(id);
    if (!job) throw new NotFoundError(`job ${id} not found`);
    return job;
  }

  private leaseRow(stack: string): LeaseRow | undefined {
    return this.stmt("SELECT * FROM leases WHERE stack = ?").get(stack) as LeaseRow | undefined;
  }

  /** Upserts the flags in `patch` (call inside a transaction). */
  private writeStackState(stack: string, patch: StackStatePatch): void {
    const current = this.getStackState(stack) as unknown as Record<string, unknown>;
    for (const key of Object.keys(patch)) {
      if (!STACK_STATE_FIELDS.some((f) => f.key === key)) throw new ConfigError(`setStackState: unknown field "${key}"`);
    }
    const params: Record<string, SqlValue> = { stack, updated_at: iso(this.now()) };
    for (const f of STACK_STATE_FIELDS) {
      const value = patch[f.key] === undefined ? current[f.key] : patch[f.key];
      params[f.column] = value === undefined || value === null ? null : typeof value === "boolean" ? Number(value) : (value as SqlValue);
    }
    const columns = ["stack", ...STACK_STATE_FIELDS.map((f) => f.column), "updated_at"];
    this.stmt(
      `INSERT INTO stack_state (${columns.join(", ")}) VALUES (${columns.map((c) => "@" + c).join(", ")})
       ON CONFLICT (stack) DO UPDATE SET ${columns
         .filter((c) => c !== "stack")
         .map((c) => `${c} = excluded.${c}`)
         .join(", ")}`,
    ).run(params);
  }
}

// Helpers ------------------------------------------------------------------------------------------

function migrate(db: Database.Database): void {
  const version = () => db.pragma("user_version", { simple: true }) as number;
  const check = (v: number) => {
    if (v > SCHEMA_VERSION) {
      throw new DeployerError(
        `the store ${db.name} has schema version ${v}, newer than this deployer knows (${SCHEMA_VERSION}); upgrade the deployer`,
      );
    }
  };
  check(version());
  if (version() === SCHEMA_VERSION) return;
  db.transaction(() => {
    // Read again under the write lock: another process may have migrated meanwhile.
    const from = version();
    check(from);
    for (let i = from; i < MIGRATIONS.length; i++) db.exec(MIGRATIONS[i]);
    db.pragma(`user_version = ${SCHEMA_VERSION}`);
  }).immediate();
}

function placeholders(n: number): string {
  if (n === 0) return "NULL"; // `IN (NULL)` matches nothing, as an empty filter should
  return Array.from({ length: n }, () => "?").join(", ");
}

function isUniqueViolation(err: unknown, column: string): boolean {
  return (
    err instanceof Database.SqliteError && err.code === "SQLITE_CONSTRAINT_UNIQUE" && err.message.includes(column)
  );
}

function jobToRow(job: Job): Row {
  const row: Row = {};
  for (const f of JOB_FIELDS) {
    let value: unknown = job[f.key];
    if (f.key === "outputs" && value !== undefined) value = maskOutputs(value as Outputs);
    row[f.column] = value === undefined ? null : f.json ? JSON.stringify(value) : (value as SqlValue);
  }
  return row;
}

function rowToJob(row: Row): Job {
  const job: Record<string, unknown> = {};
  for (const f of JOB_FIELDS) {
    const value = row[f.column];
    if (value === null || value === undefined) continue;
    job[f.key] = f.json ? JSON.parse(value as string) : value;
  }
  return job as unknown as Job;
}
