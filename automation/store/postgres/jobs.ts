/**
 * Jobs and their approval decisions on PostgreSQL: the reads (one statement each, so one snapshot)
 * and the writes, each one statement where it can be, because on a database shared by several
 * replicas a round trip (a system call, a wake-up of the server's backend) costs more than the
 * statement itself:
 *
 * - creating a job inserts it and announces it (changes.ts) in one statement;
 * - changing a job is a read, the patch applied here (`patchedJob`: the rules both stores share), and
 *   one compare-and-set statement that writes the row only if nobody wrote its fields since the read
 *   (its `revision` is unchanged: an event's append, which bumps only `last_event_seq`, does not
 *   count) and announces a change of status. When another writer came first, the change runs again
 *   under the row's lock (`updateJobIn`: `SELECT … FOR UPDATE`, in a transaction), so an `ifStatus`
 *   compare-and-set has one winner across replicas either way.
 * - the read is skipped for a job this store wrote last (`written`: the row each committed
 *   write returned, kept until the job ends): the replica that runs a job is almost always the only
 *   one writing it. Kept rows are only a guess: one that is stale fails its compare-and-set (or its
 *   `ifStatus`), and the change goes on from a fresh read.
 *
 * A job that needs approvals is read with its decisions, in one more query for a whole list.
 */
import { ConflictError, NotFoundError } from "../../errors";
import { dispatchableStacksSql, newJobRecord, patchedJob, toDispatchableStack, type DispatchableRow } from "../rows";
import { TERMINAL_STATUSES, type ApprovalDecision, type DispatchableStack, type Job, type JobPatch, type JobStatus, type LastGoodDeploymentQuery, type ListJobsQuery, type NewJob, type QueuedStack, type UpdateJobOptions } from "../types";
import { changePayload, notifySql } from "./changes";
import type { Db, Queryable, SqlParam } from "./db";
import {
  asArray,
  insertParams,
  JOB_FIELDS,
  JOB_INSERT_SQL,
  JOB_UPDATE_PARAMS,
  JOB_UPDATE_SQL,
  listLimit,
  optionalLimit,
  rowToJob,
  updateParams,
  type Row,
} from "./rows";

const SELECT_JOB = "SELECT * FROM jobs WHERE id = $1";
export const SELECT_JOB_FOR_UPDATE = "SELECT * FROM jobs WHERE id = $1 FOR UPDATE";
/** Inserts the job and announces it. Parameters: JOB_INSERT_SQL's, then the announcement. */
const INSERT_JOB = `WITH inserted AS (${JOB_INSERT_SQL} RETURNING *)
  SELECT inserted.*, ${notifySql(JOB_FIELDS.length + 1)} FROM inserted`;
/** JOB_UPDATE_SQL if the row is still at the revision read. Parameters: JOB_UPDATE_SQL's, then that revision. */
const UPDATE_JOB = `${JOB_UPDATE_SQL} AND revision = $${JOB_UPDATE_PARAMS + 1} RETURNING *`;
/** UPDATE_JOB that also announces the new status (one more parameter: the announcement). */
const UPDATE_JOB_AND_NOTIFY = `WITH updated AS (${UPDATE_JOB})
  SELECT updated.*, ${notifySql(JOB_UPDATE_PARAMS + 2)} FROM updated`;

/** How many jobs' rows `written` keeps at most (the jobs a replica runs or queued lately). */
const MAX_WRITTEN = 500;

export class PostgresJobs {
  /** The row of each job as this store last wrote it, committed: by job id, oldest first. */
  private readonly written = new Map<string, Row>();

  constructor(
    private readonly db: Db,
    private readonly now: () => number,
  ) {}

