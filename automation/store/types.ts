/**
 * The store's public types and the `Store` interface: every operation's durable record (jobs and their
 * event log), the per-stack lease the CLI and the service share, and a few per-stack flags.
 *
 * Two implementations: `SqliteStore` (one file under the data directory that the CLI and the service
 * open side by side; better-sqlite3 is synchronous, so it implements `SyncStore` and `asyncStore`
 * adapts it) and `PostgresStore` (one database shared by several service replicas). The interface is
 * asynchronous because a network store is. Everything is plain JSON-able data: times are ISO 8601
 * strings (UTC), ids are strings that sort in creation order.
 */
import type { ChangeSummary, DriftedResource, EngineKind, Outputs, ResourceStep } from "../engine/port";
import type { AuditEntry, ListAuditQuery, NewAuditEntry } from "./audit";

export { AUDIT_RESULTS, DEFAULT_AUDIT_LIMIT, MAX_AUDIT_LIMIT, MIN_AUDIT_RETENTION_MS, type AuditEntry, type AuditResult, type ListAuditQuery, type NewAuditEntry } from "./audit";

export const JOB_OPERATIONS = ["preview", "up", "refresh", "drift", "rollback", "destroy"] as const;
export type JobOperation = (typeof JOB_OPERATIONS)[number];

/** Operations that change the stack's state (an interrupted one leaves the stack blocked). */
export const MUTATING_OPERATIONS: ReadonlySet<JobOperation> = new Set(["up", "refresh", "rollback", "destroy"]);

export const JOB_STATUSES = [
  "queued",
  "awaiting_approval",
  "running",
  "succeeded",
  "failed",
  "canceled",
  "timed_out",
  "interrupted",
  "rejected",
] as const;
export type JobStatus = (typeof JOB_STATUSES)[number];

/** Statuses a job never leaves. */
export const TERMINAL_STATUSES: ReadonlySet<JobStatus> = new Set([
  "succeeded",
  "failed",
  "canceled",
  "timed_out",
  "interrupted",
  "rejected",
]);

export const JOB_SOURCES = ["cli", "api", "schedule"] as const;
export type JobSource = (typeof JOB_SOURCES)[number];

export const ENGINE_KINDS: readonly EngineKind[] = ["pulumi", "offline"];

/**
 * What a caller asked of an operation, kept on the job so that a queued job can be run by whichever
 * process (or restarted process) picks it up. Validated by the caller (api/ schemas, the CLI) before
 * it is stored.
 */
export interface JobRequestParams {
  readonly version?: string;
  readonly target?: readonly string[];
  readonly allowDestroy?: readonly string[];
  readonly message?: string;
  /** rollback: a deployment's job id or version. */
  readonly to?: string;
  /** rollback / destroy: why. */
  readonly reason?: string;
}

/**
 * Why a job ended badly. `code` is an `ErrorCode` of automation/errors.ts, `"interrupted"`, or for a
 * job that needed approvals `"rejected"` (an approver said no) or `"approval_expired"`.
 */
export interface JobError {
  readonly code: string;
  readonly message: string;
}

/** One resource step of the operation, as the engine reported it. */
export type JobStep = ResourceStep;

export const APPROVAL_DECISIONS = ["approved", "rejected"] as const;
export type ApprovalDecisionKind = (typeof APPROVAL_DECISIONS)[number];

/** One approver's decision on a job awaiting approval; at most one per principal and job. */
export interface ApprovalDecision {
  /** The principal (token name) who decided. */
  readonly by: string;
  readonly decision: ApprovalDecisionKind;
  /** At most 1000 characters. */
  readonly comment?: string;
  readonly at: string;
}

export interface NewApprovalDecision {
  readonly by: string;
  readonly decision: ApprovalDecisionKind;
  readonly comment?: string;
}

/**
 * What the approvers of a job are asked to approve, recorded when it starts waiting: the change
 * summary and the changing steps (create, update, delete, replace) of its plan phase's preview, and
 * when the wait ends. The job's apply phase runs only if a fresh preview still matches it.
 */
