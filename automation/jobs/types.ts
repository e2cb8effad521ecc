/**
 * The job queue's public types: what the HTTP service (api/) and the drift schedule call. The queue
 * itself (queue.ts) keeps every job in the store, runs them FIFO per stack under the stack's lease
 * (the same lease the CLI takes), caps concurrent engine runs, and publishes events live.
 */
import type { JobEvent as OperationEvent } from "../operations/context";
import type { ApprovalDecision, Job, JobOperation, JobRequestParams, JobSource } from "../store";

/**
 * What a caller may ask of an operation; validated by the caller (api/ schemas) before submit. Kept on
 * the job row (`Job.params`), so it is defined with the store's types.
 */
export type { JobRequestParams };
export type { OperationEvent };

export interface SubmitRequest {
  readonly stack: string;
  readonly operation: JobOperation;
  readonly requestedBy: string;
  readonly source: JobSource;
  readonly params: JobRequestParams;
  readonly idempotencyKey?: string;
  /** Hash of the request body, to tell a replay (same job) from a conflicting reuse of the key (409). */
  readonly requestHash?: string;
}

/** The typed event map the queue emits, instead of scattered logging. */
export interface QueueEvents {
  "job:queued": [job: Job];
  "job:start": [job: Job];
  /** Every event of a running job, after it was stored; `seq` is its SSE id. */
  "job:event": [jobId: string, seq: number, event: OperationEvent];
  "job:done": [job: Job];
  /** A job's plan phase ended: it waits for approvals (it holds no lease and runs nothing meanwhile). */
  "job:awaiting_approval": [job: Job];
  /** An approver's decision was recorded; `job` as it is after it (still waiting, `queued` again, or `rejected`). */
  "job:decision": [job: Job, decision: ApprovalDecision];
  /** Something escaped a job or the dispatcher (never a job's own failure, which is `job:done`); `jobId` is "" when no job is concerned. */
  "job:error": [jobId: string, error: Error];
}

export interface CancelOptions {
  /** Kill the engine's process tree; only after a graceful cancel was asked. */
  readonly force?: boolean;
}

export interface QueueStatus {
  readonly running: number;
  readonly queued: number;
  readonly maxConcurrent: number;
  readonly accepting: boolean;
}
