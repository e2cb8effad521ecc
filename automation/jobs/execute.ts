/**
 * Runs one job: the operation its row names, under the environment's timeout, with every event stored
 * in order and passed on live, and the outcome written back to the row. A failed job is recorded on
 * its row; nothing thrown escapes except through the returned job. The caller holds the stack's lease.
 *
 * A job's plan phase (approvals.ts) stops at the operation's `beforeApply` with `AwaitingApproval`:
 * recorded as the move to `awaiting_approval`, not as a failure.
 */
import { formatDuration } from "../checks/wait";
import type { Environment } from "../environment";
import { CanceledError, ConflictError, DeployerError, OutcomeKeptError, TimedOutError, toDeployerError } from "../errors";
import { scrubEvent, type OperationContext, type OperationDeps, type JobEvent } from "../operations/context";
import { deploy, type DeployParams } from "../operations/deploy";
import { destroy, type DestroyParams } from "../operations/destroy";
import { drift } from "../operations/drift";
import { preview, type PreviewParams } from "../operations/preview";
import { refresh } from "../operations/refresh";
import { rollback, type RollbackParams } from "../operations/rollback";
import { redactSecrets } from "../redact";
import { nextBackoffMs } from "../store/busy";
import type { Job, JobPatch, JobStatus, UpdateJobOptions } from "../store";
import { AwaitingApproval } from "./approvals";

export type JobParams =
  | { readonly operation: "preview"; readonly params: PreviewParams }
  | { readonly operation: "up"; readonly params: DeployParams }
  | { readonly operation: "rollback"; readonly params: RollbackParams }
  | { readonly operation: "refresh" }
  | { readonly operation: "drift" }
  | { readonly operation: "destroy"; readonly params: DestroyParams };

export interface ExecuteOptions {
  readonly signal?: AbortSignal;
  /** Every event, after it was stored. */
  readonly onEvent?: (event: JobEvent, seq: number) => void;
  /**
   * Called with the job's `emit` once its row says `running`: lines the caller adds while the job runs
   * (the queue's notes) join the operation's events through it, stored in the order they were emitted.
   */
  readonly onRunning?: (emit: (event: JobEvent) => void) => void;
  /** Overrides `deploy.timeoutMinutes` (tests). */
  readonly timeoutMs?: number;
  /** Attempts at the outcome's write before it is kept on disk (default FINAL_WRITE_ATTEMPTS; tests). */
  readonly finalWriteAttempts?: number;
}

export interface ExecuteResult {
  readonly job: Job;
  /** What the operation returned, when it succeeded. */
  readonly result?: unknown;
  readonly error?: DeployerError;
}

/** Events kept while the store refuses writes; beyond, the oldest are dropped (and counted in the log). */
const MAX_PENDING_EVENTS = 1_000;
/** Attempts at the outcome's write (backing off from 50 ms to 2 s: about 15 s in all), before it is kept on disk. */
const FINAL_WRITE_ATTEMPTS = 12;

function statusFor(error: DeployerError): JobStatus {
  if (error instanceof CanceledError) return "canceled";
  if (error instanceof TimedOutError) return "timed_out";
  return "failed";
}

