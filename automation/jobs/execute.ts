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
import { CanceledError, ConflictError, DeployerError, TimedOutError, toDeployerError } from "../errors";
import { scrubEvent, type OperationContext, type OperationDeps, type JobEvent } from "../operations/context";
import { deploy, type DeployParams } from "../operations/deploy";
import { destroy, type DestroyParams } from "../operations/destroy";
import { drift } from "../operations/drift";
import { preview, type PreviewParams } from "../operations/preview";
import { refresh } from "../operations/refresh";
import { rollback, type RollbackParams } from "../operations/rollback";
import { redactSecrets } from "../redact";
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
  /** Overrides `deploy.timeoutMinutes` (tests). */
  readonly timeoutMs?: number;
}

export interface ExecuteResult {
  readonly job: Job;
  /** What the operation returned, when it succeeded. */
  readonly result?: unknown;
  readonly error?: DeployerError;
}

/** Events kept while the store refuses writes; beyond, the oldest are dropped (and counted in the log). */
const MAX_PENDING_EVENTS = 1_000;
/** Attempts at the outcome's write (backing off from 50 ms to 2 s: about 15 s in all). */
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

  // Events are buffered: one whose write fails (the database busy under another process) is retried
  // with the next event and before the outcome is recorded, in order, instead of being lost.
  const pending: JobEvent[] = [];
  let droppedEvents = 0;
  const flush = () => {
    while (pending.length > 0) {
      const event = pending[0];
      const { seq } = deps.store.appendEvent(job.id, { type: event.type, data: event });
      pending.shift();
      options.onEvent?.(event, seq);
    }
  };
  const emit = (raw: JobEvent) => {
    pending.push(scrubEvent(raw));
    if (pending.length > MAX_PENDING_EVENTS) {
      pending.shift();
      droppedEvents++;
    }
    try {
      flush();
    } catch {
      // kept in `pending`: retried with the next event and at the end
    }
  };
  /** The outcome, written until it lands (a few seconds of retries), after the buffered events. */
  const record = async (patch: JobPatch, opts?: UpdateJobOptions): Promise<Job> => {
    for (let attempt = 0; ; attempt++) {
      try {
        try {
          flush();
        } catch {
          // the events are secondary to the outcome: try them again below, but never block it
        }
        if (droppedEvents > 0 && pending.length === 0) {
          pending.push(scrubEvent({ type: "log", level: "warning", message: `${droppedEvents} events could not be stored while the database was busy` }));
          droppedEvents = 0;
        }
        return deps.store.updateJob(job.id, patch, opts);
      } catch (err) {
        if (err instanceof ConflictError || attempt >= FINAL_WRITE_ATTEMPTS - 1) throw err;
        await new Promise((resolve) => setTimeout(resolve, Math.min(2_000, 50 * 2 ** attempt)));
      }
    }
  };
  let current = deps.store.updateJob(job.id, { status: "running", startedAt: job.startedAt ?? new Date().toISOString() });
  const ctx: OperationContext = { env, job: current, deps, signal: controller.signal, emit };
  try {
    const result = await run(ctx, what);
    current = await record({ status: "succeeded", finishedAt: new Date().toISOString(), error: null });
    return { job: current, result };
  } catch (err) {
    if (err instanceof AwaitingApproval && !controller.signal.aborted) {
      try {
        current = deps.store.updateJob(job.id, { ...err.patch, status: "awaiting_approval" }, { ifStatus: "running" });
      } catch (conflict) {
        // Ended meanwhile (a shutdown marked it): that outcome stands.
        if (!(conflict instanceof ConflictError)) throw conflict;
        current = deps.store.getJob(job.id) ?? current;
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
  } finally {
    clearTimeout(timer);
    options.signal?.removeEventListener("abort", onAbort);
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