  async createJob(input: NewJob): Promise<Job> {
    const job = newJobRecord(input, this.now());
    try {
      const { rows } = await this.db.query(INSERT_JOB, [
        ...insertParams(job),
        changePayload({ kind: "job", jobId: job.id, stack: job.stack, status: job.status }),
      ]);
      this.remember(rows[0]);
      return (await this.withDecisions(this.db, [rowToJob(rows[0])]))[0];
    } catch (err) {
      const e = err as { code?: unknown; constraint?: unknown };
      if (e.code === "23505" && e.constraint === "jobs_idempotency_key") {
        const existing = await this.findByIdempotencyKey(job.idempotencyKey ?? "");
        throw new ConflictError(`idempotency key "${job.idempotencyKey}" is already used by job ${existing?.id}`, {
          cause: err,
          details: { jobId: existing?.id },
        });
      }
      throw err;
    }
  }

  async getJob(id: string): Promise<Job | undefined> {
    return this.readJob(this.db, id);
  }

  async jobStack(id: string): Promise<string | undefined> {
    const { rows } = await this.db.query<{ stack: string }>("SELECT stack FROM jobs WHERE id = $1", [id]);
    return rows[0]?.stack;
  }

  async jobStamp(id: string): Promise<string | undefined> {
    const { rows } = await this.db.query<{ status: string; finished_at: string | null; rolled_back_by: string | null; last_event_seq: number }>(
      "SELECT status, finished_at, rolled_back_by, last_event_seq FROM jobs WHERE id = $1",
      [id],
    );
    const row = rows[0];
    return row && `${row.status}|${row.finished_at ?? ""}|${row.rolled_back_by ?? ""}|${row.last_event_seq}`;
  }

  async updateJob(id: string, patch: JobPatch, options: UpdateJobOptions = {}): Promise<Job> {
    const known = this.written.get(id);
    if (known !== undefined) {
      try {
        const updated = await this.writeJob(this.db, known, patch, options);
        if (updated !== undefined) return updated;
      } catch (err) {
        if (!(err instanceof ConflictError)) throw err; // the row as kept fails ifStatus: read what it is now
      }
      this.written.delete(id);
    }
    const { rows } = await this.db.query(SELECT_JOB, [id]);
    if (rows.length === 0) throw new NotFoundError(`job ${id} not found`);
    // Written by someone else since the read: again, under the row's lock.
    return (await this.writeJob(this.db, rows[0], patch, options)) ?? this.db.transaction((tx) => this.updateJobIn(tx, id, patch, options));
  }

  async listJobs(query: ListJobsQuery = {}): Promise<Job[]> {
    const where: string[] = [];
    const params: SqlParam[] = [];
    const param = (value: SqlParam) => (params.push(value), `$${params.length}`);
    if (query.stack !== undefined) where.push(`stack = ANY(${param(asArray(query.stack))}::text[])`);
    if (query.status !== undefined) where.push(`status = ANY(${param(asArray(query.status))}::text[])`);
    if (query.operation !== undefined) where.push(`operation = ANY(${param(asArray(query.operation))}::text[])`);
    if (query.version !== undefined) where.push(`version = ${param(query.version)}`);
    if (query.before !== undefined) where.push(`id < ${param(query.before)}`);
    const limit = param(listLimit(query.limit));
    return this.select(this.db, `SELECT * FROM jobs ${where.length ? "WHERE " + where.join(" AND ") : ""} ORDER BY id DESC LIMIT ${limit}`, params);
  }

  async deployments(stack: string, options: { limit?: number; version?: string } = {}): Promise<Job[]> {
    const version = options.version === undefined ? "" : " AND version = $3";
    return this.select(
      this.db,
      `SELECT * FROM jobs WHERE stack = $1 AND status = 'succeeded' AND operation IN ('up', 'rollback')${version}
       ORDER BY finished_at DESC NULLS LAST, id DESC LIMIT $2`,
      [stack, listLimit(options.limit), ...(options.version === undefined ? [] : [options.version])],
    );
  }