/**
 * What an approval binds besides the steps: hashes of the environment (every setting except the
 * approval rules themselves) and of the program config the plan ran with, and the image digest it
 * pinned, if any. Any difference at apply is `plan_changed`.
 */
export interface PlanBinding {
  /** sha256 of the environment as loaded (engine, backend, secrets provider, settings, deploy rules but approvals). */
  readonly environment: string;
  /** sha256 of the stack config the plan ran with (settings, version, pinned digest); absent for a destroy. */
  readonly config?: string;
  /** The image digest the plan pinned (a rollback, a version built before). */
  readonly imageDigest?: string;
}

export interface ApprovalRequest {
  readonly changes: ChangeSummary;
  /** The changing steps, each with the properties it changes: what the approvers approve. */
  readonly steps: readonly ResourceStep[];
  /** Absent on requests recorded before plans were bound (those fail closed at apply: plan_changed). */
  readonly binding?: PlanBinding;
  readonly requestedAt: string;
  readonly expiresAt: string;
  /** `deploy.approvals.expiresHours` when the wait began (the expiry message names it). */
  readonly expiresHours: number;
  /** Set when the environment lets an image with no scan result deploy (`deploy.allowUnscannedImages`), with its reason. */
  readonly unscannedImagesAllowed?: { readonly reason: string };
}

/** One operation (from the CLI, the API or the drift schedule) and its result. */
export interface Job {
  /** `job_` + 26 characters; sorts in creation order. */
  readonly id: string;
  readonly stack: string;
  readonly operation: JobOperation;
  readonly status: JobStatus;
  /** The deploy version (image tag) the job runs or ran. */
  readonly version?: string;
  /** The image digest the version resolved to, once known. */
  readonly imageDigest?: string;
  /** The principal (token name or OS user) who asked. */
  readonly requestedBy: string;
  readonly source: JobSource;
  /** The requester's note (a deployment message). */
  readonly message?: string;
  /** Why: a rollback's or destroy's reason, an automatic rollback's trigger. */
  readonly reason?: string;
  /** URNs the operation is limited to. */
  readonly target?: readonly string[];
  readonly createdAt: string;
  readonly startedAt?: string;
  readonly finishedAt?: string;
  readonly changes?: ChangeSummary;
  readonly steps?: readonly JobStep[];
  /** A drift check's per-resource report. */
  readonly drift?: readonly DriftedResource[];
  /** Stack outputs after an up or rollback. Secret entries always hold `"[secret]"`, whatever was passed in. */
  readonly outputs?: Outputs;
  /** Snapshot of the stack's non-secret config the job ran with (what a rollback restores). */
  readonly config?: Readonly<Record<string, string>>;
  /** On a rollback: the job (deployment) this rollback replaced. */
  readonly rollbackOf?: string;
  /** On a rollback: the deployment job whose version and config it restores. */
  readonly rollbackTo?: string;
  /** On a deployment: the rollback job that replaced it (it no longer counts as a good deployment). */
  readonly rolledBackBy?: string;
  /** On a rollback started automatically (failed verification): the job whose failure triggered it. */
  readonly autoRollbackOf?: string;
  readonly error?: JobError;
  readonly engine: EngineKind;
  /** Approvals from principals other than the requester needed before the job may run (default 0). */
  readonly approvalsRequired: number;
  /** Set when the job starts waiting for approval: what the approvers are asked to approve. */
  readonly approvalRequest?: ApprovalRequest;
  /**
   * The approvers' decisions, oldest first: filled in by the store when it reads a job that needs
   * approvals (never written through `updateJob`; `recordDecision` adds one).
   */
  readonly decisions?: readonly ApprovalDecision[];
  /** The client's `Idempotency-Key`; unique across jobs. */
  readonly idempotencyKey?: string;
  /** Hash of the request body that created the job, to tell a replay from a different request with the same key. */
  readonly requestHash?: string;
  /** The seq of the job's last event (0 before any); readers compare it with `Last-Event-ID`. */
  readonly lastEventSeq: number;
  /** The request the job runs with (set when it is queued; jobs the CLI runs at once have none). */
  readonly params?: JobRequestParams;
}

