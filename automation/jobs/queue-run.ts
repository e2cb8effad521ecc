/**
 * Running one job the dispatch (queue-dispatch.ts) launched: the stack's lease, the job read under it
 * (still the stack's next?), what can be decided without the engine (its environment, its approval
 * phase), the claim (the CAS queued → running), executeJob, and the outcome: `job:done`, or the end
 * of the plan phase (`job:awaiting_approval`), or, when the lease was taken meanwhile or the
 * database was busy, back to waiting its turn. The slot and the stack stay reserved until the lease
 * is let go, so this process never starts a second job on the stack under the same lease.
 */
import type { Engine } from "../engine/port";
import type { Environment } from "../environment";
import { ConfigError, ConflictError, isStoreBusy, OutcomeKeptError, toDeployerError } from "../errors";
import type { OperationDeps } from "../operations/context";
import { interruptedBlockReason, MUTATING_OPERATIONS, TERMINAL_STATUSES, type Job, type JobPatch, type JobRequestParams, type Lease, type QueuedJobRef, type Store, type UpdateJobOptions } from "../store";
import { approvalPhase, approvalsOf } from "./approvals";
import { executeJob, type JobParams } from "./execute";
import { withStackLease } from "./lease";
import type { QueueApprovals } from "./queue-approvals";
import { runnableOf, type Dispatcher } from "./queue-dispatch";
import type { JobEvents } from "./queue-events";
import { SHUTDOWN_REASON, type QueueRecovery } from "./queue-recovery";
import type { OperationEvent } from "./types";

/** One job this process runs (or is about to: reserved, waiting for its lease and its claim). */
export interface Running {
  readonly jobId: string;
  readonly stack: string;
  readonly operation: Job["operation"];
  /** Aborted by a graceful cancel, a shutdown or (through executeJob) never otherwise. */
  readonly controller: AbortController;
  env?: Environment;
  engine?: Engine;
  lease?: Lease;
  /** While executeJob runs the job: its event log's `emit` (the queue's notes keep their place among the events). */
  emit?: (event: OperationEvent) => void;
  /**
   * True once `run` has the answer to its claim (the row says `running`, claimed by this process). The
   * row says so a moment before: `cancel` counts a job whose lease is ours as claimed.
   */
  claimed: boolean;
  /** Who asked for the graceful cancel, once someone did. */
  cancelRequestedBy?: string;
  forced: boolean;
  /** Set by shutdown: the job ends `interrupted`, not `canceled` (unless someone had asked to cancel it). */
  interruptedByShutdown: boolean;
  /** Set by shutdown after its grace: this process no longer answers for the job. */
  abandoned: boolean;
  done: Promise<void>;
}

/** The queue, as a job's run sees it. */
export interface RunHost {
  readonly store: Store;
  readonly deps: OperationDeps;
  /** This process's lease owner id. */
  readonly owner: string;
  readonly leaseTtlMs: number;
  /** A job's timeout (default: the environment's `deploy.timeoutMinutes`). */
  readonly timeoutFor?: (env: Environment) => number;
  readonly approvals: QueueApprovals;
  readonly recovery: QueueRecovery;
  readonly events: JobEvents;
  readonly dispatcher: Pick<Dispatcher, "forget" | "retryLater">;
  /** False once shutting down: a job that has its lease but no claim yet stays queued. */
  started(): boolean;
  load(stack: string): Environment;
  /** Whether this process runs the job (or is about to). */
  runsHere(jobId: string): boolean;
  /** JobQueue.cancel, for a cancel that came too late to stop the plan phase. */
  cancel(jobId: string, by: string): Promise<Job>;
}

export class JobRunner {
  constructor(private readonly host: RunHost) {}

