/**
 * A job's event log on PostgreSQL, with SQLite's per-job cap: beyond it the oldest events are dropped
 * behind one `elided` marker at the seq of the newest dropped one. An append runs in one transaction
 * that first bumps the job's `last_event_seq` (an UPDATE … RETURNING, which takes the job's row lock),
 * so concurrent appends to one job get consecutive seqs and never the same one, and their
 * announcements (changes.ts) arrive in seq order.
 */
import { ConfigError, NotFoundError } from "../../errors";
import { ELIDED_EVENT_TYPE, type JobEvent, type ListEventsQuery, type NewJobEvent } from "../types";
import { notifyChange } from "./changes";
import type { Db } from "./db";
import { iso, optionalLimit } from "./rows";

const INSERT_EVENT = "INSERT INTO job_events (job_id, seq, time, type, data) VALUES ($1, $2, $3, $4, $5::json)";

export class PostgresEvents {
  constructor(
    private readonly db: Db,
    private readonly now: () => number,
    private readonly maxEventsPerJob: number,
  ) {}

  async append(jobId: string, event: NewJobEvent): Promise<{ seq: number; time: string }> {
    if (typeof event.type !== "string" || event.type === "") throw new ConfigError("appendEvent: event type is required");
    if (event.type === ELIDED_EVENT_TYPE) throw new ConfigError(`appendEvent: event type "${ELIDED_EVENT_TYPE}" is reserved`);
    const data = JSON.stringify(event.data ?? null);
    return this.db.transaction(async (tx) => {
      const { rows } = await tx.query<{ seq: number; events_elided: number }>(
        "UPDATE jobs SET last_event_seq = last_event_seq + 1 WHERE id = $1 RETURNING last_event_seq AS seq, events_elided",
        [jobId],
      );
      if (rows.length === 0) throw new NotFoundError(`job ${jobId} not found`);
      const { seq, events_elided: alreadyElided } = rows[0];
      const time = iso(this.now());
      await tx.query(INSERT_EVENT, [jobId, seq, time, event.type, data]);
      // Events 1..elided are gone (one marker stands at seq `elided`); the rest are all kept, so the
      // count needs no scan. Once a marker is needed, it takes one of the cap's slots.
      const kept = seq - alreadyElided;
      if (kept > this.maxEventsPerJob - (alreadyElided > 0 ? 1 : 0)) {
        const elided = alreadyElided + kept - (this.maxEventsPerJob - 1);
        await tx.query("DELETE FROM job_events WHERE job_id = $1 AND seq <= $2", [jobId, elided]);
        await tx.query(INSERT_EVENT, [jobId, elided, time, ELIDED_EVENT_TYPE, JSON.stringify({ count: elided })]);
        await tx.query("UPDATE jobs SET events_elided = $2 WHERE id = $1", [jobId, elided]);
      }
      await notifyChange(tx, { kind: "event", jobId, seq });
      return { seq, time };
    });
  }

  async list(jobId: string, query: ListEventsQuery = {}): Promise<JobEvent[]> {
    const { rows } = await this.db.query<{ seq: number; time: string; type: string; data: unknown }>(
      "SELECT seq, time, type, data FROM job_events WHERE job_id = $1 AND seq > $2 ORDER BY seq ASC LIMIT $3",
      [jobId, query.afterSeq ?? 0, optionalLimit(query.limit)],
    );
    return rows.map((r) => ({ seq: r.seq, time: r.time, type: r.type, data: r.data ?? null }));
  }

  /** Retention: deletes the events of jobs that finished before `retentionMs` ago. */
  async prune(retentionMs: number): Promise<number> {
    const before = iso(this.now() - retentionMs);
    const result = await this.db.query(
      `DELETE FROM job_events WHERE job_id IN (SELECT id FROM jobs WHERE finished_at IS NOT NULL AND finished_at < $1
         AND status NOT IN ('queued', 'running', 'awaiting_approval'))`,
      [before],
    );
    return result.rowCount;
  }
}