/** Fields fixed when the job is created. */
type FixedJobField =
  | "id"
  | "stack"
  | "operation"
  | "requestedBy"
  | "source"
  | "createdAt"
  | "idempotencyKey"
  | "requestHash"
  | "lastEventSeq"
  | "params"
  | "decisions";

type MutableJobFields = Omit<Job, FixedJobField>;

/**
 * A change to a job: absent (or `undefined`) leaves a field as it is; `null` clears an optional field.
 * `lastEventSeq` moves only through `appendEvent`.
 */
export type JobPatch = {
  readonly [K in keyof MutableJobFields]?: undefined extends MutableJobFields[K]
    ? Exclude<MutableJobFields[K], undefined> | null
    : MutableJobFields[K];
};

/** What `createJob` needs: who asks for what on which stack; everything else is optional. */
export type NewJob = Pick<Job, "stack" | "operation" | "requestedBy" | "source" | "engine"> & {
  readonly [K in keyof MutableJobFields]?: MutableJobFields[K];
} & {
  readonly idempotencyKey?: string;
  readonly requestHash?: string;
  readonly params?: JobRequestParams;
};

export interface UpdateJobOptions {
  /**
   * Compare-and-set: apply the patch only if the job's current status is one of these, otherwise
   * throw `ConflictError` (details `{jobId, status}`). Lets a cancel and a worker claiming a queued job
   * race safely, across processes.
   */
  readonly ifStatus?: JobStatus | readonly JobStatus[];
}

export interface ListJobsQuery {
  /** One stack, or any of several (an empty list matches nothing). */
  readonly stack?: string | readonly string[];
  readonly status?: JobStatus | readonly JobStatus[];
  readonly operation?: JobOperation | readonly JobOperation[];
  /** Only jobs of this version. */
  readonly version?: string;
  /** Default 50; values above 500 are treated as 500. */
  readonly limit?: number;
  /** Cursor: only jobs older than this job id (pass the last id of the previous page). */
  readonly before?: string;
}

export interface LastGoodDeploymentQuery {
  /** Ignore this job (e.g. the deployment whose failure is being rolled back). */
  readonly excludeJobId?: string;
  /** Only deployments that took effect before this job did (or all, if it has not finished). */
  readonly beforeJobId?: string;
  /** Count deployments that were later rolled back (`rolledBackBy` set) as good too. Default false. */
  readonly includeRolledBack?: boolean;
}

/** One stack's share of the queue. */
export interface QueuedStack {
  readonly stack: string;
  /** How many of its jobs are queued. */
  readonly queued: number;
  /** Its oldest queued job. */
  readonly oldestJobId: string;
}

/**
 * A stack with queued jobs, with all the queue's dispatch decides on, read for every stack at once
 * (`dispatchableStacks`): who holds its lease, whether it is blocked, and the jobs it could run next.
 */
export interface DispatchableStack {
  readonly stack: string;
  /** Its live lease, when someone (this process, another, a CLI run) holds it. */
  readonly lease?: { readonly owner: string; readonly expiresAt: string };
  /** Blocked after an interrupted mutation (`StackState.blockedReason`): only previews and drift checks run. */
  readonly blocked: boolean;
  /** Its oldest queued job. */
  readonly next: QueuedJobRef;
  /** Its oldest queued job that is no mutation (what a blocked stack, or one awaiting approval, may run). */
  readonly nextNonMutating?: QueuedJobRef;
  /** Whether one of its jobs awaits approval (its mutations wait behind it). */
  readonly awaitingApproval: boolean;
  /** Whether one of its jobs is `running` (by whoever holds the lease, or by nobody after a crash). */
  readonly running: boolean;
}

