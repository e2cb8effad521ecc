/**
 * The queue's dispatch (queue.ts holds the slots and the stacks it reserves; queue-run.ts runs each
 * job it starts): a pass over the stacks with queued jobs that picks each one's next runnable job,
 * rollbacks and production mutations first when slots are short, and launches as many as there are
 * free slots. Passes are asked for with the coalescing `kick()`; one runs at a time. A stack whose
 * lease is held elsewhere, or was taken under us, waits (its backoff) for the wake-ups' retry
 * (queue-wakeups.ts).
 */
import type { Environment } from "../environment";
import { MUTATING_OPERATIONS, type DispatchableStack, type QueuedJobRef, type Store } from "../store";
import type { QueueApprovals } from "./queue-approvals";
import { asError, type JobEvents } from "./queue-events";
import type { Running } from "./queue-run";
import type { DispatchWakeups } from "./queue-wakeups";

/** The queue, as its dispatch sees it. */
export interface DispatchHost {
  readonly store: Store;
  /** This process's lease owner id. */
  readonly owner: string;
  readonly maxConcurrent: number;
  /** How long a stack whose lease is held elsewhere waits before it is tried again. */
  readonly leaseRetryMs: number;
  /** The jobs this process runs (or is about to), by id. */
  readonly running: Map<string, Running>;
  /** The stacks this process has reserved: stack → the id of the job running there (or an unlock's marker). */
  readonly runningStacks: Map<string, string>;
  readonly approvals: QueueApprovals;
  readonly wakeups: DispatchWakeups;
  readonly events: JobEvents;
  /** False before `start()` and once shutting down: nothing is dispatched. */
  started(): boolean;
  load(stack: string): Environment;
  /** Runs a launched job (queue-run.ts); never rejects for the job's own failure. */
  run(entry: Running, job: QueuedJobRef): Promise<void>;
  /** Keeps track of a background task until it settles (shutdown waits for it). */
  inBackground(task: Promise<unknown>): void;
}

export class Dispatcher {
  /** Stacks whose lease was taken under us between the check and the acquire: not before this time. */
  private readonly leaseBackoff = new Map<string, number>();
  private dispatching = false;
  private dispatchAgain = false;
  private dispatchScheduled = false;

  constructor(private readonly host: DispatchHost) {}

  /** Asks for a dispatch pass soon (coalesced: many submits in one tick make one pass). */
  kick(): void {
    if (!this.host.started() || this.dispatchScheduled) return;
    this.dispatchScheduled = true;
    queueMicrotask(() => {
      this.dispatchScheduled = false;
      this.host.inBackground(this.dispatch());
    });
  }

  /** The stack's next dispatch waits `leaseRetryMs`. */
  retryLater(stack: string): void {
    this.leaseBackoff.set(stack, Date.now() + this.host.leaseRetryMs);
    this.host.wakeups.retry(Date.now() + this.host.leaseRetryMs);
  }

  /** The stack's lease was released, or the stack unlocked: whatever backoff it had is over. */
  clearBackoff(stack: string): void {
    this.leaseBackoff.delete(stack);
  }

  /**
   * The job no longer counts as running here (before `job:done`, so its listeners see the stack free).
   * Its subscribers stay: a job that ends its plan phase goes on (approvals, the apply phase), and a
   * subscriber unsubscribes itself when the job ends.
   */
  forget(entry: Running): void {
    const { running, runningStacks } = this.host;
    if (running.get(entry.jobId) === entry) running.delete(entry.jobId);
    if (runningStacks.get(entry.stack) === entry.jobId) runningStacks.delete(entry.stack);
  }

  /**
   * Starts what may start now. One pass at a time: a pass awaits the store between counting the
   * slots, choosing the jobs and reserving them, so a second pass meanwhile could choose the same job
   * or slot; asked for while one runs, another pass follows it. Never rejects; a failure is reported
   * as `job:error`.
   */
  private async dispatch(): Promise<void> {
    if (!this.host.started()) return;
    if (this.dispatching) {
      this.dispatchAgain = true;
      return;
    }
    this.dispatching = true;
    try {
      do {
        this.dispatchAgain = false;
        await this.dispatchOnce();
      } while (this.dispatchAgain && this.host.started());
    } catch (err) {
      this.host.events.emit("job:error", "", asError(err));
    } finally {
      this.dispatching = false;
    }
  }

