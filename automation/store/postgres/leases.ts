/**
 * The per-stack lease on PostgreSQL. One row per stack, never deleted, so the fencing token only goes
 * up. Every change is one statement, which holds the stack's row lock until it commits: two replicas
 * racing for a lease queue on that lock, and the second sees the first's committed row, so exactly one
 * wins. An acquisition is an `INSERT … ON CONFLICT DO UPDATE … WHERE` (the first for a stack inserts
 * the row; later ones take it over only where it is free, expired or already the caller's) that
 * answers, when the lease is not to be had, who holds it. A release (or force-release) is announced in
 * its statement (changes.ts).
 */
import { ConflictError } from "../../errors";
import type { AcquireLeaseOptions, Lease } from "../types";
import { changePayload, notifySql } from "./changes";
import type { Db, Queryable } from "./db";
import { leaseConflict } from "../rows";
import { checkOwner, checkTtl, conflictDetails, describeHolder, isLive, rowToLease, toLeaseRow, type LeaseRow } from "./rows";

/**
 * Parameters: stack, owner, now, expiry, job. A live lease ($3) is extended for its own holder (the
 * token, the acquisition time and, without a new one, the job stay); a free or expired one is taken
 * with the next token. Answers the lease taken (`acquired`), or else the row as this statement's
 * snapshot saw it, which names the holder (a lease released meanwhile may show as free: try again).
 */
const ACQUIRE = `WITH acquired AS (
    INSERT INTO leases AS l (stack, owner, token, acquired_at, expires_at, job_id, released_at)
    VALUES ($1, $2, 1, $3, $4, $5, NULL)
    ON CONFLICT (stack) DO UPDATE SET
      owner = EXCLUDED.owner,
      token = CASE WHEN l.released_at IS NULL AND l.expires_at > $3 THEN l.token ELSE l.token + 1 END,
      acquired_at = CASE WHEN l.released_at IS NULL AND l.expires_at > $3 THEN l.acquired_at ELSE EXCLUDED.acquired_at END,
      expires_at = EXCLUDED.expires_at,
      job_id = CASE WHEN l.released_at IS NULL AND l.expires_at > $3 THEN COALESCE(EXCLUDED.job_id, l.job_id) ELSE EXCLUDED.job_id END,
      released_at = NULL
    WHERE NOT (l.released_at IS NULL AND l.expires_at > $3) OR l.owner = EXCLUDED.owner
    RETURNING *
  )
  SELECT true AS acquired, acquired.* FROM acquired
  UNION ALL SELECT false, leases.* FROM leases WHERE stack = $1 AND NOT EXISTS (SELECT 1 FROM acquired)`;
/** Parameters: stack, owner, token, new expiry. Expired but untouched is still the holder's: nobody acquired it since, or the token would have moved. */
const RENEW = "UPDATE leases SET expires_at = $4 WHERE stack = $1 AND owner = $2 AND token = $3 AND released_at IS NULL RETURNING *";
/** Parameters: stack, owner, token, now, the announcement. */
const RELEASE = `WITH released AS (
    UPDATE leases SET released_at = $4 WHERE stack = $1 AND owner = $2 AND token = $3 AND released_at IS NULL RETURNING stack
  ) SELECT ${notifySql(5)} FROM released`;
/** Parameters: stack, now, the announcement. RETURNING gives the lease as it was (all but released_at). */
const FORCE_RELEASE = `WITH released AS (UPDATE leases SET released_at = $2 WHERE stack = $1 AND released_at IS NULL RETURNING *)
  SELECT released.*, ${notifySql(3)} FROM released`;

export class PostgresLeases {
  constructor(
    private readonly db: Db,
    private readonly now: () => number,
  ) {}

  async acquire(stack: string, options: AcquireLeaseOptions): Promise<Lease> {
    checkOwner(options.owner);
    checkTtl(options.ttlMs);
    for (;;) {
      const nowMs = this.now();
      const { rows } = await this.db.query(ACQUIRE, [stack, options.owner, nowMs, nowMs + options.ttlMs, options.jobId ?? null]);
      if (rows[0]?.acquired === true) return rowToLease(toLeaseRow(rows[0]));
      const held = rows[0] === undefined ? undefined : toLeaseRow(rows[0]);
      if (held !== undefined && isLive(held, nowMs) && held.owner !== options.owner) throw leaseConflict(held);
    }
  }

  async renew(stack: string, owner: string, token: number, ttlMs: number): Promise<Lease> {
    checkTtl(ttlMs);
    const nowMs = this.now();
    const { rows } = await this.db.query(RENEW, [stack, owner, token, nowMs + ttlMs]);
    if (rows.length === 1) return rowToLease(toLeaseRow(rows[0]));
    const row = await this.row(stack);
    const heldBy = row !== undefined && isLive(row, nowMs) ? row : undefined;
    throw new ConflictError(
      `the lease on stack "${stack}" is no longer held by ${owner} (token ${token})` + (heldBy ? `; it is held by ${describeHolder(heldBy)}` : ""),
      { details: heldBy ? conflictDetails(heldBy) : { stack } },
    );
  }

  async release(stack: string, owner: string, token: number): Promise<void> {
    await this.db.query(RELEASE, [stack, owner, token, this.now(), changePayload({ kind: "lease", stack })]);
  }

  async get(stack: string): Promise<Lease | undefined> {
    const row = await this.row(stack);
    return row !== undefined && isLive(row, this.now()) ? rowToLease(row) : undefined;
  }

  async forceRelease(stack: string): Promise<Lease | undefined> {
    const { rows } = await this.db.query(FORCE_RELEASE, [stack, this.now(), changePayload({ kind: "lease", stack })]);
    return rows[0] === undefined ? undefined : rowToLease(toLeaseRow(rows[0]));
  }

  private async row(stack: string): Promise<LeaseRow | undefined> {
    const { rows } = await this.db.query("SELECT * FROM leases WHERE stack = $1", [stack]);
    return rows[0] === undefined ? undefined : toLeaseRow(rows[0]);
  }
}

/** The leases of these stacks, locked against change until the transaction ends (crash recovery). */
export async function sharedLeaseRows(tx: Queryable, stacks: readonly string[]): Promise<Map<string, LeaseRow>> {
  const out = new Map<string, LeaseRow>();
  if (stacks.length === 0) return out;
  const { rows } = await tx.query("SELECT * FROM leases WHERE stack = ANY($1::text[]) ORDER BY stack FOR SHARE", [stacks]);
  for (const r of rows) out.set(r.stack as string, toLeaseRow(r));
  return out;
}
