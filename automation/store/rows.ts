/**
 * What both stores write the same way: the job's fields and their columns, which fields a patch may
 * change, the validation of a job, output masking, the lease row and its descriptions, the stack
 * flags' columns, list limits. SQLite (sqlite.ts) and PostgreSQL (postgres/) keep only what differs
 * (SQL dialect, JSON and BIGINT decoding); the contract suite checks that they agree.
 */
import { ConfigError, ConflictError, NotFoundError } from "../errors";
import { newJobId } from "./id";
import { SECRET_MASK, type Outputs } from "../engine/port";
import { APPROVAL_DECISIONS, ELIDED_EVENT_TYPE, ENGINE_KINDS, JOB_OPERATIONS, MUTATING_OPERATIONS, JOB_SOURCES, JOB_STATUSES, type DispatchableStack, type Job, type JobOperation, type JobPatch, type JobStatus, type Lease, type LeaseConflictDetails, type NewApprovalDecision, type NewJob, type NewJobEvent, type StackState, type UpdateJobOptions } from "./types";

export const DEFAULT_LIST_LIMIT = 50;
export const MAX_LIST_LIMIT = 500;

/** How each job field is stored: its column and whether it is JSON. */
export const JOB_FIELDS: readonly { key: keyof Job; column: string; json?: true }[] = [
  { key: "id", column: "id" },
  { key: "stack", column: "stack" },
  { key: "operation", column: "operation" },
  { key: "status", column: "status" },
  { key: "version", column: "version" },
  { key: "imageDigest", column: "image_digest" },
  { key: "requestedBy", column: "requested_by" },
  { key: "source", column: "source" },
  { key: "message", column: "message" },
  { key: "reason", column: "reason" },
  { key: "target", column: "target", json: true },
  { key: "createdAt", column: "created_at" },
  { key: "startedAt", column: "started_at" },
  { key: "finishedAt", column: "finished_at" },
  { key: "changes", column: "changes", json: true },
  { key: "steps", column: "steps", json: true },
  { key: "drift", column: "drift", json: true },
  { key: "outputs", column: "outputs", json: true },
  { key: "config", column: "config", json: true },
  { key: "rollbackOf", column: "rollback_of" },
  { key: "rollbackTo", column: "rollback_to" },
  { key: "rolledBackBy", column: "rolled_back_by" },
  { key: "autoRollbackOf", column: "auto_rollback_of" },
  { key: "error", column: "error", json: true },
  { key: "engine", column: "engine" },
  { key: "approvalsRequired", column: "approvals_required" },
  { key: "approvalRequest", column: "approval_request", json: true },
  { key: "idempotencyKey", column: "idempotency_key" },
  { key: "requestHash", column: "request_hash" },
  { key: "lastEventSeq", column: "last_event_seq" },
  { key: "params", column: "params", json: true },
];

/** Set at creation, never patched. */
const FIXED_JOB_KEYS: ReadonlySet<string> = new Set([
  "id",
  "stack",
  "operation",
  "requestedBy",
  "source",
  "createdAt",
  "idempotencyKey",
  "requestHash",
  "lastEventSeq",
  "params",
]);
export const REQUIRED_JOB_KEYS: ReadonlySet<string> = new Set(["status", "engine", "approvalsRequired"]);
export const MUTABLE_JOB_KEYS: ReadonlySet<string> = new Set(
  JOB_FIELDS.map((f) => f.key as string).filter((k) => !FIXED_JOB_KEYS.has(k)),
);
export const NEW_JOB_KEYS: ReadonlySet<string> = new Set(
  JOB_FIELDS.map((f) => f.key as string).filter((k) => !["id", "createdAt", "lastEventSeq"].includes(k)),
);

/** Secret outputs keep their name and flag; their value is replaced, whatever the caller passed. */
export function maskOutputs(outputs: Outputs): Outputs {
  const masked: Record<string, { value: unknown; secret: boolean }> = {};
  for (const [name, output] of Object.entries(outputs)) {
    const secret = output?.secret === true;
    masked[name] = { value: secret ? SECRET_MASK : output?.value, secret };
  }
  return masked;
}

