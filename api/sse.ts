/**
 * A job's events as Server-Sent Events: first what the store holds after `Last-Event-ID`, then the
 * live events as the queue publishes them, then one `end` event with the finished job, and the stream
 * closes. Each event goes out as
 *
 *   id: <seq>
 *   event: <type>
 *   data: <the event as JSON>
 *
 * The live subscription is taken before the replay is read, and everything is de-duplicated by seq,
 * so an event published while the replay is being written is neither lost nor sent twice. A comment
 * line (`: keep-alive`) every heartbeat keeps proxies from closing an idle stream; on each heartbeat
 * the job's row is also re-read, so a job ended by another process (a CLI run, crash recovery) still
 * ends the stream.
 *
 * A job running in another replica has no live events here: when the store announces changes
 * (`Store.watch`, PostgreSQL), its stream follows them instead (sse-follow.ts): an announced event
 * is read from the store in the same ordered chain, and a terminal status finishes the stream; the
 * heartbeat then also reads what an announcement lost on the way may have left unsent.
 *
 * A stream lives across the job's phases (plan, the wait for approval, apply). A slow client that
 * lets more than 1 MiB of live events pile up unread is dropped rather than buffered without bound:
 * it resumes with its Last-Event-ID. A principal has at most `maxPerPrincipal` open streams (429 beyond), and a
 * reload of the tokens closes the streams of tokens that were revoked.
 */
import { EventEmitter } from "events";
import type { Request, Response } from "express";
import type { JobQueue } from "../automation/jobs/queue";
import type { JobEvent as OperationEvent } from "../automation/operations/context";
import { TERMINAL_STATUSES, type Job, type Store } from "../automation/store";
import { RateLimitedError } from "./errors";
import { presentJob } from "./present";
import { StoreFollowers } from "./sse-follow";

export const DEFAULT_HEARTBEAT_MS = 15_000;
export const DEFAULT_MAX_STREAMS_PER_PRINCIPAL = 20;
/** Unread bytes a live stream may have queued before its client counts as too slow. */
export const MAX_BUFFERED_BYTES = 1024 * 1024;

export interface EventStreamsOptions {
  readonly store: Store;
  readonly queue: Pick<JobQueue, "subscribe" | "on" | "off"> & Partial<Pick<JobQueue, "runningJobIds">>;
  /** Default 15 s. */
  readonly heartbeatMs?: number;
  /** Open streams one principal may hold at once. Default 20. */
  readonly maxPerPrincipal?: number;
  /** A store watch that could not start, or a job that could not be read after an announcement. */
  readonly onError?: (err: unknown) => void;
}

/** Emits `opened` and `closed` (with the job id) as streams come and go. */
export class EventStreams extends EventEmitter<{ opened: [jobId: string]; closed: [jobId: string] }> {
  private readonly closers = new Set<() => void>();
  private readonly byPrincipal = new Map<string, Set<() => void>>();
  private readonly heartbeatMs: number;
  private readonly followers: StoreFollowers;
  readonly maxPerPrincipal: number;

  constructor(private readonly options: EventStreamsOptions) {
    super();
    this.heartbeatMs = options.heartbeatMs ?? DEFAULT_HEARTBEAT_MS;
    this.maxPerPrincipal = options.maxPerPrincipal ?? DEFAULT_MAX_STREAMS_PER_PRINCIPAL;
    this.followers = new StoreFollowers({ store: options.store, runsHere: (jobId) => this.runsHere(jobId), onError: options.onError });
  }

  /** Whether the job runs in this process (then its live events come from the queue). */
  private runsHere(jobId: string): boolean {
    return this.options.queue.runningJobIds?.().includes(jobId) ?? false;
  }

  /** Throws RateLimitedError (429) when `principal` already holds its cap of open streams. */
  assertCanOpen(principal: string): void {
    const open = this.byPrincipal.get(principal)?.size ?? 0;
    if (open >= this.maxPerPrincipal) {
      throw new RateLimitedError(`${principal} has ${open} open event streams, the cap per principal (${this.maxPerPrincipal}); close one first`, { retryAfterSeconds: 5 });
    }
  }

  /** Ends the streams of principals `keep` says no longer exist (a token revoked by a reload). */
  closeRevoked(keep: (principal: string) => boolean): number {
    let closed = 0;
    for (const [principal, closers] of [...this.byPrincipal]) {
      if (keep(principal)) continue;
      for (const close of [...closers]) {
        close();
        closed++;
      }
    }
    return closed;
  }

  /** Open streams (for tests and shutdown). */
  get size(): number {
    return this.closers.size;
  }

