/**
 * The `Store` on PostgreSQL: one database shared by several service replicas. It behaves exactly like
 * SqliteStore (the contract suite test/automation/store.spec.ts runs against both); what SQLite gets
 * from one IMMEDIATE transaction per read-modify-write, this gets from one transaction per
 * read-modify-write that locks the rows it reads (`SELECT … FOR UPDATE`, an `UPDATE … RETURNING`, or
 * `INSERT … ON CONFLICT`), so two replicas racing for a lease or a job's status have exactly one
 * winner. Transactions are retried on a serialization failure or deadlock; a server that cannot be
 * reached is a `StoreUnavailableError`. Every time written and every lease expiry compared comes from
 * the injected clock, as in SQLite.
 *
 * Parts: postgres/db.ts (pool, statements, transactions, errors), postgres/schema.ts (migrations),
 * postgres/rows.ts (columns and validation), postgres/events.ts, postgres/leases.ts, postgres/audit.ts,
 * postgres/changes.ts (`watch`: LISTEN/NOTIFY), postgres/rate-limits.ts (rate limits shared by replicas).
 */
import { rmSync } from "fs";
import { ConfigError, ConflictError, NotFoundError } from "../errors";
import type { AuditEntry, ListAuditQuery, NewAuditEntry } from "./audit";
import { OutcomeJournal } from "./outcomes";
import { checkDecision, interruptedBlockReason, keptOutcomeSettled, rejectionMessage } from "./rows";
import { DEFAULT_MAX_EVENTS_PER_JOB } from "./sqlite";
import { PostgresAudit } from "./postgres/audit";
import { ChangeFeed, notifyChange, type ChangeFeedOptions } from "./postgres/changes";
import { Db, type Queryable, type SqlParam } from "./postgres/db";
import { PostgresEvents } from "./postgres/events";
import { PostgresJobs, SELECT_JOB_FOR_UPDATE } from "./postgres/jobs";
import { PostgresLeases, sharedLeaseRows } from "./postgres/leases";
import { isLive, iso, rowToStackState, STACK_STATE_FIELDS, type Row } from "./postgres/rows";
import { PostgresRateLimitStore } from "./postgres/rate-limits";
import { migrate } from "./postgres/schema";
import {
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
  type Store,
  type StoreChange,
  type UpdateJobOptions,
} from "./types";

export { PG_MIGRATIONS, PG_SCHEMA_VERSION } from "./postgres/schema";

export interface PostgresStoreOptions {
  /** The clock (ms since epoch) for every time the store writes and every lease expiry it checks. Default `Date.now`. */
  readonly now?: () => number;
  /** Events kept per job, the `elided` marker included (default 5000, at least 2). */
  readonly maxEventsPerJob?: number;
  /** Where `keepOutcome` keeps outcomes the database would not take (outcomes.ts); without it keepOutcome returns undefined. */
  readonly outcomesDir?: string;
  /** Connections in the pool (default 10). */
  readonly poolSize?: number;
  /** How long to wait for a connection before the store counts as unavailable (default 10 000 ms). */
  readonly connectTimeoutMs?: number;
  /** `watch`: where listener errors and LISTEN connection drops are reported, and the reconnect backoff. */
  readonly watch?: ChangeFeedOptions;
}

/** Opens (migrating as needed) the store in the database at `url` (`postgresql://user:password@host:port/database`). */
export async function openPostgresStore(url: string, options: PostgresStoreOptions = {}): Promise<PostgresStore> {
  const max = options.maxEventsPerJob ?? DEFAULT_MAX_EVENTS_PER_JOB;
  if (!Number.isInteger(max) || max < 2) throw new ConfigError(`maxEventsPerJob must be an integer of at least 2, got ${String(max)}`);
  const db = new Db(url, {
    max: options.poolSize ?? 10,
    connectionTimeoutMillis: options.connectTimeoutMs ?? 10_000,
    application_name: "pulumi-aws-deployer",
  });
  try {
    await migrate(db, options.now ?? Date.now);
  } catch (err) {
    await db.end().catch(() => undefined);
    throw err;
  }
  return new PostgresStore(db, options);
}