  async run(entry: Running, queued: QueuedJobRef): Promise<void> {
    const { store, approvals, events, dispatcher } = this.host;
    let entered = false;
    let finished: Job | undefined;
    /** What ended the job before its claim (said once the lease is let go, so the stack is free by then). */
    let before: { event: "job:done" | "job:awaiting_approval"; job: Job } | "ended" | undefined;
    try {
      await withStackLease(
        store,
        queued.stack,
        this.host.owner,
        async (leaseLost, lease) => {
          entered = true;
          entry.lease = lease;
          if (!this.host.started() || entry.controller.signal.aborted) return; // shutting down: it stays queued
          // The claim: what `SELECT … FOR UPDATE SKIP LOCKED` gives a worker pool, across replicas. The
          // stack's lease is the lock: a replica that finds it held skips the stack (dispatchOnce), and
          // one that loses the race to acquire it backs off (retryLater below), leaving the job queued.
          // The candidate was chosen before the lease, so the stack's next job is read under it (the
          // one before may have run meanwhile, or gone back to queued after its approval, or started
          // to await approval): anything else than the candidate, and nothing is claimed, the lease is
          // let go, and the next pass (kicked when this entry is forgotten) reads afresh. Then the CAS
          // queued → running, under the lease: nothing else can claim a job of this stack meanwhile,
          // and a cancel in between makes it fail. Per-stack FIFO and one running job per stack
          // follow; the leases' fencing tokens make sure a holder that lost its lease cannot renew it.
          const current = await this.nextUnderLease(queued.stack);
          if (current === undefined || current.id !== queued.id) return;
          // Everything that can be decided without the engine fails the job before its claim.
          let env: Environment;
          let what: JobParams;
          try {
            env = this.host.load(current.stack);
            if (approvalPhase(current) === "apply") {
              if (await approvals.expireIfDue(current)) {
                before = "ended"; // expireIfDue said so itself
                return;
              }
              // A rule raised since the approvals: back to waiting for the rest.
              const raised = await approvals.applyRaisedRule(current, env);
              if (approvalsOf(raised).length < raised.approvalsRequired) {
                before = { event: "job:awaiting_approval", job: await store.updateJob(current.id, { status: "awaiting_approval" }, { ifStatus: "queued" }) };
                return;
              }
            }
            what = approvals.withApprovalPhase(current, env, jobParams(current, env));
          } catch (err) {
            // The database busy under another process is no reason to fail the job: it waits its turn again.
            if (isStoreBusy(err)) throw err;
            const error = toDeployerError(err);
            const failed = await this.finishQueued(current.id, "failed", { code: error.code, message: error.message });
            before = failed ? { event: "job:done", job: failed } : "ended";
            return;
          }
          entry.env = env;
          entry.engine = this.host.deps.engineFor(env);
          let claimed: Job;
          try {
            claimed = await store.updateJob(current.id, { status: "running", startedAt: new Date().toISOString() }, { ifStatus: "queued" });
          } catch (err) {
            if (err instanceof ConflictError) return; // canceled meanwhile
            throw err;
          }
          entry.claimed = true;
          events.emit("job:start", claimed);
          try {
            const result = await executeJob({ ...this.host.deps, store: firstFinishWins(store, current.id) }, env, claimed, what, {
              signal: AbortSignal.any([entry.controller.signal, leaseLost]),
              onEvent: (event, seq) => events.publish(current.id, seq, event),
              onRunning: (emit) => {
                entry.emit = emit;
              },
              timeoutMs: this.host.timeoutFor?.(env),
            });
            finished = result.job;
          } finally {
            entry.emit = undefined;
          }
        },
        { ttlMs: this.host.leaseTtlMs, jobId: queued.id },
      );
    } catch (err) {
      // The lease was taken between the check and the acquire, or the database was busy before the job
      // was claimed: it waits its turn again.
      if ((!entered && err instanceof ConflictError) || (!entry.claimed && isStoreBusy(err))) return dispatcher.retryLater(queued.stack);
      // Something escaped executeJob (the store failed under it): record what can be recorded, so the
      // job does not stay `running`, then report the error. An outcome kept on disk is the truth: it
      // is applied (now, if the database takes it again, else by the sweep or the next start).
      if (err instanceof OutcomeKeptError) {
        dispatcher.forget(entry);
        await this.host.recovery.applyKeptOutcomes();
      } else if (entry.claimed && !entry.abandoned) {
        try {
          const failed = await store.updateJob(
            queued.id,
            { status: "failed", finishedAt: new Date().toISOString(), error: { code: "internal", message: "the deployer failed while running this job" } },
            { ifStatus: "running" },
          );
          dispatcher.forget(entry);
          events.emit("job:done", failed);
        } catch {
          // the store is gone too: recover() or the sweep will find the job
        }
      }
      throw err;
    }
    if (before !== undefined) {
      dispatcher.forget(entry);
      if (before !== "ended") events.emit(before.event, before.job);
      return;
    }
    if (!entry.claimed || entry.abandoned) return;
    let job = finished ?? (await store.getJob(queued.id));
    if (!job) return;
    if (job.status === "awaiting_approval") {
      // The plan phase is over: lease and slot are free; the job waits for its approvers.
      dispatcher.forget(entry);
      events.emit("job:awaiting_approval", job);
      // A cancel asked while executeJob was writing that move found the job still running, and its
      // interrupt came too late to stop it: it stands, as for a job that waits.
      if (entry.cancelRequestedBy !== undefined) {
        try {
          await this.host.cancel(job.id, entry.cancelRequestedBy);
        } catch (err) {
          if (!(err instanceof ConflictError)) throw err; // ended otherwise meanwhile
        }
      }
      return;
    }
    if (entry.interruptedByShutdown && entry.cancelRequestedBy === undefined && job.status === "canceled") {
      job = (await markInterrupted(store, entry, `${SHUTDOWN_REASON}; it was interrupted gracefully`, "canceled")) ?? job;
    }
    if (job.status === "running") {
      // executeJob always records an outcome; a store failure could leave the row behind.
      job = (await markInterrupted(store, entry, "the job ended without recording an outcome")) ?? job;
    }
    dispatcher.forget(entry);
    events.emit("job:done", job);
  }