/** A queued job as the dispatch ranks it (`getJob` reads the rest). */
export interface QueuedJobRef {
  readonly id: string;
  readonly stack: string;
  readonly operation: JobOperation;
}

export interface MarkInterruptedOptions {
  /**
   * The caller's own lease owner id. A running job whose stack lease is still live and held by
   * someone else (another process, e.g. a CLI run while the service restarts) is left running; a
   * live lease held by this owner belonged to the caller's previous, crashed, incarnation.
   */
  readonly owner?: string;
}

/** One line of a job's live log. */
export interface JobEvent {
  /** 1, 2, 3… per job; never reused, even when old events are dropped. */
  readonly seq: number;
  readonly time: string;
  readonly type: string;
  readonly data: unknown;
}

export interface NewJobEvent {
  readonly type: string;
  readonly data?: unknown;
}

/**
 * The type of the marker that replaces events dropped by the per-job cap. There is at most one per
 * job; it sits at the seq of the newest dropped event, and `data.count` says how many were dropped in
 * all, so a reader replaying from any seq before it learns that lines are missing.
 */
export const ELIDED_EVENT_TYPE = "elided";

export interface ListEventsQuery {
  /** Only events with a greater seq (the SSE `Last-Event-ID`). */
  readonly afterSeq?: number;
  readonly limit?: number;
}

/** The per-stack lock: held by one owner until it expires or is released. */
export interface Lease {
  readonly stack: string;
  /** Who holds it: `cli:<user>@<host>:<pid>` or `service:<instance>`. */
  readonly owner: string;
  /**
   * Fencing token: strictly increases every time anyone acquires the stack's lease (never reused,
   * even after release). A re-entrant acquire by the holder keeps the token.
   */
  readonly token: number;
  readonly acquiredAt: string;
  readonly expiresAt: string;
  /** The job the holder runs under it. */
  readonly jobId?: string;
}

export interface AcquireLeaseOptions {
  readonly owner: string;
  readonly ttlMs: number;
  readonly jobId?: string;
}

/** Details of the `ConflictError` thrown when someone else holds a lease. */
export interface LeaseConflictDetails {
  readonly stack: string;
  readonly holder: string;
  readonly jobId?: string;
  readonly acquiredAt: string;
  readonly expiresAt: string;
}

/** Per-stack flags. Absent fields mean "not set". */
export interface StackState {
  readonly stack: string;
  /** Set when a mutating job on the stack was interrupted: mutations are refused until an admin recovers it. */
  readonly blockedReason?: string;
  /** The interrupted job that blocked the stack. */
  readonly blockedJobId?: string;
  readonly blockedAt?: string;
  /** Result of the latest drift check. */
  readonly drifted?: boolean;
  readonly lastDriftAt?: string;
  /** The latest drift check job. */
  readonly lastDriftJobId?: string;
}

/** A change to a stack's flags: absent leaves a field, `null` clears it. */
export type StackStatePatch = {
  readonly [K in Exclude<keyof StackState, "stack">]?: Exclude<StackState[K], undefined> | null;
};

/**
 * A change committed through any connection to a shared store, as a shared store announces it
 * (PostgreSQL: LISTEN/NOTIFY). A hint only: the tables stay the truth, and a listener reads what it
 * needs. A notification can be lost (a connection that dropped), so whoever relies on one also polls.
 */
export type StoreChange =
  /** A job's event `seq` was appended. */
  | { readonly kind: "event"; readonly jobId: string; readonly seq: number }
  /** A job was created or its status changed. */
  | { readonly kind: "job"; readonly jobId: string; readonly stack: string; readonly status: JobStatus }
  /** A stack's lease was released (or force-released). */
  | { readonly kind: "lease"; readonly stack: string };

export interface Store {
  // Jobs ----------------------------------------------------------------------------------------