export function checkJob(job: Job): void {
  const oneOf = (field: string, value: unknown, allowed: readonly string[]) => {
    if (typeof value !== "string" || !allowed.includes(value)) {
      throw new ConfigError(`job ${field} must be one of ${allowed.join(", ")}, got ${JSON.stringify(value)}`);
    }
  };
  for (const field of ["stack", "requestedBy"] as const) {
    if (typeof job[field] !== "string" || job[field] === "") throw new ConfigError(`job ${field} is required`);
  }
  oneOf("operation", job.operation, JOB_OPERATIONS);
  oneOf("status", job.status, JOB_STATUSES);
  oneOf("source", job.source, JOB_SOURCES);
  oneOf("engine", job.engine, ENGINE_KINDS);
  // PostgreSQL's text cannot hold NUL (SQLite's can): refused by both, so the stores agree.
  for (const f of JOB_FIELDS) {
    const value = job[f.key];
    if (!f.json && typeof value === "string" && value.includes("\u0000")) throw new ConfigError(`job ${f.key} must not contain a NUL character`);
  }
  if (!Number.isInteger(job.approvalsRequired) || job.approvalsRequired < 0) {
    throw new ConfigError(`job approvalsRequired must be a non-negative integer, got ${String(job.approvalsRequired)}`);
  }
}

export function iso(ms: number): string {
  return new Date(ms).toISOString();
}

export function asArray<T>(value: T | readonly T[]): readonly T[] {
  return Array.isArray(value) ? (value as readonly T[]) : [value as T];
}

export function listLimit(limit: number | undefined): number {
  if (limit === undefined) return DEFAULT_LIST_LIMIT;
  if (!Number.isInteger(limit) || limit < 1) throw new ConfigError(`limit must be a positive integer, got ${String(limit)}`);
  return Math.min(limit, MAX_LIST_LIMIT);
}

export function withoutUndefined<T extends object>(obj: T): T {
  return Object.fromEntries(Object.entries(obj).filter(([, v]) => v !== undefined)) as T;
}

export interface LeaseRow {
  stack: string;
  owner: string;
  token: number;
  acquired_at: number;
  expires_at: number;
  job_id: string | null;
  released_at: number | null;
}

export function isLive(row: LeaseRow, nowMs: number): boolean {
  return row.released_at === null && row.expires_at > nowMs;
}

export function rowToLease(row: LeaseRow): Lease {
  return {
    stack: row.stack,
    owner: row.owner,
    token: row.token,
    acquiredAt: iso(row.acquired_at),
    expiresAt: iso(row.expires_at),
    ...(row.job_id === null ? {} : { jobId: row.job_id }),
  };
}

export function describeHolder(row: LeaseRow): string {
  return `${row.owner} since ${iso(row.acquired_at)} for ${row.job_id === null ? "no job" : "job " + row.job_id} (expires ${iso(row.expires_at)})`;
}

export function conflictDetails(row: LeaseRow): LeaseConflictDetails {
  return {
    stack: row.stack,
    holder: row.owner,
    ...(row.job_id === null ? {} : { jobId: row.job_id }),
    acquiredAt: iso(row.acquired_at),
    expiresAt: iso(row.expires_at),
  };
}

export function checkOwner(owner: string): void {
  if (typeof owner !== "string" || owner === "") throw new ConfigError("lease owner is required");
}

export function checkTtl(ttlMs: number): void {
  if (!Number.isInteger(ttlMs) || ttlMs < 1) throw new ConfigError(`lease ttlMs must be a positive integer, got ${String(ttlMs)}`);
}

export const STACK_STATE_FIELDS: readonly { key: Exclude<keyof StackState, "stack">; column: string }[] = [
  { key: "blockedReason", column: "blocked_reason" },
  { key: "blockedJobId", column: "blocked_job_id" },
  { key: "blockedAt", column: "blocked_at" },
  { key: "drifted", column: "drifted" },
  { key: "lastDriftAt", column: "last_drift_at" },
  { key: "lastDriftJobId", column: "last_drift_job_id" },
];