export async function executeJob(deps: OperationDeps, env: Environment, job: Job, what: JobParams, options: ExecuteOptions = {}): Promise<ExecuteResult> {
  const controller = new AbortController();
  const timeoutMs = options.timeoutMs ?? env.deploy.timeoutMinutes * 60_000;
  const timer = setTimeout(() => controller.abort(new TimedOutError(`${job.operation} on ${env.name} exceeded its timeout of ${formatDuration(timeoutMs)}`)), timeoutMs);
  timer.unref?.();
  const onAbort = () => controller.abort(options.signal?.reason instanceof Error ? options.signal.reason : new CanceledError(`${job.operation} on ${env.name} was canceled`));
  if (options.signal?.aborted) onAbort();
  else options.signal?.addEventListener("abort", onAbort, { once: true });

  // Events are buffered and written in order, all that wait in one write (one transaction): a write
  // that fails (the database busy under another process) is retried with the next event and before
  // the outcome is recorded, instead of being lost. After a failed write the next try waits (50 ms,
  // doubling to 2 s): with SQLite locked, each try holds the event loop for its busy timeout, so
  // trying on every event would stall it.
  const pending: JobEvent[] = [];
  let droppedEvents = 0;
  let backoffMs = 0;
  let retryAt = 0;
  let retryTimer: NodeJS.Timeout | undefined;
  /** Set once the job's outcome is in: a write failing after it arms no retry. */
  let ended = false;
  let flushSoon: NodeJS.Immediate | undefined;
  /** The write in progress (one at a time, so the seqs follow the events' order). */
  let draining: Promise<void> | undefined;
  const drain = async () => {
    while (pending.length > 0) {
      // Out of `pending` while they are written, so the cap below never drops them; put back if it fails.
      const batch = pending.splice(0, pending.length);
      let appended: { seq: number }[];
      try {
        appended = await deps.store.appendEvents(job.id, batch.map((event) => ({ type: event.type, data: event })));
      } catch (err) {
        pending.unshift(...batch);
        dropBeyondCap();
        throw err;
      }
      batch.forEach((event, i) => options.onEvent?.(event, appended[i].seq));
    }
  };
  /** Resolves once every buffered event is written; rejects when a write fails (the event stays buffered). */
  const flush = async () => {
    while (pending.length > 0 || draining !== undefined) {
      draining ??= drain().finally(() => {
        draining = undefined;
      });
      await draining;
    }
  };
  const emit = (raw: JobEvent) => {
    pending.push(scrubEvent(raw));
    dropBeyondCap();
    // Written at the next turn of the event loop: the events the operation emits until then go
    // in one write.
    if (flushSoon === undefined) {
      flushSoon = setImmediate(() => {
        flushSoon = undefined;
        tryFlush();
      });
    }
  };
  /** The oldest buffered events beyond MAX_PENDING_EVENTS go (counted, and said in the log). */
  const dropBeyondCap = () => {
    while (pending.length > MAX_PENDING_EVENTS) {
      pending.shift();
      droppedEvents++;
    }
  };
  const tryFlush = () => {
    if (Date.now() < retryAt) return;
    // In the background (the operation's emit does not wait); both outcomes are handled here.
    void flush().then(
      () => {
        backoffMs = 0;
      },
      () => {
        // kept in `pending`: retried after the backoff, with a later event, and before the outcome
        // (unless the job has ended, or another caller of this same failed write backed off already)
        if (ended || Date.now() < retryAt) return;
        backoffMs = nextBackoffMs(backoffMs);
        retryAt = Date.now() + backoffMs;
        if (retryTimer === undefined) {
          retryTimer = setTimeout(() => {
            retryTimer = undefined;
            tryFlush();
          }, backoffMs);
          retryTimer.unref?.();
        }
      },
    );
  };
  /** The outcome, written until it lands (a few seconds of retries), after the buffered events. */
  const record = async (patch: JobPatch, opts?: UpdateJobOptions): Promise<Job> => {
    let waitMs = 0;
    for (let attempt = 0; ; attempt++) {
      try {
        // Said among the events, after those that were kept, and written with them.
        if (droppedEvents > 0) {
          pending.push(scrubEvent({ type: "log", level: "warning", message: `${droppedEvents} events could not be stored while the database was busy` }));
          droppedEvents = 0;
        }
        // A write already under way may fail (it puts its events back): the outcome's own try comes after it.
        await draining?.catch(() => undefined);
        try {
          await flush();
        } catch {
          // the events are secondary to the outcome: try them again below, but never block it
        }
        return await deps.store.updateJob(job.id, patch, opts);
      } catch (err) {
        if (err instanceof ConflictError) throw err;
        if (attempt >= (options.finalWriteAttempts ?? FINAL_WRITE_ATTEMPTS) - 1) {
          // Said on disk, where the next start (or the service's sweep) applies it.
          const file = await deps.store.keepOutcome(job.id, patch);
          if (file === undefined) throw err;
          throw new OutcomeKeptError(`the outcome of job ${job.id} (${patch.status}) could not be written to the database; it is kept in ${file}`, { cause: err, details: { jobId: job.id, file } });
        }
        waitMs = nextBackoffMs(waitMs);
        await new Promise((resolve) => setTimeout(resolve, waitMs));
      }
    }
  };
  // A job the queue claimed is running already (its claim wrote both); the CLI's is not.
  let current = job.status === "running" && job.startedAt !== undefined ? job : await deps.store.updateJob(job.id, { status: "running", startedAt: job.startedAt ?? new Date().toISOString() });
  const ctx: OperationContext = { env, job: current, deps, signal: controller.signal, emit };
  options.onRunning?.(emit);
  try {
    let result: unknown;
    try {
      result = await run(ctx, what);
    } catch (err) {
      return await recordFailure(err);
    }
    // Outside the operation's catch: an outcome that could not be written is not the operation failing.
    current = await record({ status: "succeeded", finishedAt: new Date().toISOString(), error: null });
    return { job: current, result };
  } finally {
    ended = true;
    clearTimeout(timer);
    if (retryTimer !== undefined) clearTimeout(retryTimer);
    if (flushSoon !== undefined) clearImmediate(flushSoon);
    options.signal?.removeEventListener("abort", onAbort);
  }

  async function recordFailure(err: unknown): Promise<ExecuteResult> {
    if (err instanceof AwaitingApproval && !controller.signal.aborted) {
      try {
        await flush(); // the plan phase's events (and the approval request's line) before the wait begins
      } catch {
        // the events are secondary: the wait begins anyway
      }
      try {
        current = await deps.store.updateJob(job.id, { ...err.patch, status: "awaiting_approval" }, { ifStatus: "running" });
      } catch (conflict) {
        // Ended meanwhile (a shutdown marked it): that outcome stands.
        if (!(conflict instanceof ConflictError)) throw conflict;
        current = (await deps.store.getJob(job.id)) ?? current;
      }
      return { job: current };
    }
    // An abort surfaces as whatever the engine threw; the controller's reason says why it aborted.
    const reason = controller.signal.aborted ? controller.signal.reason : undefined;
    const error = reason instanceof DeployerError ? reason : toDeployerError(err);
    const message = redactSecrets(error.message);
    emit({ type: "log", level: "error", message });
    current = await record({ status: statusFor(error), finishedAt: new Date().toISOString(), error: { code: error.code, message } });
    return { job: current, error };
  }
}

function run(ctx: OperationContext, what: JobParams): Promise<unknown> {
  switch (what.operation) {
    case "preview":
      return preview(ctx, what.params);
    case "up":
      return deploy(ctx, what.params);
    case "rollback":
      return rollback(ctx, what.params);
    case "refresh":
      return refresh(ctx);
    case "drift":
      return drift(ctx);
    case "destroy":
      return destroy(ctx, what.params);
  }
}
