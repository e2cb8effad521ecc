/**
 * What asks the queue (queue.ts) for a dispatch pass besides its own events (a submit, a job's end,
 * an unlock, an approval), all of it through the queue's coalescing `kick()`:
 *
 * - the lease retry: one unref'd timer, armed for the earliest time a stack that was skipped (its
 *   lease held elsewhere, or taken under us) may be tried again;
 * - the poll, on a store several replicas share: every `pollIntervalMs` while this process has a free
 *   slot, so that a job queued through another replica (one whose slots are full, or one that died)
 *   runs here. A pass that finds nothing queued costs one query (`dispatchableStacks`);
 * - the store's change feed (`Store.watch`, where the store has one): a job queued (anew, or again
 *   after its approval), an approval wait that ended, or a lease released by any replica asks for a
 *   pass at once instead of at the next poll or retry. A change is a hint: the pass reads the store,
 *   and the poll covers a notification that was lost.
 *
 * Every timer is unref'd; `stop()` clears them and stops watching. Failures (the watch could not
 * start, a listener threw) go to `report`, never to the caller.
 */
import type { JobStatus, Store, StoreChange } from "../store";

/** The queue, as the wake-ups see it. */
export interface WakeupHost {
  readonly store: Store;
  /** Asks for a dispatch pass (coalesced; a no-op once the queue is stopped). */
  kick(): void;
  /** Whether a pass could start a job here now (a slot is free). */
  hasFreeSlot(): boolean;
  /** A stack's lease was released (by any process): whatever backoff this process keeps for it is over. */
  leaseReleased(stack: string): void;
  report(error: Error): void;
}

/** Whether the store announces changes (`Store.watch`): a store several processes share. */
export function canWatch(store: Store): store is Store & Required<Pick<Store, "watch">> {
  return "watch" in store && typeof store.watch === "function";
}

/** Job statuses whose announcement may make a job runnable: queued, or the end of a wait that held its stack's mutations. */
const WAKING_STATUSES: ReadonlySet<JobStatus> = new Set<JobStatus>(["queued", "rejected", "canceled"]);

export class DispatchWakeups {
  private retryTimer?: NodeJS.Timeout;
  private retryAt = Infinity;
  private pollTimer?: NodeJS.Timeout;
  /** The watch once asked for: resolves to its unsubscribe (undefined when it failed). */
  private watching?: Promise<(() => Promise<void>) | undefined>;
  private active = false;

  constructor(
    private readonly host: WakeupHost,
    /** 0: no poll (a store only this process uses). */
    readonly pollIntervalMs: number,
  ) {}

  /** Whether the store is polled (shared with other replicas). */
  get polling(): boolean {
    return this.pollIntervalMs > 0;
  }

  /** Starts the poll and the watch (idempotent). */
  start(): void {
    if (this.active) return;
    this.active = true;
    if (this.polling) {
      this.pollTimer = setInterval(() => {
        if (this.host.hasFreeSlot()) this.host.kick();
      }, this.pollIntervalMs);
      this.pollTimer.unref();
    }
    const store = this.host.store;
    if (canWatch(store)) {
      this.watching = store.watch((change) => this.changed(change)).catch((err: unknown) => {
        this.host.report(new Error("could not watch the store for changes; other replicas' jobs are found by the poll only", { cause: err }));
        return undefined;
      });
    }
  }

  /** A pass at `at` (ms since epoch), unless one is armed sooner already. */
  retry(at: number): void {
    if (!this.active) return;
    if (this.retryTimer && this.retryAt <= at) return;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryAt = at;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.retryAt = Infinity;
      this.host.kick();
    }, Math.max(1, at - Date.now()));
    this.retryTimer.unref();
  }

  /** Clears the timers at once; resolves once the watch is over. Never rejects. */
  stop(): Promise<void> {
    this.active = false;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    this.retryAt = Infinity;
    if (this.pollTimer) clearInterval(this.pollTimer);
    this.pollTimer = undefined;
    const watching = this.watching;
    this.watching = undefined;
    if (!watching) return Promise.resolve();
    return watching.then(async (unwatch) => {
      try {
        await unwatch?.();
      } catch (err) {
        this.host.report(new Error("could not stop watching the store", { cause: err }));
      }
    });
  }

  private changed(change: StoreChange): void {
    if (!this.active) return;
    try {
      if (change.kind === "lease") {
        this.host.leaseReleased(change.stack);
        if (this.host.hasFreeSlot()) this.host.kick();
      } else if (change.kind === "job" && WAKING_STATUSES.has(change.status)) {
        if (this.host.hasFreeSlot()) this.host.kick();
      }
    } catch (err) {
      this.host.report(err instanceof Error ? err : new Error(String(err), { cause: err }));
    }
  }
}
