/**
 * An express-rate-limit `Store` on the PostgreSQL store's `rate_limits` table, so that every replica
 * counts against one budget per key (fixed windows, as express-rate-limit's MemoryStore).
 *
 * An increment is one atomic upsert: a key whose window is over starts again at 1 with a new window,
 * otherwise its count goes up; two replicas counting the same key at once queue on its row. Expired
 * rows are deleted now and then (at most once a window per limiter, off the request's path).
 */
import type { ClientRateLimitInfo, Options, Store as RateLimitStore } from "express-rate-limit";
import type { Db } from "./db";

const INCREMENT = `
  INSERT INTO rate_limits (key, hits, reset_at) VALUES ($1, 1, $3::bigint)
  ON CONFLICT (key) DO UPDATE SET
    hits = CASE WHEN rate_limits.reset_at <= $2::bigint THEN 1 ELSE rate_limits.hits + 1 END,
    reset_at = CASE WHEN rate_limits.reset_at <= $2::bigint THEN $3::bigint ELSE rate_limits.reset_at END
  RETURNING hits, reset_at`;

export class PostgresRateLimitStore implements RateLimitStore {
  /** Counts are shared: a key counted here is counted for every replica. */
  readonly localKeys = false;
  private lastPrune = 0;

  constructor(
    private readonly db: Db,
    /** Prepended to every key (one limiter's keys never meet another's). */
    readonly prefix: string,
    private windowMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  init(options: Options): void {
    this.windowMs = options.windowMs;
  }

  async get(key: string): Promise<ClientRateLimitInfo | undefined> {
    const { rows } = await this.db.query<{ hits: number; reset_at: string }>("SELECT hits, reset_at FROM rate_limits WHERE key = $1 AND reset_at > $2::bigint", [
      this.prefix + key,
      this.now(),
    ]);
    return rows[0] === undefined ? undefined : { totalHits: rows[0].hits, resetTime: new Date(Number(rows[0].reset_at)) };
  }

  async increment(key: string): Promise<ClientRateLimitInfo> {
    const now = this.now();
    const { rows } = await this.db.query<{ hits: number; reset_at: string }>(INCREMENT, [this.prefix + key, now, now + this.windowMs]);
    this.pruneNowAndThen(now);
    return { totalHits: rows[0].hits, resetTime: new Date(Number(rows[0].reset_at)) };
  }

  async decrement(key: string): Promise<void> {
    await this.db.query("UPDATE rate_limits SET hits = GREATEST(hits - 1, 0) WHERE key = $1 AND reset_at > $2::bigint", [this.prefix + key, this.now()]);
  }

  async resetKey(key: string): Promise<void> {
    await this.db.query("DELETE FROM rate_limits WHERE key = $1", [this.prefix + key]);
  }

  /** Deletes the rows whose window is over, at most once a window; a failure waits for the next time. */
  private pruneNowAndThen(now: number): void {
    if (now - this.lastPrune < this.windowMs) return;
    this.lastPrune = now;
    this.db.query("DELETE FROM rate_limits WHERE key LIKE $1 AND reset_at <= $2::bigint", [likePrefix(this.prefix), now]).catch(() => undefined);
  }
}

function likePrefix(prefix: string): string {
  return prefix.replace(/[\\%_]/g, (c) => `\\${c}`) + "%";
}