export class PostgresStore implements Store {
  private readonly now: () => number;
  private readonly outcomes?: OutcomeJournal;
  private readonly jobs: PostgresJobs;
  private readonly events: PostgresEvents;
  private readonly leases: PostgresLeases;
  private readonly audit: PostgresAudit;
  private readonly feed: ChangeFeed;

  /** Use `openPostgresStore`. */
  constructor(
    private readonly db: Db,
    options: PostgresStoreOptions = {},
  ) {
    this.now = options.now ?? Date.now;
    this.jobs = new PostgresJobs(db, this.now);
    this.events = new PostgresEvents(db, this.now, options.maxEventsPerJob ?? DEFAULT_MAX_EVENTS_PER_JOB);
    this.leases = new PostgresLeases(db, this.now);
    this.audit = new PostgresAudit(db, this.now);
    this.feed = new ChangeFeed(db, options.watch);
    if (options.outcomesDir !== undefined) this.outcomes = new OutcomeJournal(options.outcomesDir);
  }

  /** The server and database, without credentials. */
  get description(): string {
    return this.db.description;
  }

  // Jobs ------------------------------------------------------------------------------------------

  async createJob(input: NewJob): Promise<Job> {
    return this.jobs.createJob(input);
  }

  async getJob(id: string): Promise<Job | undefined> {
    return this.jobs.getJob(id);
  }

  async jobStack(id: string): Promise<string | undefined> {
    return this.jobs.jobStack(id);
  }

  async jobStamp(id: string): Promise<string | undefined> {
    return this.jobs.jobStamp(id);
  }

  async updateJob(id: string, patch: JobPatch, options: UpdateJobOptions = {}): Promise<Job> {
    return this.jobs.updateJob(id, patch, options);
  }

  async listJobs(query: ListJobsQuery = {}): Promise<Job[]> {
    return this.jobs.listJobs(query);
  }

  async deployments(stack: string, options: { limit?: number; version?: string } = {}): Promise<Job[]> {
    return this.jobs.deployments(stack, options);
  }

  async lastGoodDeployment(stack: string, query: LastGoodDeploymentQuery = {}): Promise<Job | undefined> {
    return this.jobs.lastGoodDeployment(stack, query);
  }

  async findByIdempotencyKey(key: string): Promise<Job | undefined> {
    return this.jobs.findByIdempotencyKey(key);
  }

  async queuedJobs(options: { stack?: string; limit?: number } = {}): Promise<Job[]> {
    return this.jobs.queuedJobs(options);
  }

  async countQueued(options: { stack?: string; requestedBy?: string } = {}): Promise<number> {
    return this.jobs.countQueued(options);
  }

  async pruneEvents(retentionMs: number): Promise<number> {
    return this.events.prune(retentionMs);
  }

  async queuedStacks(): Promise<QueuedStack[]> {
    return this.jobs.queuedStacks();
  }

  async dispatchableStacks(options: { stack?: string } = {}): Promise<DispatchableStack[]> {
    return this.jobs.dispatchableStacks(options);
  }

  async queuePosition(jobId: string): Promise<number | undefined> {
    return this.jobs.queuePosition(jobId);
  }

  async keepOutcome(jobId: string, patch: JobPatch): Promise<string | undefined> {
    return this.outcomes?.keep(jobId, patch);
  }

  /** OutcomeJournal.applyTo, awaiting each write: a job still `running` takes its kept outcome; the file goes unless the write failed otherwise. */
  async applyKeptOutcomes(): Promise<Job[]> {
    const applied: Job[] = [];
    for (const { jobId, patch, file } of this.outcomes?.kept() ?? []) {
      try {
        applied.push(await this.updateJob(jobId, patch, { ifStatus: "running" }));
      } catch (err) {
        if (!keptOutcomeSettled(err)) continue;
      }
      rmSync(file, { force: true });
    }
    return applied;
  }

