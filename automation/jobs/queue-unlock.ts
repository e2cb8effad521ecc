/**
 * The admin unlock (JobQueue.unlock / unlockAndRecover say what it clears and refuses): it reserves
 * the stack in the queue first, so that nothing is dispatched on it meanwhile, then, on the store,
 * clears a lease whose holder is gone, records as interrupted the jobs such a holder left `running`,
 * and clears the blocked flag.
 */
import { assertStackName } from "../environment";
import { ConflictError } from "../errors";
import { TERMINAL_STATUSES, type Job, type Lease, type Store } from "../store";
import { holderIsDead, withStackLease } from "./lease";

/** The queue, as the unlock sees it. */
export interface UnlockHost {
  readonly store: Store;
  /** This process's lease owner id. */
  readonly owner: string;
  /** The message a job left running by a vanished holder is interrupted with (queue-recovery.ts's ORPHAN_REASON). */
  readonly orphanReason: string;
  /** The stack's lease time to live, while an unlock's recovery holds it. */
  readonly leaseTtlMs: number;
  /** The stacks the queue has reserved (stack → the job running there, or an unlock's marker). */
  readonly runningStacks: Map<string, string>;
  /** A job the unlock ended (its `job:done`). */
  ended(job: Job): void;
  /** Whatever backoff the dispatch keeps for the stack is over. */
  clearBackoff(stack: string): void;
  /** Something may run now. */
  kick(): void;
}

export interface Unlocked {
  clearedLease?: Lease;
  wasBlocked: boolean;
  reason?: string;
}

/** JobQueue.unlock: clears the stack's holds and its blocked flag, the stack reserved meanwhile. */
export async function unlock(host: UnlockHost, stack: string, by: string): Promise<Unlocked> {
  const marker = reserveForUnlock(host.runningStacks, stack, by);
  try {
    const clearedLease = await clearHolds(host, stack, by);
    const cleared = await clearBlocked(host.store, stack);
    host.clearBackoff(stack);
    return { ...(clearedLease ? { clearedLease } : {}), ...cleared };
  } finally {
    if (host.runningStacks.get(stack) === marker) host.runningStacks.delete(stack);
    host.kick();
  }
}

/** JobQueue.unlockAndRecover: `unlock`, with `recover` run under the stack's lease before the blocked flag is cleared. */
export async function unlockAndRecover<R>(host: UnlockHost, stack: string, by: string, recover: () => Promise<R>): Promise<Unlocked & { recovery: R }> {
  const marker = reserveForUnlock(host.runningStacks, stack, by);
  try {
    const clearedLease = await clearHolds(host, stack, by);
    const recovery = await withStackLease(host.store, stack, host.owner, () => recover(), { ttlMs: host.leaseTtlMs });
    const cleared = await clearBlocked(host.store, stack);
    return { ...(clearedLease ? { clearedLease } : {}), ...cleared, recovery };
  } finally {
    if (host.runningStacks.get(stack) === marker) host.runningStacks.delete(stack);
    host.clearBackoff(stack);
    host.kick();
  }
}

/**
 * Refuses an unlock while a job runs on the stack here (or another unlock is under way), then
 * reserves the stack like a running job until the caller deletes the returned marker: no job is
 * dispatched on it while the unlock reads and clears its lease and its running jobs.
 */
function reserveForUnlock(runningStacks: Map<string, string>, stack: string, by: string): string {
  assertStackName(stack);
  const runningHere = runningStacks.get(stack);
  if (runningHere !== undefined) {
    throw new ConflictError(
      runningHere.startsWith("job_") ? `job ${runningHere} is running on stack ${stack}; cancel it before unlocking` : `stack ${stack} is being recovered (${runningHere}); wait for it to finish`,
      { details: { stack, ...(runningHere.startsWith("job_") ? { jobId: runningHere } : {}) } },
    );
  }
  const marker = `unlock by ${by}`;
  runningStacks.set(stack, marker);
  return marker;
}

/** Clears the stack's lease (refused while its holder may be alive) and the running jobs nobody answers for; returns the lease it cleared. */
async function clearHolds(host: UnlockHost, stack: string, by: string): Promise<Lease | undefined> {
  const { store } = host;
  const lease = await store.getLease(stack);
  if (lease && (await holderGone(host, lease)) === undefined) {
    throw new ConflictError(
      `stack ${stack} is held by ${lease.owner} since ${lease.acquiredAt}${lease.jobId ? ` for job ${lease.jobId}` : ""}, which is still running; ` +
        `wait for it to finish (the lease expires at ${lease.expiresAt} unless renewed)`,
      { details: { stack, holder: lease.owner, jobId: lease.jobId, acquiredAt: lease.acquiredAt, expiresAt: lease.expiresAt } },
    );
  }
  // Without a live lease: an expired one that was never released is cleared for the record.
  const clearedLease = await store.forceReleaseLease(stack);
  // Nobody holds the stack now, so a job still `running` on it was orphaned by a holder that died
  // (not yet swept): it cannot be running, record it as interrupted.
  for (const job of await store.listJobs({ stack, status: "running", limit: 500 })) {
    try {
      const message = `${host.orphanReason}; found by ${by}'s unlock`;
      const interrupted = await store.updateJob(job.id, { status: "interrupted", finishedAt: new Date().toISOString(), error: { code: "interrupted", message } }, { ifStatus: "running" });
      host.ended(interrupted);
    } catch (err) {
      if (!(err instanceof ConflictError)) throw err;
    }
  }
  return clearedLease;
}

/** Clears the stack's blocked flag; says whether it was set, and why. */
async function clearBlocked(store: Store, stack: string): Promise<{ wasBlocked: boolean; reason?: string }> {
  const state = await store.getStackState(stack);
  const wasBlocked = state.blockedReason !== undefined;
  if (wasBlocked) await store.setStackState(stack, { blockedReason: null, blockedJobId: null, blockedAt: null });
  return { wasBlocked, ...(wasBlocked ? { reason: state.blockedReason } : {}) };
}

/** Why the lease's holder is gone, or undefined when it may be alive. */
async function holderGone(host: UnlockHost, lease: Lease): Promise<string | undefined> {
  if (lease.owner === host.owner) return "held by this process, which runs nothing on the stack";
  if (lease.jobId !== undefined) {
    const job = await host.store.getJob(lease.jobId);
    if (!job || TERMINAL_STATUSES.has(job.status)) return `its job ${lease.jobId} has ended`;
  }
  if (holderIsDead(lease.owner)) return `its holder ${lease.owner} no longer runs on this host`;
  return undefined;
}