  /** Ends every open stream (shutdown): clients reconnect elsewhere with their Last-Event-ID. Stops watching the store. */
  closeAll(): void {
    for (const close of [...this.closers]) close();
    this.followers.stop().catch((err: unknown) => this.options.onError?.(err));
  }

  /** Streams `job`'s events after seq `afterSeq` to `res` until the job ends or the client goes. */
  stream(job: Job, afterSeq: number, req: Request, res: Response, principal = "anonymous"): void {
    const { store, queue } = this.options;
    this.assertCanOpen(principal);
    res.writeHead(200, {
      "Content-Type": "text/event-stream; charset=utf-8",
      "Cache-Control": "no-cache",
      "X-Accel-Buffering": "no",
      Connection: "keep-alive",
    });
    res.flushHeaders();
    req.socket.setNoDelay(true);
    req.socket.setTimeout(0);

    let lastSent = afterSeq;
    let ended = false;
    // Everything the stream writes runs in order, one step at a time: reads from the store are
    // asynchronous, and a live event must not overtake the stored ones read before it.
    let steps: Promise<void> = Promise.resolve();
    const inOrder = (step: () => Promise<void> | void) => {
      steps = steps.then(() => (ended ? undefined : step())).catch(() => close());
    };

    const send = (seq: number, type: string, data: unknown) => {
      if (seq <= lastSent || ended) return;
      lastSent = seq;
      res.write(`id: ${seq}\nevent: ${sseToken(type)}\ndata: ${JSON.stringify(data)}\n\n`);
    };
    /** Sends whatever the store has that was not sent yet (events stored before the live ones arrived). */
    const catchUp = async () => {
      for (const e of await store.listEvents(job.id, { afterSeq: lastSent })) send(e.seq, e.type, e.data);
    };
    const finish = async (done: Job) => {
      await catchUp();
      if (ended) return;
      res.write(`event: end\ndata: ${JSON.stringify(presentJob(done))}\n\n`);
      close();
    };
    const finishIfOver = async () => {
      const current = await store.getJob(job.id);
      if (current && TERMINAL_STATUSES.has(current.status)) await finish(current);
    };
    const onLive = (seq: number, event: OperationEvent) =>
      inOrder(async () => {
        // A gap means an event was stored but not published to us (the replay, or never expected): read it back.
        if (seq > lastSent + 1) await catchUp();
        send(seq, event.type, event);
        // Backpressure: a client that lets more than MAX_BUFFERED_BYTES pile up unread is dropped
        // rather than buffered without bound; it resumes from its Last-Event-ID.
        if (res.writableLength > MAX_BUFFERED_BYTES) close();
      });
    const onDone = (done: Job) => {
      if (done.id === job.id) inOrder(() => finish(done));
    };
    const following = this.followers.enabled;
    const heartbeat = setInterval(() => {
      res.write(": keep-alive\n\n");
      if (following && !this.runsHere(job.id)) inOrder(catchUp);
      inOrder(finishIfOver);
    }, this.heartbeatMs);
    heartbeat.unref();

    // Subscribed (to the queue and the store) before the replay is read: an event published
    // meanwhile waits behind it (and is skipped if the replay had it).
    const unsubscribe = queue.subscribe(job.id, onLive);
    queue.on("job:done", onDone);
    const followed = this.followers.follow(job.id, {
      events: (events) =>
        inOrder(async () => {
          // Events before the first ones that this stream has not sent (its replay still reading): its own read.
          if (events[0].seq > lastSent + 1) await catchUp();
          for (const e of events) send(e.seq, e.type, e.data);
          if (res.writableLength > MAX_BUFFERED_BYTES) close();
        }),
      finished: (done) => inOrder(() => finish(done)),
    });
    const close = () => {
      if (ended) return;
      ended = true;
      clearInterval(heartbeat);
      unsubscribe();
      followed.unfollow();
      queue.off("job:done", onDone);
      this.closers.delete(close);
      const mine = this.byPrincipal.get(principal);
      mine?.delete(close);
      if (mine?.size === 0) this.byPrincipal.delete(principal);
      res.end();
      this.emit("closed", job.id);
    };
    this.closers.add(close);
    let mine = this.byPrincipal.get(principal);
    if (!mine) this.byPrincipal.set(principal, (mine = new Set()));
    mine.add(close);
    this.emit("opened", job.id);
    // The response's close is the connection's (or the stream's end): the request's may come early.
    res.on("close", close);
    res.on("error", close);

    inOrder(() => followed.ready);
    inOrder(catchUp);
    inOrder(finishIfOver);
  }
}

/** An SSE event name: one line, no spaces (event types are identifiers already; this is a guard). */
function sseToken(type: string): string {
  return type.replace(/[^A-Za-z0-9_.:-]/g, "_") || "message";
}
