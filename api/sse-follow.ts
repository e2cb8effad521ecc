/**
 * Event streams of jobs that run in another replica: one `Store.watch` per EventStreams, shared by
 * every stream, routes the store's announcements of a job to the streams that follow it (a map job
 * id → followers). An announced event is read once per job, whatever the number of its streams, and
 * handed to each (at most one read per job at a time; announcements meanwhile make one more). A job that runs in this process is left to the queue's live events (no second
 * read of what the queue already publishes). The watch starts with the first stream and stops with
 * `stop()` (EventStreams.closeAll); a store without `watch` (SQLite) follows nothing, and streams
 * keep only their heartbeat.
 *
 * Announcements can be lost (a dropped LISTEN connection): the streams' heartbeat still re-reads.
 */
import { TERMINAL_STATUSES, type Job, type JobEvent, type Store, type StoreChange } from "../automation/store";

/** What a stream does when the store announces a change of its job (each call queues a step in its chain). */
export interface Follower {
  /** Events committed, in seq order (a stream that misses some before the first reads them itself). */
  events(events: readonly JobEvent[]): void;
  /** The job reached a terminal status (read once for all its followers). */
  finished(job: Job): void;
}

export interface StoreFollowersOptions {
  readonly store: Pick<Store, "watch" | "getJob" | "listEvents">;
  /** Whether the job runs in this process (its events come from the queue). */
  readonly runsHere: (jobId: string) => boolean;
  /** A watch that could not start, or a job that could not be read. */
  readonly onError?: (err: unknown) => void;
}

export class StoreFollowers {
  private readonly byJob = new Map<string, Set<Follower>>();
  /** Per followed job: the last seq read for its followers, and whether a read runs (and must run again). */
  private readonly reads = new Map<string, { after: number; reading: boolean; again: boolean }>();
  private watching?: Promise<(() => Promise<void>) | undefined>;

  constructor(private readonly options: StoreFollowersOptions) {}

  /** Whether the store announces changes at all. */
  get enabled(): boolean {
    return this.options.store.watch !== undefined;
  }

  /**
   * Routes the changes of `jobId` to `follower` until `unfollow` is called. `ready` resolves once the
   * store is watched (or the watch failed: then the stream keeps its heartbeat), so a stream that
   * reads its replay after it misses nothing committed meanwhile.
   */
  follow(jobId: string, follower: Follower): { ready: Promise<void>; unfollow: () => void } {
    let set = this.byJob.get(jobId);
    if (!set) this.byJob.set(jobId, (set = new Set()));
    set.add(follower);
    const unfollow = () => {
      const current = this.byJob.get(jobId);
      current?.delete(follower);
      if (current?.size === 0) {
        this.byJob.delete(jobId);
        this.reads.delete(jobId);
      }
    };
    return { ready: this.start().then(() => undefined), unfollow };
  }

  /** Stops watching (a later `follow` starts again). */
  async stop(): Promise<void> {
    const watching = this.watching;
    this.watching = undefined;
    const unsubscribe = await watching;
    await unsubscribe?.();
  }

  private start(): Promise<(() => Promise<void>) | undefined> {
    const watch = this.options.store.watch?.bind(this.options.store);
    if (watch === undefined) return Promise.resolve(undefined);
    const watching = (this.watching ??= watch((change) => this.onChange(change)).catch((err: unknown) => {
      this.options.onError?.(err);
      if (this.watching === watching) this.watching = undefined; // the next stream tries again
      return undefined;
    }));
    return watching;
  }

  private onChange(change: StoreChange): void {
    if (change.kind === "lease") return;
    if (!this.byJob.has(change.jobId) || this.options.runsHere(change.jobId)) return;
    if (change.kind === "event") {
      this.read(change.jobId, change.seq);
    } else if (TERMINAL_STATUSES.has(change.status)) {
      this.options.store
        .getJob(change.jobId)
        .then((job) => {
          if (job) for (const f of [...(this.byJob.get(change.jobId) ?? [])]) f.finished(job);
        })
        .catch((err: unknown) => this.options.onError?.(err));
    }
  }

  /** Reads what was committed after the last read of `jobId` (or from `seq`) once, for all its followers. */
  private read(jobId: string, seq: number): void {
    let state = this.reads.get(jobId);
    if (!state) this.reads.set(jobId, (state = { after: seq - 1, reading: false, again: false }));
    if (seq <= state.after) return;
    if (state.reading) {
      state.again = true;
      return;
    }
    const current = state;
    current.reading = true;
    current.again = false;
    this.options.store
      .listEvents(jobId, { afterSeq: current.after })
      .then((events) => {
        if (events.length > 0) current.after = events[events.length - 1].seq;
        if (events.length > 0) for (const f of [...(this.byJob.get(jobId) ?? [])]) f.events(events);
      })
      .catch((err: unknown) => this.options.onError?.(err))
      .finally(() => {
        current.reading = false;
        if (current.again && this.reads.get(jobId) === current) this.read(jobId, current.after + 1);
      });
  }
}
