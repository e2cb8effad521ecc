/**
 * Canceling a job (JobQueue.cancel): a job that runs nothing (queued, or awaiting approval) ends
 * `canceled` at once; one running here gets the graceful interrupt (its signal aborted and the
 * engine's cancel), then, when forced, the engine's kill. The job's end is recorded by the run
 * (queue-run.ts) once the engine stops. At shutdown, every job running here gets the same graceful
 * interrupt (`interruptRunning`).
 */
import { CanceledError, ConflictError, DeployerError, NotFoundError } from "../errors";
import { TERMINAL_STATUSES, type Job, type Store } from "../store";
import type { JobEvents } from "./queue-events";
import { SHUTDOWN_REASON } from "./queue-recovery";
import { markInterrupted, type Running } from "./queue-run";
import type { CancelOptions } from "./types";

/** The queue, as a cancel sees it. */
export interface CancelHost {
  readonly store: Store;
  /** This process's lease owner id. */
  readonly owner: string;
  readonly events: JobEvents;
  /** The job, when this process runs it (or is about to). */
  entryOf(jobId: string): Running | undefined;
  /** The job no longer counts as running here (queue-dispatch.ts's `forget`). */
  forget(entry: Running): void;
  /** Something may run now (the mutations queued behind a job that awaited approval). */
  kick(): void;
}

/** Cancels a job (JobQueue.cancel says how, and what is refused); returns it as it is after the request. */
export async function cancelJob(host: CancelHost, jobId: string, options: CancelOptions, by: string): Promise<Job> {
  const { store, events } = host;
  const job = await store.getJob(jobId);
  if (!job) throw new NotFoundError(`job ${jobId} not found`, { details: { jobId } });
  if (TERMINAL_STATUSES.has(job.status)) {
    throw new ConflictError(`job ${jobId} already ${job.status}`, { details: { jobId, status: job.status } });
  }
  if (job.status === "queued" || job.status === "awaiting_approval") {
    // Nothing runs (yet, or while it waits for approval), so nothing to kill: `force` cancels it like a plain cancel.
    try {
      const message = job.status === "awaiting_approval" ? `canceled by ${by} while awaiting approval` : `canceled by ${by} before it started`;
      const canceled = await store.updateJob(
        jobId,
        { status: "canceled", finishedAt: new Date().toISOString(), error: { code: "canceled", message } },
        { ifStatus: ["queued", "awaiting_approval"] },
      );
      await events.note(jobId, "warning", message);
      const final = (await store.getJob(jobId)) ?? canceled;
      events.emit("job:done", final);
      events.dropSubscribers(jobId); // it will say nothing more
      if (job.status === "awaiting_approval") host.kick(); // the mutations queued behind it may run
      return final;
    } catch (err) {
      // Claimed (or finished) between the read and the write: answer for its new state.
      if (err instanceof ConflictError) return cancelJob(host, jobId, options, by);
      throw err;
    }
  }
  // running
  const entry = host.entryOf(jobId);
  // Ours once we hold the stack's lease: the row says `running` only after our claim, whose answer
  // may not have reached `run` yet (`claimed` still false); until then the aborted signal stops it
  // before its engine starts.
  if (!entry || (!entry.claimed && entry.lease === undefined)) {
    const lease = await store.getLease(job.stack);
    throw new ConflictError(
      `job ${jobId} is running in another process${lease ? ` (${lease.owner})` : ""}; cancel it there`,
      { details: { jobId, status: job.status, ...(lease ? { holder: lease.owner } : {}) } },
    );
  }
  if (!options.force) {
    if (entry.cancelRequestedBy === undefined) {
      entry.cancelRequestedBy = by;
      // The note goes first (its line precedes the engine's answer) but is awaited once the
      // interrupt is sent, so that a forced cancel arriving meanwhile finds it sent.
      const noted = events.note(jobId, "warning", `cancel requested by ${by}: interrupting the engine`);
      entry.controller.abort(new CanceledError(`${job.operation} on ${job.stack} was canceled by ${by}`));
      callEngine(entry, "cancel", events);
      await noted;
    }
    return (await store.getJob(jobId)) ?? job;
  }
  if (entry.cancelRequestedBy === undefined) {
    throw new ConflictError(`job ${jobId} is running: ask for a graceful cancel first, then force it if the engine does not stop`, {
      details: { jobId, status: job.status },
    });
  }
  if (!entry.engine?.kill) {
    throw new ConflictError(`the ${entry.engine?.kind ?? "job's"} engine cannot be killed from here; the graceful cancel is in progress`, {
      details: { jobId, status: job.status },
    });
  }
  if (!entry.forced) {
    entry.forced = true;
    const noted = events.note(jobId, "warning", `forced cancel requested by ${by}: killing the engine's processes`);
    callEngine(entry, "kill", events);
    await noted;
  }
  return (await store.getJob(jobId)) ?? job;
}

/**
 * The shutdown's interrupt (JobQueue.shutdown): gives every job in `entries` (those running here) the
 * graceful interrupt and waits up to `graceMs` for them to stop. Jobs stopped by it end `interrupted`
 * (queue-run.ts); anything still running after the grace is marked `interrupted` here and its lease
 * released. Returns the jobs it interrupted.
 */
export async function interruptRunning(host: CancelHost, entries: readonly Running[], graceMs: number): Promise<Job[]> {
  const { store, events } = host;
  for (const entry of entries) {
    entry.interruptedByShutdown = true;
    if (!entry.controller.signal.aborted) entry.controller.abort(new CanceledError(SHUTDOWN_REASON));
    callEngine(entry, "cancel", events);
  }
  let graceTimer: NodeJS.Timeout | undefined;
  const grace = new Promise<void>((resolve) => {
    graceTimer = setTimeout(resolve, Math.max(0, graceMs));
    graceTimer.unref();
  });
  await Promise.race([Promise.all(entries.map((e) => e.done)), grace]);
  clearTimeout(graceTimer);

  const interrupted: Job[] = [];
  for (const entry of entries) {
    const job = await store.getJob(entry.jobId);
    if (!job) continue;
    if (job.status === "interrupted" && entry.interruptedByShutdown) {
      interrupted.push(job);
      continue;
    }
    if (job.status !== "running" || host.entryOf(entry.jobId) !== entry) continue;
    // Still running after the grace: this process stops answering for it.
    entry.abandoned = true;
    host.forget(entry);
    const marked = await markInterrupted(store, entry, `${SHUTDOWN_REASON}; it did not stop within the grace period`);
    if (entry.lease) await store.releaseLease(entry.stack, host.owner, entry.lease.token);
    if (marked) {
      interrupted.push(marked);
      events.emit("job:done", marked);
    }
  }
  return interrupted;
}

/** Engine cancel/kill in the background (none before the claim: the engine has not started); a failure is reported, never thrown. */
export function callEngine(entry: Running, what: "cancel" | "kill", events: JobEvents): void {
  const { engine, env } = entry;
  if (!entry.claimed || !engine || !env) return;
  const call = what === "kill" ? engine.kill?.bind(engine) : engine.cancel.bind(engine);
  if (!call) return;
  Promise.resolve()
    .then(() => call(env))
    .catch((err) => events.emit("job:error", entry.jobId, new DeployerError(`engine ${what} failed for job ${entry.jobId}`, { cause: err })));
}