  async lastGoodDeployment(stack: string, query: LastGoodDeploymentQuery = {}): Promise<Job | undefined> {
    const params: SqlParam[] = [stack];
    const param = (value: SqlParam) => (params.push(value), `$${params.length}`);
    const where = ["stack = $1", "status = 'succeeded'", "operation IN ('up', 'rollback')"];
    if (!query.includeRolledBack) where.push("rolled_back_by IS NULL");
    if (query.excludeJobId !== undefined) where.push(`id <> ${param(query.excludeJobId)}`);
    if (query.beforeJobId !== undefined) {
      const ref = await this.getJob(query.beforeJobId);
      if (!ref) throw new NotFoundError(`job ${query.beforeJobId} not found`);
      const refId = param(ref.id);
      where.push(`id <> ${refId}`);
      // Deployments take effect when they finish; one that has not finished comes after all that have.
      if (ref.finishedAt !== undefined) {
        const at = param(ref.finishedAt);
        where.push(`(finished_at < ${at} OR (finished_at = ${at} AND id < ${refId}))`);
      }
    }
    const sql = `SELECT * FROM jobs WHERE ${where.join(" AND ")} ORDER BY finished_at DESC NULLS LAST, id DESC LIMIT 1`;
    return (await this.select(this.db, sql, params))[0];
  }

  async findByIdempotencyKey(key: string): Promise<Job | undefined> {
    return (await this.select(this.db, "SELECT * FROM jobs WHERE idempotency_key = $1", [key]))[0];
  }

  async queuedJobs(options: { stack?: string; limit?: number } = {}): Promise<Job[]> {
    const limit = optionalLimit(options.limit);
    return options.stack === undefined
      ? this.select(this.db, "SELECT * FROM jobs WHERE status = 'queued' ORDER BY id ASC LIMIT $1", [limit])
      : this.select(this.db, "SELECT * FROM jobs WHERE status = 'queued' AND stack = $1 ORDER BY id ASC LIMIT $2", [options.stack, limit]);
  }

  async countQueued(options: { stack?: string; requestedBy?: string } = {}): Promise<number> {
    const params: SqlParam[] = [];
    const where = ["status = 'queued'"];
    if (options.stack !== undefined) (params.push(options.stack), where.push(`stack = $${params.length}`));
    if (options.requestedBy !== undefined) (params.push(options.requestedBy), where.push(`requested_by = $${params.length}`));
    const { rows } = await this.db.query<{ n: number }>(`SELECT COUNT(*)::int AS n FROM jobs WHERE ${where.join(" AND ")}`, params);
    return rows[0].n;
  }


  async queuedStacks(): Promise<QueuedStack[]> {
    const { rows } = await this.db.query<{ stack: string; queued: number; oldest: string }>(
      "SELECT stack, COUNT(*)::int AS queued, MIN(id) AS oldest FROM jobs WHERE status = 'queued' GROUP BY stack ORDER BY oldest ASC",
    );
    return rows.map((r) => ({ stack: r.stack, queued: r.queued, oldestJobId: r.oldest }));
  }

  async dispatchableStacks(options: { stack?: string } = {}): Promise<DispatchableStack[]> {
    const sql = dispatchableStacksSql((i) => `$${i}`, options.stack !== undefined);
    const { rows } = await this.db.query<DispatchableRow>(sql, options.stack === undefined ? [this.now()] : [this.now(), options.stack]);
    return rows.map(toDispatchableStack);
  }

  async queuePosition(jobId: string): Promise<number | undefined> {
    // One statement, one snapshot.
    const { rows } = await this.db.query<{ status: string; ahead: number }>(
      `SELECT j.status, (SELECT COUNT(*)::int FROM jobs q WHERE q.status = 'queued' AND q.stack = j.stack AND q.id < j.id) AS ahead
       FROM jobs j WHERE j.id = $1`,
      [jobId],
    );
    return rows[0]?.status === "queued" ? rows[0].ahead + 1 : undefined;
  }