  private async dispatchOnce(): Promise<void> {
    const { store, running, runningStacks, maxConcurrent } = this.host;
    if (running.size >= maxConcurrent) return;
    const now = Date.now();
    let waitUntil = Infinity;
    // Every stack with queued jobs, with its lease, its block and its next jobs: one query, all a pass
    // reads of the store but the approval waits (the poll of a shared store runs this every second).
    const open: DispatchableStack[] = [];
    for (const s of await store.dispatchableStacks()) {
      if (runningStacks.has(s.stack)) continue;
      const backoff = this.leaseBackoff.get(s.stack);
      if (backoff !== undefined) {
        if (backoff > now) {
          waitUntil = Math.min(waitUntil, backoff);
          continue;
        }
        this.leaseBackoff.delete(s.stack);
      }
      if (s.lease && s.lease.owner !== this.host.owner) {
        // A CLI run or another replica holds the stack: try again when it may have let go.
        const retryAt = Math.min(now + this.host.leaseRetryMs, Date.parse(s.lease.expiresAt) + 1);
        waitUntil = Math.min(waitUntil, retryAt);
        // Polled (a shared store): the polls skip the stack until then; its release, announced by the
        // store, ends the wait at once.
        if (this.host.wakeups.polling) this.leaseBackoff.set(s.stack, retryAt);
        continue;
      }
      open.push(s);
    }
    const candidates: QueuedJobRef[] = [];
    // An approval wait that is over releases the mutations queued behind it; one that is not holds
    // them. Where no open stack has one, there is nothing to read (waits elsewhere expire on the timer).
    const waiting = open.some((s) => s.awaitingApproval) ? (await this.host.approvals.expireDue()).waiting : new Set<string>();
    for (const s of open) {
      const next = runnableOf(s, waiting.has(s.stack));
      if (next) candidates.push(next);
    }
    const free = maxConcurrent - running.size;
    // When slots are short: rollbacks and mutations of production stacks first, then the others in
    // FIFO order (by id).
    if (candidates.length > free) {
      const rank = new Map(candidates.map((j) => [j.id, this.priorityOf(j)]));
      candidates.sort((a, b) => rank.get(b.id)! - rank.get(a.id)! || (a.id < b.id ? -1 : 1));
    }
    // No await from here on: the slots, the stacks and `started` are checked as each job is reserved.
    // A stack reserved meanwhile (an unlock) is skipped. The run reads the job under the stack's lease:
    // one that left `queued` meanwhile is not claimed, and the pass that follows its run fills the slot.
    for (const next of candidates.slice(0, free)) {
      if (!this.host.started() || running.size >= maxConcurrent) break;
      if (runningStacks.has(next.stack)) continue;
      this.launch(next);
    }
    if (waitUntil !== Infinity) this.host.wakeups.retry(waitUntil);
  }

  /** 1 for a rollback or a mutation of a production stack (dispatched first when slots are short), else 0. */
  private priorityOf(job: QueuedJobRef): number {
    if (job.operation === "rollback") return 1;
    if (!MUTATING_OPERATIONS.has(job.operation)) return 0;
    try {
      return this.host.load(job.stack).settings.production ? 1 : 0;
    } catch {
      return 0;
    }
  }

  /** Reserves a slot and the stack for the job, then runs it in the background. */
  private launch(job: QueuedJobRef): void {
    const entry: Running = {
      jobId: job.id,
      stack: job.stack,
      operation: job.operation,
      controller: new AbortController(),
      claimed: false,
      forced: false,
      interruptedByShutdown: false,
      abandoned: false,
      done: Promise.resolve(),
    };
    this.host.running.set(job.id, entry);
    this.host.runningStacks.set(job.stack, job.id);
    entry.done = this.host
      .run(entry, job)
      .catch((err) => this.host.events.emit("job:error", job.id, asError(err)))
      .finally(() => {
        this.forget(entry);
        this.kick();
      });
  }
}

/**
 * The stack's job that may run now: its oldest queued job, or, on a stack that is blocked or has a
 * job awaiting approval (FIFO: its mutations wait behind that one), its oldest preview or drift check.
 */
export function runnableOf(stack: DispatchableStack, awaitingApproval: boolean): QueuedJobRef | undefined {
  return awaitingApproval || stack.blocked ? stack.nextNonMutating : stack.next;
}