export function leaseConflict(row: LeaseRow): ConflictError {
  return new ConflictError(`stack "${row.stack}" is locked by ${describeHolder(row)}`, { details: conflictDetails(row) });
}

/** The job `createJob` records for `input` at `nowMs`, checked (ConfigError for an unknown field or value). */
export function newJobRecord(input: NewJob, nowMs: number): Job {
  for (const key of Object.keys(input)) {
    if (!NEW_JOB_KEYS.has(key)) throw new ConfigError(`createJob: unknown or read-only field "${key}"`);
  }
  const job = withoutUndefined({
    ...input,
    id: newJobId(nowMs),
    createdAt: iso(nowMs),
    status: input.status ?? "queued",
    approvalsRequired: input.approvalsRequired ?? 0,
    lastEventSeq: 0,
  }) as Job;
  checkJob(job);
  return job;
}

/**
 * `current` with `patch` applied, checked: ConflictError when `ifStatus` does not hold, ConfigError
 * for a read-only or unknown field, a required field cleared, or a bad value.
 */
export function patchedJob(current: Job, patch: JobPatch, options: UpdateJobOptions): Job {
  if (options.ifStatus !== undefined) {
    const allowed: readonly JobStatus[] = asArray(options.ifStatus);
    if (!allowed.includes(current.status)) {
      throw new ConflictError(`job ${current.id} is ${current.status}, not ${allowed.join(" or ")}`, { details: { jobId: current.id, status: current.status } });
    }
  }
  const next: Record<string, unknown> = { ...current };
  for (const [key, value] of Object.entries(patch)) {
    if (!MUTABLE_JOB_KEYS.has(key)) throw new ConfigError(`updateJob: unknown or read-only field "${key}"`);
    if (value === undefined) continue;
    if (value === null) {
      if (REQUIRED_JOB_KEYS.has(key)) throw new ConfigError(`updateJob: "${key}" cannot be cleared`);
      delete next[key];
    } else {
      next[key] = value;
    }
  }
  checkJob(next as unknown as Job);
  return next as unknown as Job;
}

/** The longest comment an approval or rejection may carry. */
export const MAX_DECISION_COMMENT = 1000;

/** Refuses a decision without a principal, of an unknown kind, or with a comment too long (ConfigError). */
export function checkDecision(input: NewApprovalDecision): void {
  if (typeof input.by !== "string" || input.by === "") throw new ConfigError("recordDecision: by is required");
  if (!APPROVAL_DECISIONS.includes(input.decision)) throw new ConfigError(`recordDecision: decision must be one of ${APPROVAL_DECISIONS.join(", ")}`);
  if (input.comment !== undefined && (typeof input.comment !== "string" || input.comment.length > MAX_DECISION_COMMENT)) {
    throw new ConfigError(`recordDecision: comment must be a string of at most ${MAX_DECISION_COMMENT} characters`);
  }
}

/** The error message of a job a rejection ended. */
export function rejectionMessage(input: NewApprovalDecision): string {
  return `rejected by ${input.by}${input.comment !== undefined ? `: ${input.comment}` : ""}`;
}

/** Why an interrupted mutation blocks its stack (what `StackState.blockedReason` says). */
export function interruptedBlockReason(job: { readonly operation: string; readonly id: string }, reason: string): string {
  return `${job.operation} job ${job.id} was interrupted (${reason}); recover the stack before changing it again`;
}

/**
 * Whether a kept outcome's file may go after trying to write it: written, or its job ended otherwise
 * meanwhile (ConflictError) or is gone (NotFoundError). Any other failure keeps it for the next try.
 */
export function keptOutcomeSettled(err?: unknown): boolean {
  return err === undefined || err instanceof ConflictError || err instanceof NotFoundError;
}

