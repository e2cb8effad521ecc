/**
 * What the queue (queue.ts) tells the world: its typed `QueueEvents`, emitted so that a listener's
 * throw never reaches a job or the dispatch loop, and each job's live events, to the `job:event`
 * listeners and to the job's own subscribers. Events go to the store and to live subscribers, never
 * into a buffer here.
 */
import type { EventEmitter } from "events";
import { scrubEvent } from "../operations/context";
import type { Job, Store } from "../store";
import type { OperationEvent, QueueEvents } from "./types";

/** The queue, as its event publication sees it. */
export interface EventsHost {
  readonly store: Store;
  /** The queue itself: where `QueueEvents` are emitted. */
  readonly emitter: EventEmitter<QueueEvents>;
  /** While executeJob runs the job here: its event log's `emit`. */
  runningEmit(jobId: string): ((event: OperationEvent) => void) | undefined;
}

export class JobEvents {
  private readonly subscribers = new Map<string, Set<(seq: number, event: OperationEvent) => void>>();

  constructor(private readonly host: EventsHost) {}

  /** Live events of one job (after they were stored); returns the unsubscribe function. */
  subscribe(jobId: string, listener: (seq: number, event: OperationEvent) => void): () => void {
    let set = this.subscribers.get(jobId);
    if (!set) {
      set = new Set();
      this.subscribers.set(jobId, set);
    }
    set.add(listener);
    return () => {
      const current = this.subscribers.get(jobId);
      if (!current) return;
      current.delete(listener);
      if (current.size === 0) this.subscribers.delete(jobId);
    };
  }

  /** Drops the job's subscribers: it will say nothing more. */
  dropSubscribers(jobId: string): void {
    this.subscribers.delete(jobId);
  }

  /** A stored event, to the `job:event` listeners and the job's subscribers; their failures stay theirs. */
  publish(jobId: string, seq: number, event: OperationEvent): void {
    this.emit("job:event", jobId, seq, event);
    const listeners = this.subscribers.get(jobId);
    if (!listeners) return;
    for (const listener of [...listeners]) {
      try {
        listener(seq, event);
      } catch (err) {
        this.emit("job:error", jobId, asError(err));
      }
    }
  }

  /**
   * Stores and publishes a line of the queue's own (a cancel request, an approval) in the job's log;
   * never rejects. While the job runs here, through its own event log, so that the line keeps its
   * place among the operation's events (stored after the ones emitted before it).
   */
  async note(jobId: string, level: "info" | "warning" | "phase", message: string): Promise<void> {
    const event = scrubEvent(level === "phase" ? { type: "phase", phase: "approval", message } : { type: "log", level, message });
    const emit = this.host.runningEmit(jobId);
    if (emit) return emit(event);
    try {
      const { seq } = await this.host.store.appendEvent(jobId, { type: event.type, data: event });
      this.publish(jobId, seq, event);
    } catch (err) {
      this.emit("job:error", jobId, asError(err));
    }
  }

  /** Emits without letting a listener's throw reach the job or the loop. */
  emit<K extends keyof QueueEvents>(event: K, ...args: QueueEvents[K]): void {
    const emitter = this.host.emitter;
    try {
      (emitter.emit as (e: K, ...a: QueueEvents[K]) => boolean).call(emitter, event, ...args);
    } catch (err) {
      if (event === "job:error") return;
      try {
        (emitter.emit as (e: "job:error", ...a: QueueEvents["job:error"]) => boolean).call(
          emitter,
          "job:error",
          typeof args[0] === "string" ? args[0] : ((args[0] as Job | undefined)?.id ?? ""),
          asError(err),
        );
      } catch {
        // a job:error listener that throws has nobody left to tell
      }
    }
  }
}

export function asError(err: unknown): Error {
  if (err instanceof Error) return err;
  return new Error(String(err), { cause: err });
}
