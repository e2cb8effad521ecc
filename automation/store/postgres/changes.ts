/**
 * `Store.watch` on PostgreSQL: LISTEN/NOTIFY on one channel.
 *
 * Writers announce a change in the statement that makes it (`notifySql`: a `pg_notify` call in the
 * statement's own SELECT, so no round trip of its own) or, inside a longer transaction, with
 * `notifyChange`. Either way the notification is delivered when (and only if) the change commits,
 * and notifications of different transactions arrive in commit order (one job's events, serialized
 * by the job's row lock, arrive in seq order). The payload is the `StoreChange` as JSON: ids and a
 * stack name, far below NOTIFY's 8000-byte limit.
 *
 * Readers: one `ChangeFeed` per store holds one dedicated connection (not from the pool) that
 * LISTENs for every listener of the store. It opens on the first `watch` and closes on the last
 * unsubscribe (or the store's close). When that connection drops it is reopened with backoff, and
 * listening resumes; whatever was committed in between is not delivered, which is why every consumer
 * also polls the tables (`StoreChange` is a hint, not the record).
 */
import type { Client, Notification } from "pg";
import { JOB_STATUSES, type JobStatus, type StoreChange } from "../types";
import type { Db, Queryable } from "./db";

export const CHANGES_CHANNEL = "deployer_changes";
/** The LISTEN connection's `application_name` (how an operator, or a test, finds it in pg_stat_activity). */
export const LISTEN_APPLICATION_NAME = "pulumi-aws-deployer (listen)";

/** Queues `change` for delivery when the caller's transaction commits. */
export async function notifyChange(tx: Queryable, change: StoreChange): Promise<void> {
  await tx.query(`SELECT ${notifySql(1)}`, [changePayload(change)]);
}

/** The SQL that announces the change whose payload (`changePayload`) is the statement's parameter `$param`. */
export function notifySql(param: number): string {
  return `pg_notify('${CHANGES_CHANNEL}', $${param})`;
}

export function changePayload(change: StoreChange): string {
  return JSON.stringify(change);
}

/** A payload as a StoreChange, or undefined when it is not one (another writer on the channel). */
export function parseChange(payload: string | undefined): StoreChange | undefined {
  let v: unknown;
  try {
    v = JSON.parse(payload ?? "");
  } catch {
    return undefined;
  }
  if (typeof v !== "object" || v === null) return undefined;
  const c = v as Record<string, unknown>;
  const str = (x: unknown): x is string => typeof x === "string" && x !== "";
  if (c.kind === "event" && str(c.jobId) && Number.isInteger(c.seq)) return { kind: "event", jobId: c.jobId, seq: c.seq as number };
  if (c.kind === "job" && str(c.jobId) && str(c.stack) && JOB_STATUSES.includes(c.status as JobStatus)) {
    return { kind: "job", jobId: c.jobId, stack: c.stack, status: c.status as JobStatus };
  }
  if (c.kind === "lease" && str(c.stack)) return { kind: "lease", stack: c.stack };
  return undefined;
}

export interface ChangeFeedOptions {
  /** A listener that threw, or the LISTEN connection that failed (then: reconnecting). Default: a process warning. */
  readonly onError?: (err: unknown, what: "listener" | "connection") => void;
  /** Reconnect backoff: first delay and cap (default 200 ms doubling up to 10 s, with jitter). */
  readonly reconnectMs?: { readonly initial: number; readonly max: number };
}

type Listener = (change: StoreChange) => void;

export class ChangeFeed {
  /** One entry per watch (the same function may watch twice). */
  private readonly listeners = new Set<{ readonly fn: Listener }>();
  private client?: Client;
  /** The connect in progress, if any. */
  private opening?: Promise<void>;
  /** Set from a drop until the connection is back. */
  private reconnecting = false;
  private retryTimer?: NodeJS.Timeout;
  private retries = 0;
  /** Bumped by stop(): a connection opened for an earlier generation is discarded. */
  private generation = 0;
  private closed = false;
  private readonly onError: NonNullable<ChangeFeedOptions["onError"]>;
  private readonly backoff: NonNullable<ChangeFeedOptions["reconnectMs"]>;