  /**
   * The stack's next runnable job (`runnableOf`), read while this process holds the stack's lease.
   * A job still `running` on the stack then is one nobody runs (running rows are written under the lease, and their holder's lease
   * lapsed or was cleared): it is interrupted first, as the sweep would, and blocks the stack if it
   * was a mutation, so the next job does not run on what it left half done.
   */
  private async nextUnderLease(stack: string): Promise<Job | undefined> {
    const { store } = this.host;
    let [queued] = await store.dispatchableStacks({ stack });
    if (queued?.running) {
      let interrupted = false;
      for (const job of await store.listJobs({ stack, status: "running", limit: 500 })) {
        if (!this.host.runsHere(job.id)) if (await this.host.recovery.interruptOrphan(job)) interrupted = true;
      }
      // An interrupted mutation blocks the stack: read what may run now.
      if (interrupted) [queued] = await store.dispatchableStacks({ stack });
    }
    const next = queued && runnableOf(queued, queued.awaitingApproval);
    return next && store.getJob(next.id);
  }

  /** Ends a job that never started (CAS on `queued`); undefined if it was no longer queued. */
  private async finishQueued(jobId: string, status: "failed" | "canceled", error: { code: string; message: string }): Promise<Job | undefined> {
    try {
      return await this.host.store.updateJob(jobId, { status, finishedAt: new Date().toISOString(), error }, { ifStatus: "queued" });
    } catch (err) {
      if (err instanceof ConflictError) return undefined;
      throw err;
    }
  }
}

/** Marks a job `interrupted` (CAS on `from`) and blocks its stack if it was a mutation; undefined when it ended otherwise meanwhile. */
export async function markInterrupted(store: Store, entry: Pick<Running, "jobId" | "operation" | "stack">, message: string, from: Job["status"] = "running"): Promise<Job | undefined> {
  let job: Job;
  try {
    job = await store.updateJob(entry.jobId, { status: "interrupted", finishedAt: new Date().toISOString(), error: { code: "interrupted", message } }, { ifStatus: from });
  } catch (err) {
    if (err instanceof ConflictError) return undefined;
    throw err;
  }
  if (MUTATING_OPERATIONS.has(entry.operation)) {
    await store.setStackState(entry.stack, {
      blockedReason: interruptedBlockReason({ operation: entry.operation, id: entry.jobId }, message),
      blockedJobId: entry.jobId,
      blockedAt: job.finishedAt ?? new Date().toISOString(),
    });
  }
  return job;
}

/** What executeJob runs for a queued job: its stored request (or, for rows without one, its fields). */
export function jobParams(job: Job, env: Environment): JobParams {
  const p: JobRequestParams = job.params ?? { version: job.version, target: job.target, reason: job.reason, message: job.message };
  const target = p.target && p.target.length > 0 ? p.target : undefined;
  const version = (): string => {
    const v = job.version ?? p.version ?? env.settings.app.version;
    if (v === undefined) throw new ConfigError(`version is required: ${env.file} sets no app.version`, { details: { field: "version" } });
    return v;
  };
  switch (job.operation) {
    case "up":
      return { operation: "up", params: { version: version(), target, allowDestroy: p.allowDestroy } };
    case "preview":
      return { operation: "preview", params: { version: version(), target, allowDestroy: p.allowDestroy } };
    case "rollback":
      return { operation: "rollback", params: { to: p.to, reason: p.reason } };
    case "destroy":
      return { operation: "destroy", params: { allowDestroy: p.allowDestroy } };
    case "refresh":
      return { operation: "refresh" };
    case "drift":
      return { operation: "drift" };
  }
}

/**
 * The store as one job's execution sees it: once the row has a final status (set by a forced
 * shutdown, say), a later attempt to set another is ignored instead of overwriting it.
 */
function firstFinishWins(store: Store, jobId: string): Store {
  const updateJob = async (id: string, patch: JobPatch, options: UpdateJobOptions = {}): Promise<Job> => {
    if (id !== jobId || options.ifStatus !== undefined || patch.status === undefined || !TERMINAL_STATUSES.has(patch.status)) {
      return store.updateJob(id, patch, options);
    }
    try {
      return await store.updateJob(id, patch, { ifStatus: "running" });
    } catch (err) {
      const current = err instanceof ConflictError ? await store.getJob(id) : undefined;
      if (current && TERMINAL_STATUSES.has(current.status)) return current;
      throw err;
    }
  };
  return new Proxy(store, {
    get(target, prop) {
      if (prop === "updateJob") return updateJob;
      const value = Reflect.get(target, prop, target);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}
