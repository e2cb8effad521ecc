/**
 * What the queue (queue.ts) does about the jobs nobody runs any more: at startup, those a crashed
 * previous process left `running` (`recover`); while it runs, those of another process that vanished
 * without releasing its lease (the orphan sweep); and the outcomes a job kept on disk when the
 * database would not take them (store/outcomes.ts). Each job it ends gets its `job:done`; the stack of
 * an interrupted mutation is blocked until an admin unlocks it.
 */
import type { Job, Store } from "../store";
import { holderIsDead } from "./lease";
import { markInterrupted } from "./queue-run";
import { asError, type JobEvents } from "./queue-events";

/** The reason recorded on jobs a crashed or stopped process left running. */
export const RECOVERY_REASON = "the deployer stopped while this job was running";
export const SHUTDOWN_REASON = "the deployer shut down while this job was running";
export const ORPHAN_REASON = "the process running this job stopped without finishing it";

/** The queue, as its recovery sees it. */
export interface RecoveryHost {
  readonly store: Store;
  /** This process's lease owner id. */
  readonly owner: string;
  readonly events: JobEvents;
  /** Whether this process runs the job (or is about to). */
  runsHere(jobId: string): boolean;
  /** Whether this process runs a job on the stack, or holds it for an unlock. */
  reservedHere(stack: string): boolean;
}

export class QueueRecovery {
  constructor(private readonly host: RecoveryHost) {}

  /**
   * The crash recovery (JobQueue.recover says when it runs): a lease held by a dead process on this
   * host is reclaimed, then the jobs left `running` by a process that is gone become `interrupted`
   * (with `RECOVERY_REASON`). Returns the jobs it interrupted.
   */
  async recover(): Promise<Job[]> {
    const { store, owner } = this.host;
    await this.applyKeptOutcomes();
    for (const job of await store.listJobs({ status: "running", limit: 500 })) {
      if (this.host.runsHere(job.id)) continue;
      const lease = await store.getLease(job.stack);
      if (lease && lease.owner !== owner && holderIsDead(lease.owner)) {
        await store.releaseLease(lease.stack, lease.owner, lease.token);
      }
    }
    const interrupted = await store.markRunningAsInterrupted(RECOVERY_REASON, { owner });
    for (const job of interrupted) this.host.events.emit("job:done", job);
    return interrupted;
  }

  /** The orphan sweep (JobQueue.sweepOrphans says what it marks); never rejects. */
  async sweep(): Promise<Job[]> {
    const { store } = this.host;
    const interrupted: Job[] = [];
    await this.applyKeptOutcomes();
    try {
      for (const job of await store.listJobs({ status: "running", limit: 500 })) {
        if (this.host.runsHere(job.id) || this.host.reservedHere(job.stack) || (await store.getLease(job.stack))) continue;
        const marked = await this.interruptOrphan(job);
        if (marked) interrupted.push(marked);
      }
    } catch (err) {
      this.host.events.emit("job:error", "", asError(err));
    }
    return interrupted;
  }

  /**
   * Marks `interrupted` (CAS on `running`) a job nobody runs, blocks its stack if it was a mutation,
   * and emits its `job:done`; undefined when it ended otherwise meanwhile.
   */
  async interruptOrphan(job: Job): Promise<Job | undefined> {
    const marked = await markInterrupted(this.host.store, { jobId: job.id, operation: job.operation, stack: job.stack }, ORPHAN_REASON);
    if (!marked) return undefined;
    this.host.events.emit("job:done", marked);
    return marked;
  }

  /** Writes the outcomes kept on disk (store/outcomes.ts) to their jobs; each one written ends its job. */
  async applyKeptOutcomes(): Promise<void> {
    try {
      for (const job of await this.host.store.applyKeptOutcomes()) this.host.events.emit("job:done", job);
    } catch (err) {
      this.host.events.emit("job:error", "", asError(err));
    }
  }
}