  constructor(
    private readonly db: Db,
    options: ChangeFeedOptions = {},
  ) {
    this.onError =
      options.onError ??
      ((err, what) => process.emitWarning(`store change feed: ${what === "listener" ? "a listener threw" : "the LISTEN connection failed, reconnecting"}: ${String(err)}`));
    this.backoff = options.reconnectMs ?? { initial: 200, max: 10_000 };
  }

  /**
   * Store.watch. Resolves once the feed listens; while a dropped connection is being reopened it
   * resolves at once (changes resume when it is back). Rejects (StoreUnavailableError) when the
   * first connection cannot be made.
   */
  async watch(fn: Listener): Promise<() => Promise<void>> {
    if (this.closed) throw new Error("the store is closed");
    const entry = { fn };
    this.listeners.add(entry);
    const unsubscribe = async () => {
      if (!this.listeners.delete(entry)) return;
      if (this.listeners.size === 0) await this.stop();
    };
    try {
      await this.listening();
    } catch (err) {
      await unsubscribe();
      throw err;
    }
    return unsubscribe;
  }

  /** Stops listening for good (the store's close). */
  async close(): Promise<void> {
    this.closed = true;
    this.listeners.clear();
    await this.stop();
  }

  private listening(): Promise<void> {
    if (this.client !== undefined || this.reconnecting) return Promise.resolve();
    return (this.opening ??= this.open());
  }

  private async open(): Promise<void> {
    const generation = this.generation;
    const client = this.db.dedicatedClient(LISTEN_APPLICATION_NAME);
    // Listeners first: an unheard "error" would crash the process.
    client.on("error", (err) => this.dropped(client, err));
    client.on("end", () => this.dropped(client, new Error("connection ended")));
    client.on("notification", (msg) => this.deliver(msg));
    try {
      await client.connect();
      await client.query(`LISTEN ${CHANGES_CHANNEL}`);
    } catch (err) {
      await client.end().catch(() => undefined);
      throw this.db.translate(err);
    } finally {
      if (generation === this.generation) this.opening = undefined;
    }
    if (generation !== this.generation) {
      await client.end().catch(() => undefined); // stopped while connecting
      return;
    }
    this.client = client;
    this.reconnecting = false;
    this.retries = 0;
  }

  private dropped(client: Client, err: unknown): void {
    if (client !== this.client) return;
    this.client = undefined;
    void client.end().catch(() => undefined);
    this.onError(err, "connection");
    this.reconnecting = true;
    this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    if (this.closed || this.listeners.size === 0 || this.retryTimer !== undefined) return;
    const base = Math.min(this.backoff.max, this.backoff.initial * 2 ** this.retries++);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      (this.opening ??= this.open()).catch((err: unknown) => {
        this.onError(err, "connection");
        this.scheduleReconnect();
      });
    }, base * (0.75 + Math.random() * 0.5));
    this.retryTimer.unref();
  }

  private async stop(): Promise<void> {
    this.generation++;
    this.opening = undefined;
    this.reconnecting = false;
    this.retries = 0;
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    const client = this.client;
    this.client = undefined;
    await client?.end().catch(() => undefined);
  }

  private deliver(msg: Notification): void {
    if (msg.channel !== CHANGES_CHANNEL) return;
    const change = parseChange(msg.payload);
    if (change === undefined) return;
    for (const { fn } of [...this.listeners]) {
      try {
        const result = fn(change) as unknown;
        if (result instanceof Promise) result.catch((err: unknown) => this.onError(err, "listener"));
      } catch (err) {
        this.onError(err, "listener");
      }
    }
  }
}