  /**
   * Records a new job (status `queued` unless given, `approvalsRequired` 0 unless given).
   * Throws `ConflictError` (details `{jobId}` of the existing job) when `idempotencyKey` is taken.
   */
  createJob(input: NewJob): Promise<Job>;
  getJob(id: string): Promise<Job | undefined>;
  /** The stack of a job, without reading the rest of it (authorization of job routes). */
  jobStack(id: string): Promise<string | undefined>;
  /**
   * A cheap fingerprint of what can still change once a job has finished (its status, finish time,
   * `rolledBackBy` and last event), from the row's scalar columns only: readers cache a finished
   * job's presentation and reuse it while the stamp is the same. Undefined for an unknown job.
   */
  jobStamp(id: string): Promise<string | undefined>;
  /** Applies `patch` and returns the updated job. Throws `NotFoundError`, or `ConflictError` when `ifStatus` does not hold. */
  updateJob(id: string, patch: JobPatch, options?: UpdateJobOptions): Promise<Job>;
  /** Newest first; page with `before` set to the last id of the previous page. */
  listJobs(query?: ListJobsQuery): Promise<Job[]>;
  /** Successful deployments (`up` and `rollback` jobs that succeeded), newest first by when they took effect. */
  deployments(stack: string, options?: { limit?: number; version?: string }): Promise<Job[]>;
  /** The newest successful deployment that was not rolled back since, under the query's constraints. */
  lastGoodDeployment(stack: string, query?: LastGoodDeploymentQuery): Promise<Job | undefined>;
  findByIdempotencyKey(key: string): Promise<Job | undefined>;
  /** Jobs with status `queued`, oldest first (FIFO); at most `limit` when given. */
  queuedJobs(options?: { stack?: string; limit?: number }): Promise<Job[]>;
  /** Stacks with queued jobs, the one whose oldest queued job is oldest first. */
  queuedStacks(): Promise<QueuedStack[]>;
  /**
   * The stacks with queued jobs (or the one stack, when given), the one whose oldest queued job is
   * oldest first, each with its lease, its block and its next jobs: one read, one snapshot.
   */
  dispatchableStacks(options?: { stack?: string }): Promise<DispatchableStack[]>;
  /** How many jobs are queued (on one stack, or requested by one principal, when given). */
  countQueued(options?: { stack?: string; requestedBy?: string }): Promise<number>;
  /**
   * Retention: deletes the events of jobs that finished more than `retentionMs` ago (the job rows
   * stay, with their outcome); returns how many events it deleted.
   */
  pruneEvents(retentionMs: number): Promise<number>;
  /**
   * A queued job's 1-based place among the queued jobs of its stack (1: next to run); undefined when
   * the job is not queued.
   */
  queuePosition(jobId: string): Promise<number | undefined>;
  /**
   * Crash recovery at startup: marks `running` jobs `interrupted` (finishedAt now, error
   * `{code: "interrupted", message: reason}`), except those still covered by another owner's live
   * lease, and blocks the stacks of interrupted mutating jobs (`blockedReason`). Returns the jobs it
   * changed.
   */
  markRunningAsInterrupted(reason: string, options?: MarkInterruptedOptions): Promise<Job[]>;
  /**
   * Keeps a job's final outcome that could not be written (every retry failed) in a file beside the
   * database, and returns the file; undefined for a store with no directory (`:memory:`). Throws when
   * the file cannot be written either.
   */
  keepOutcome(jobId: string, patch: JobPatch): Promise<string | undefined>;
  /**
   * Writes the kept outcomes to their jobs, where a job is still `running` (outcomes.ts), and returns
   * the jobs it updated. `markRunningAsInterrupted` does this first.
   */
  applyKeptOutcomes(): Promise<Job[]>;

  // Approvals -----------------------------------------------------------------------------------