  async markRunningAsInterrupted(reason: string, options: MarkInterruptedOptions = {}): Promise<Job[]> {
    // An outcome kept on disk is what happened to its job: written before anything counts as interrupted.
    await this.applyKeptOutcomes();
    return this.db.transaction(async (tx) => {
      const nowMs = this.now();
      const finishedAt = iso(nowMs);
      const error = JSON.stringify({ code: "interrupted", message: reason });
      // Lock the running jobs (in id order, as every multi-row locker here), then their stacks' leases
      // against a concurrent acquire or release until this commits.
      const running = await this.jobs.select(tx, "SELECT * FROM jobs WHERE status = 'running' ORDER BY id ASC FOR UPDATE", []);
      const leases = await sharedLeaseRows(tx, [...new Set(running.map((j) => j.stack))]);
      const changed: Job[] = [];
      for (const job of running) {
        const lease = leases.get(job.stack);
        const aliveElsewhere =
          lease !== undefined && isLive(lease, nowMs) && lease.owner !== options.owner && (lease.job_id === null || lease.job_id === job.id);
        if (aliveElsewhere) continue;
        await tx.query("UPDATE jobs SET status = 'interrupted', finished_at = $2, error = $3::json, revision = revision + 1 WHERE id = $1", [job.id, finishedAt, error]);
        await notifyChange(tx, { kind: "job", jobId: job.id, stack: job.stack, status: "interrupted" });
        if (MUTATING_OPERATIONS.has(job.operation)) {
          await this.writeStackState(tx, job.stack, {
            blockedReason: interruptedBlockReason(job, reason),
            blockedJobId: job.id,
            blockedAt: finishedAt,
          });
        }
        changed.push(await this.jobs.mustGetJob(tx, job.id));
      }
      return changed;
    });
  }

  // Approvals -------------------------------------------------------------------------------------

  async recordDecision(jobId: string, input: NewApprovalDecision): Promise<Job> {
    checkDecision(input);
    return this.db.transaction(async (tx) => {
      const job = (await this.jobs.select(tx, SELECT_JOB_FOR_UPDATE, [jobId]))[0];
      if (!job) throw new NotFoundError(`job ${jobId} not found`);
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
      await tx.query("INSERT INTO approvals (job_id, principal, decision, comment, at) VALUES ($1, $2, $3, $4, $5)", [
        jobId,
        input.by,
        input.decision,
        input.comment ?? null,
        at,
      ]);
      if (input.decision === "rejected") {
        const message = rejectionMessage(input);
        return this.jobs.updateJobIn(tx, jobId, { status: "rejected", finishedAt: at, error: { code: "rejected", message } });
      }
      const approvals = (await this.jobs.decisionsOf(tx, [jobId])).get(jobId)?.filter((d) => d.decision === "approved").length ?? 0;
      if (approvals >= job.approvalsRequired) return this.jobs.updateJobIn(tx, jobId, { status: "queued" });
      return this.jobs.mustGetJob(tx, jobId);
    });
  }

  async listDecisions(jobId: string): Promise<ApprovalDecision[]> {
    return (await this.jobs.decisionsOf(this.db, [jobId])).get(jobId) ?? [];
  }

  // Job events ------------------------------------------------------------------------------------

  async appendEvent(jobId: string, event: NewJobEvent): Promise<{ seq: number; time: string }> {
    return (await this.events.append(jobId, [event]))[0];
  }

  async appendEvents(jobId: string, events: readonly NewJobEvent[]): Promise<{ seq: number; time: string }[]> {
    return this.events.append(jobId, events);
  }

  async listEvents(jobId: string, query: ListEventsQuery = {}): Promise<JobEvent[]> {
    return this.events.list(jobId, query);
  }