  /** updateJob inside the caller's transaction, holding the row's lock (so the write cannot miss). */
  async updateJobIn(tx: Queryable, id: string, patch: JobPatch, options: UpdateJobOptions = {}): Promise<Job> {
    const { rows } = await tx.query(SELECT_JOB_FOR_UPDATE, [id]);
    if (rows.length === 0) throw new NotFoundError(`job ${id} not found`);
    const written = await this.writeJob(tx, rows[0], patch, options);
    if (written === undefined) throw new Error(`job ${id} changed under its row lock`); // cannot happen: the lock is ours
    return written;
  }

  /**
   * Applies `patch` to the row as read (ConflictError when `ifStatus` does not
   * hold, ConfigError for a bad patch) and writes every mutable column, announcing a change of status,
   * in one statement that finds the row only if it is still the version read. Undefined when it was
   * not (nothing written).
   */
  private async writeJob(q: Queryable, row: Row, patch: JobPatch, options: UpdateJobOptions): Promise<Job | undefined> {
    const current = rowToJob(row);
    const next = patchedJob(current, patch, options);
    const params: SqlParam[] = [...updateParams(next), row.revision as number];
    const statusChanged = next.status !== current.status;
    if (statusChanged) params.push(changePayload({ kind: "job", jobId: current.id, stack: current.stack, status: next.status }));
    const { rows } = await q.query(statusChanged ? UPDATE_JOB_AND_NOTIFY : UPDATE_JOB, params);
    if (rows.length === 0) return undefined;
    // Committed when it answers only outside a transaction (one that rolls back must leave no guess behind).
    if (q === this.db) this.remember(rows[0]);
    return (await this.withDecisions(q, [rowToJob(rows[0])]))[0];
  }

  /** Keeps a committed row for the next update of its job, until the job ends. */
  private remember(row: Row): void {
    const id = row.id as string;
    this.written.delete(id); // re-inserted last: the Map's order is the eviction order
    if (TERMINAL_STATUSES.has(row.status as JobStatus)) return;
    this.written.set(id, row);
    if (this.written.size > MAX_WRITTEN) this.written.delete(this.written.keys().next().value as string);
  }

  /** Jobs from a query, each one that needs approvals with its decisions (read in one more query). */
  async select(q: Queryable, sql: string, params: readonly SqlParam[]): Promise<Job[]> {
    return this.withDecisions(q, (await q.query(sql, params)).rows.map((row: Row) => rowToJob(row)));
  }

  /** The jobs, each one that needs approvals with its decisions (read in one query). */
  private async withDecisions(q: Queryable, jobs: Job[]): Promise<Job[]> {
    const needing = jobs.filter((j) => j.approvalsRequired > 0).map((j) => j.id);
    if (needing.length === 0) return jobs;
    const decisions = await this.decisionsOf(q, needing);
    return jobs.map((j) => (j.approvalsRequired > 0 ? { ...j, decisions: decisions.get(j.id) ?? [] } : j));
  }

  async decisionsOf(q: Queryable, jobIds: readonly string[]): Promise<Map<string, ApprovalDecision[]>> {
    const { rows } = await q.query<{ job_id: string; principal: string; decision: ApprovalDecision["decision"]; comment: string | null; at: string }>(
      "SELECT job_id, principal, decision, comment, at FROM approvals WHERE job_id = ANY($1::text[]) ORDER BY id ASC",
      [jobIds],
    );
    const out = new Map<string, ApprovalDecision[]>();
    for (const r of rows) {
      const list = out.get(r.job_id) ?? [];
      list.push({ by: r.principal, decision: r.decision, ...(r.comment === null ? {} : { comment: r.comment }), at: r.at });
      out.set(r.job_id, list);
    }
    return out;
  }

  async readJob(q: Queryable, id: string): Promise<Job | undefined> {
    return (await this.select(q, SELECT_JOB, [id]))[0];
  }

  async mustGetJob(q: Queryable, id: string): Promise<Job> {
    const job = await this.readJob(q, id);
    if (!job) throw new NotFoundError(`job ${id} not found`);
    return job;
  }
}
