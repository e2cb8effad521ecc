/**
 * The admin unlock's work on the store (JobQueue.unlock / unlockAndRecover reserve the stack in the
 * queue first, so that nothing is dispatched on it meanwhile): clearing a lease whose holder is gone,
 * recording as interrupted the jobs such a holder left `running`, and clearing the blocked flag.
 */
import { ConflictError } from "../errors";
import { TERMINAL_STATUSES, type Job, type Lease, type Store } from "../store";
import { holderIsDead } from "./lease";

/** The queue, as the unlock sees it. */
export interface UnlockHost {
  readonly store: Store;
  /** This process's lease owner id. */
  readonly owner: string;
  /** The message a job left running by a vanished holder is interrupted with (queue.ts's ORPHAN_REASON). */
  readonly orphanReason: string;
  /** A job the unlock ended (its `job:done`). */
  ended(job: Job): void;
}

/** Clears the stack's lease (refused while its holder may be alive) and the running jobs nobody answers for; returns the lease it cleared. */
export async function clearHolds(host: UnlockHost, stack: string, by: string): Promise<Lease | undefined> {
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
export async function clearBlocked(store: Store, stack: string): Promise<{ wasBlocked: boolean; reason?: string }> {
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