  // Leases ----------------------------------------------------------------------------------------

  async acquireLease(stack: string, options: AcquireLeaseOptions): Promise<Lease> {
    return this.leases.acquire(stack, options);
  }

  async renewLease(stack: string, owner: string, token: number, ttlMs: number): Promise<Lease> {
    return this.leases.renew(stack, owner, token, ttlMs);
  }

  async releaseLease(stack: string, owner: string, token: number): Promise<void> {
    return this.leases.release(stack, owner, token);
  }

  async getLease(stack: string): Promise<Lease | undefined> {
    return this.leases.get(stack);
  }

  async forceReleaseLease(stack: string): Promise<Lease | undefined> {
    return this.leases.forceRelease(stack);
  }

  // Stack flags -----------------------------------------------------------------------------------

  async getStackState(stack: string): Promise<StackState> {
    const { rows } = await this.db.query("SELECT * FROM stack_state WHERE stack = $1", [stack]);
    return rowToStackState(stack, rows[0]);
  }

  async setStackState(stack: string, patch: StackStatePatch): Promise<StackState> {
    return rowToStackState(stack, await this.writeStackState(this.db, stack, patch));
  }

  // Audit trail -----------------------------------------------------------------------------------

  async appendAudit(entry: NewAuditEntry): Promise<AuditEntry> {
    return this.audit.append(entry);
  }

  async listAudit(query: ListAuditQuery = {}): Promise<AuditEntry[]> {
    return this.audit.list(query);
  }

  async pruneAudit(retentionMs: number): Promise<number> {
    return this.audit.prune(retentionMs);
  }

  // Changes ---------------------------------------------------------------------------------------

  /** LISTEN/NOTIFY on one connection of its own, shared by every listener (postgres/changes.ts). */
  async watch(listener: (change: StoreChange) => void): Promise<() => Promise<void>> {
    return this.feed.watch(listener);
  }

  /**
   * An express-rate-limit store on this database: every replica counts against one budget per key.
   * Its windows follow `now` (default the real clock, which express-rate-limit's headers use too).
   */
  rateLimitStore(prefix: string, windowMs: number, now: () => number = Date.now): PostgresRateLimitStore {
    return new PostgresRateLimitStore(this.db, prefix, windowMs, now);
  }

  // Lifecycle -------------------------------------------------------------------------------------

  async ping(): Promise<void> {
    await this.db.query("SELECT 1");
  }

  async close(): Promise<void> {
    await this.feed.close();
    return this.db.end();
  }

  // Internals -------------------------------------------------------------------------------------

  /**
   * Upserts the flags in `patch` in one statement (atomic on its own, or part of the caller's
   * transaction): columns the patch leaves out keep their value. Returns the row.
   */
  private async writeStackState(q: Queryable, stack: string, patch: StackStatePatch): Promise<Row> {
    for (const key of Object.keys(patch)) {
      if (!STACK_STATE_FIELDS.some((f) => f.key === key)) throw new ConfigError(`setStackState: unknown field "${key}"`);
    }
    const params: SqlParam[] = [stack, iso(this.now())];
    const set: string[] = ["updated_at = EXCLUDED.updated_at"];
    for (const f of STACK_STATE_FIELDS) {
      const value = patch[f.key];
      params.push(value === undefined || value === null ? null : (value as SqlParam));
      if (value !== undefined) set.push(`${f.column} = EXCLUDED.${f.column}`);
    }
    const columns = ["stack", "updated_at", ...STACK_STATE_FIELDS.map((f) => f.column)];
    const { rows } = await q.query(
      `INSERT INTO stack_state (${columns.join(", ")}) VALUES (${columns.map((_, i) => `$${i + 1}`).join(", ")})
       ON CONFLICT (stack) DO UPDATE SET ${set.join(", ")} RETURNING *`,
      params,
    );
    return rows[0];
  }
}