/**
 * The statement behind `dispatchableStacks`, the same in both dialects; `ph(i)` writes the i-th
 * placeholder. Parameters: the time now (ms since epoch), then the stack when `oneStack`. One row per
 * stack: its oldest queued job and its oldest queued job that is no mutation (id and operation), its
 * live lease, its block, and whether it has a job awaiting approval or running (each 0 or 1). Job
 * ids only, not their rows: a pass launches few of them.
 */
export function dispatchableStacksSql(ph: (i: number) => string, oneStack: boolean): string {
  const mutating = [...MUTATING_OPERATIONS].map((o) => `'${o}'`).join(", ");
  return `WITH q AS (
      SELECT stack, MIN(id) AS next_id, MIN(CASE WHEN operation NOT IN (${mutating}) THEN id END) AS free_id
      FROM jobs WHERE status = 'queued'${oneStack ? ` AND stack = ${ph(2)}` : ""} GROUP BY stack
    )
    SELECT q.stack, q.next_id, n.operation AS next_operation, q.free_id, f.operation AS free_operation,
      CASE WHEN l.released_at IS NULL AND l.expires_at > ${ph(1)} THEN l.owner END AS lease_owner,
      l.expires_at AS lease_expires_at,
      CASE WHEN s.blocked_reason IS NULL THEN 0 ELSE 1 END AS blocked,
      CASE WHEN EXISTS (SELECT 1 FROM jobs a WHERE a.status = 'awaiting_approval' AND a.stack = q.stack) THEN 1 ELSE 0 END AS awaiting,
      CASE WHEN EXISTS (SELECT 1 FROM jobs r WHERE r.status = 'running' AND r.stack = q.stack) THEN 1 ELSE 0 END AS running
    FROM q JOIN jobs n ON n.id = q.next_id
    LEFT JOIN jobs f ON f.id = q.free_id
    LEFT JOIN leases l ON l.stack = q.stack
    LEFT JOIN stack_state s ON s.stack = q.stack
    ORDER BY q.next_id`;
}

/** A row of `dispatchableStacksSql`. */
export interface DispatchableRow {
  stack: string;
  next_id: string;
  next_operation: string;
  free_id: string | null;
  free_operation: string | null;
  lease_owner: string | null;
  lease_expires_at: number | string | null;
  blocked: number | string;
  awaiting: number | string;
  running: number | string;
}

export function toDispatchableStack(row: DispatchableRow): DispatchableStack {
  const { stack } = row;
  return withoutUndefined({
    stack,
    lease: row.lease_owner === null ? undefined : { owner: row.lease_owner, expiresAt: iso(Number(row.lease_expires_at)) },
    blocked: Number(row.blocked) === 1,
    next: { id: row.next_id, stack, operation: row.next_operation as JobOperation },
    nextNonMutating: row.free_id === null ? undefined : { id: row.free_id, stack, operation: row.free_operation as JobOperation },
    awaitingApproval: Number(row.awaiting) === 1,
    running: Number(row.running) === 1,
  });
}

/** An event as both stores write it: its type checked (`elided` is the stores' own), its data as JSON. */
export function checkedEvent(event: NewJobEvent): { type: string; data: string } {
  if (typeof event.type !== "string" || event.type === "") throw new ConfigError("appendEvent: event type is required");
  if (event.type === ELIDED_EVENT_TYPE) throw new ConfigError(`appendEvent: event type "${ELIDED_EVENT_TYPE}" is reserved`);
  return { type: event.type, data: JSON.stringify(event.data ?? null) };
}

/**
 * After appending up to `lastSeq`, the seq through which a job's events are to be dropped (one
 * `elided` marker then stands at that seq), or undefined while they fit the cap. Events
 * 1..`alreadyElided` are gone already (one marker stands for them); the rest are all kept, so the
 * count needs no scan. Once a marker is needed, it takes one of the cap's slots.
 */
export function elidedThrough(lastSeq: number, alreadyElided: number, maxEventsPerJob: number): number | undefined {
  const kept = lastSeq - alreadyElided;
  if (kept <= maxEventsPerJob - (alreadyElided > 0 ? 1 : 0)) return undefined;
  return alreadyElided + kept - (maxEventsPerJob - 1);
}