  /**
   * Records an approver's decision on a job `awaiting_approval` and what it does to the job, in one
   * transaction: a rejection ends it `rejected` (finishedAt now, error `{code: "rejected"}` naming who
   * and why); the approval that brings its approvals to `approvalsRequired` puts it back `queued` (its
   * FIFO place is its id, so it runs before what was queued behind it). Who may decide is the
   * caller's rule. Throws `NotFoundError`; `ConflictError` when the job is not awaiting approval
   * (details `{jobId, status}`) or the principal already decided on it (details `{jobId, by,
   * decision}`). Returns the job as updated, with its decisions.
   */
  recordDecision(jobId: string, decision: NewApprovalDecision): Promise<Job>;
  /** A job's approval decisions, oldest first. */
  listDecisions(jobId: string): Promise<ApprovalDecision[]>;

  // Job events ----------------------------------------------------------------------------------

  /**
   * Appends one event to a job's log with the next seq (and moves the job's `lastEventSeq`). Beyond
   * the per-job cap the oldest events are dropped behind one `elided` marker. Throws `NotFoundError`.
   */
  appendEvent(jobId: string, event: NewJobEvent): Promise<{ seq: number; time: string }>;
  /**
   * `appendEvent` for several events at once, in one transaction: consecutive seqs in their order
   * (and one announcement, at the first one's seq, where the store announces changes). None: nothing.
   */
  appendEvents(jobId: string, events: readonly NewJobEvent[]): Promise<{ seq: number; time: string }[]>;
  /** Events in seq order. */
  listEvents(jobId: string, query?: ListEventsQuery): Promise<JobEvent[]>;

  // Leases --------------------------------------------------------------------------------------

  /**
   * Takes the stack's lease when it is free, released, expired, or already ours (re-entrant: same
   * token, expiry extended). Otherwise throws `ConflictError` naming the holder, since when, for
   * which job and until when (details `LeaseConflictDetails`). Atomic across processes.
   */
  acquireLease(stack: string, options: AcquireLeaseOptions): Promise<Lease>;
  /** Extends our lease to now + ttlMs. Throws `ConflictError` if it is no longer ours (released, or taken by someone). */
  renewLease(stack: string, owner: string, token: number, ttlMs: number): Promise<Lease>;
  /** Releases our lease; does nothing when it is not ours (any more). */
  releaseLease(stack: string, owner: string, token: number): Promise<void>;
  /** The lease when it is held and unexpired. */
  getLease(stack: string): Promise<Lease | undefined>;
  /** Admin unlock: clears any unreleased lease (expired or not) and returns it. */
  forceReleaseLease(stack: string): Promise<Lease | undefined>;

  // Stack flags ---------------------------------------------------------------------------------

  /** The stack's flags (none set for a stack never seen). */
  getStackState(stack: string): Promise<StackState>;
  setStackState(stack: string, patch: StackStatePatch): Promise<StackState>;

  // Audit trail ---------------------------------------------------------------------------------

  /** Appends one record (id and time are the store's). Records are never changed; only `pruneAudit` removes them. */
  appendAudit(entry: NewAuditEntry): Promise<AuditEntry>;
  /** Newest first; filter by time window and stack; page with `before` set to the last id of the previous page. */
  listAudit(query?: ListAuditQuery): Promise<AuditEntry[]>;
  /** Retention: deletes records older than `retentionMs` (at least a day); returns how many were deleted. */
  pruneAudit(retentionMs: number): Promise<number>;

  // Changes -------------------------------------------------------------------------------------

  /**
   * Calls `listener` with every change committed through the store from now on, by this process or
   * another (see StoreChange). Absent on a store only one service process uses (SQLite). Resolves,
   * once listening, to the unsubscribe.
   */
  watch?(listener: (change: StoreChange) => void): Promise<() => Promise<void>>;

  // Lifecycle -----------------------------------------------------------------------------------

  /** Throws if the store cannot answer (for readiness). */
  ping(): Promise<void>;
  close(): Promise<void>;
}

/** The synchronous form of `Store`: what an in-process database (SQLite) implements. */
export type SyncStore = {
  [K in keyof Store]: Store[K] extends (...args: infer A) => Promise<infer R> ? (...args: A) => R : never;
};
