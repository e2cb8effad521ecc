/**
 * The per-stack lease on PostgreSQL. One row per stack, never deleted, so the fencing token only goes
 * up. Every change runs in one transaction holding the stack's row lock (`SELECT … FOR UPDATE`, or a
 * single UPDATE): two replicas racing for a lease queue on that lock, and the second sees the first's
 * committed row, so exactly one wins. The first acquisition of a stack inserts the row with
 * `ON CONFLICT DO NOTHING`: a racer that loses the insert waits for the winner's commit and then reads
 * (and locks) the winner's row. A release (or force-release) is announced when it commits (changes.ts).
 */
import { ConflictError } from "../../errors";
import type { AcquireLeaseOptions, Lease } from "../types";
import { notifyChange } from "./changes";
import type { Db, Queryable } from "./db";
import { checkOwner, checkTtl, conflictDetails, describeHolder, isLive, rowToLease, toLeaseRow, type LeaseRow } from "./rows";

const SELECT_FOR_UPDATE = "SELECT * FROM leases WHERE stack = $1 FOR UPDATE";

export class PostgresLeases {
  constructor(
    private readonly db: Db,
    private readonly now: () => number,
  ) {}

  async acquire(stack: string, options: AcquireLeaseOptions): Promise<Lease> {
    checkOwner(options.owner);
    checkTtl(options.ttlMs);
    return this.db.transaction(async (tx) => {
      const nowMs = this.now();
      const expiresAt = nowMs + options.ttlMs;
      const inserted = await tx.query(
        `INSERT INTO leases (stack, owner, token, acquired_at, expires_at, job_id, released_at)
         VALUES ($1, $2, 1, $3, $4, $5, NULL) ON CONFLICT (stack) DO NOTHING RETURNING *`,
        [stack, options.owner, nowMs, expiresAt, options.jobId ?? null],
      );
      if (inserted.rows.length === 1) return rowToLease(toLeaseRow(inserted.rows[0]));
      const row = await lockedRow(tx, stack);
      if (row === undefined) throw new Error(`lease row of stack "${stack}" vanished`); // rows are never deleted
      let updated;
      if (!isLive(row, nowMs)) {
        updated = await tx.query(
          `UPDATE leases SET owner = $2, token = token + 1, acquired_at = $3, expires_at = $4, job_id = $5, released_at = NULL
           WHERE stack = $1 RETURNING *`,
          [stack, options.owner, nowMs, expiresAt, options.jobId ?? null],
        );
      } else if (row.owner === options.owner) {
        updated = await tx.query("UPDATE leases SET expires_at = $2, job_id = $3 WHERE stack = $1 RETURNING *", [
          stack,
          expiresAt,
          options.jobId ?? row.job_id,
        ]);
      } else {
        throw new ConflictError(`stack "${row.stack}" is locked by ${describeHolder(row)}`, { details: conflictDetails(row) });
      }
      return rowToLease(toLeaseRow(updated.rows[0]));
    });
  }

  async renew(stack: string, owner: string, token: number, ttlMs: number): Promise<Lease> {
    checkTtl(ttlMs);
    return this.db.transaction(async (tx) => {
      const nowMs = this.now();
      const row = await lockedRow(tx, stack);
      // Expired but untouched is still ours: nobody acquired it since, or the token would have moved.
      if (row === undefined || row.owner !== owner || row.token !== token || row.released_at !== null) {
        const heldBy = row !== undefined && isLive(row, nowMs) ? row : undefined;
        throw new ConflictError(
          `the lease on stack "${stack}" is no longer held by ${owner} (token ${token})` +
            (heldBy ? `; it is held by ${describeHolder(heldBy)}` : ""),
          { details: heldBy ? conflictDetails(heldBy) : { stack } },
        );
      }
      const updated = await tx.query("UPDATE leases SET expires_at = $2 WHERE stack = $1 RETURNING *", [stack, nowMs + ttlMs]);
      return rowToLease(toLeaseRow(updated.rows[0]));
    });
  }

  async release(stack: string, owner: string, token: number): Promise<void> {
    await this.db.transaction(async (tx) => {
      const { rowCount } = await tx.query(
        "UPDATE leases SET released_at = $4 WHERE stack = $1 AND owner = $2 AND token = $3 AND released_at IS NULL",
        [stack, owner, token, this.now()],
      );
      if (rowCount > 0) await notifyChange(tx, { kind: "lease", stack });
    });
  }

  async get(stack: string): Promise<Lease | undefined> {
    const { rows } = await this.db.query("SELECT * FROM leases WHERE stack = $1", [stack]);
    const row = rows[0] === undefined ? undefined : toLeaseRow(rows[0]);
    return row !== undefined && isLive(row, this.now()) ? rowToLease(row) : undefined;
  }

  async forceRelease(stack: string): Promise<Lease | undefined> {
    return this.db.transaction(async (tx) => {
      // One statement takes the row lock; RETURNING gives the lease as it was (all but released_at).
      const { rows } = await tx.query("UPDATE leases SET released_at = $2 WHERE stack = $1 AND released_at IS NULL RETURNING *", [stack, this.now()]);
      if (rows[0] === undefined) return undefined;
      await notifyChange(tx, { kind: "lease", stack });
      return rowToLease(toLeaseRow(rows[0]));
    });
  }
}

async function lockedRow(tx: Queryable, stack: string): Promise<LeaseRow | undefined> {
  const { rows } = await tx.query(SELECT_FOR_UPDATE, [stack]);
  return rows[0] === undefined ? undefined : toLeaseRow(rows[0]);
}

/** The leases of these stacks, locked against change until the transaction ends (crash recovery). */
export async function sharedLeaseRows(tx: Queryable, stacks: readonly string[]): Promise<Map<string, LeaseRow>> {
  const out = new Map<string, LeaseRow>();
  if (stacks.length === 0) return out;
  const { rows } = await tx.query("SELECT * FROM leases WHERE stack = ANY($1::text[]) ORDER BY stack FOR SHARE", [stacks]);
  for (const r of rows) out.set(r.stack as string, toLeaseRow(r));
  return out;
}
