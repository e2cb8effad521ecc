/**
 * A job's event log on PostgreSQL, with SQLite's per-job cap: beyond it the oldest events are dropped
 * behind one `elided` marker at the seq of the newest dropped one. An append (of one event or
 * several) first bumps the job's `last_event_seq` (an UPDATE … RETURNING, which takes the job's row
 * lock until it commits), so concurrent appends to one job get consecutive seqs and never the same
 * one, and their announcements (changes.ts) arrive in seq order. While the events fit the cap, the
 * bump, the insert and the announcement are one statement (`APPEND`, one round trip); an append that
 * drops events, or finds no job, runs as a transaction of several.
 */
import { NotFoundError } from "../../errors";
import { checkedEvent, elidedThrough } from "../rows";
import { ELIDED_EVENT_TYPE, type JobEvent, type ListEventsQuery, type NewJobEvent } from "../types";
import { CHANGES_CHANNEL, notifyChange } from "./changes";
import type { Db } from "./db";
import { iso, optionalLimit } from "./rows";

const INSERT_EVENT = "INSERT INTO job_events (job_id, seq, time, type, data) VALUES ($1, $2, $3, $4, $5::json)";
/** Several events of one job at consecutive seqs from $2: their types and data as two arrays. */
const INSERT_EVENTS = `INSERT INTO job_events (job_id, seq, time, type, data)
  SELECT $1, $2::bigint + e.ord - 1, $3, e.type, e.data::json FROM unnest($4::text[], $5::text[]) WITH ORDINALITY AS e(type, data, ord)`;

/**
 * The append while the job's events fit the cap (`elidedThrough` finds nothing to drop: the kept
 * events, those after the `events_elided` the marker stands for, plus the marker's own slot, stay
 * within the cap $6); no row when they would not, or when there is no such job. Parameters: the job,
 * the count, the time, the types and the data (as INSERT_EVENTS), the cap. The announcement's payload
 * is built here (the first seq is known only here), as `changePayload` would.
 */
const APPEND = `WITH bumped AS (
    UPDATE jobs SET last_event_seq = last_event_seq + $2
    WHERE id = $1 AND last_event_seq + $2 - events_elided <= $6 - (CASE WHEN events_elided > 0 THEN 1 ELSE 0 END)
    RETURNING last_event_seq - $2 + 1 AS first
  ), inserted AS (
    INSERT INTO job_events (job_id, seq, time, type, data)
    SELECT $1, b.first + e.ord - 1, $3, e.type, e.data::json FROM bumped b, unnest($4::text[], $5::text[]) WITH ORDINALITY AS e(type, data, ord)
  )
  SELECT first, pg_notify('${CHANGES_CHANNEL}', json_build_object('kind', 'event', 'jobId', $1::text, 'seq', first)::text) FROM bumped`;

export class PostgresEvents {
  constructor(
    private readonly db: Db,
    private readonly now: () => number,
    private readonly maxEventsPerJob: number,
  ) {}

  /** The events, in order, with consecutive seqs, and one announcement (at the first). */
  async append(jobId: string, events: readonly NewJobEvent[]): Promise<{ seq: number; time: string }[]> {
    const rows = events.map(checkedEvent);
    if (rows.length === 0) return [];
    const time = iso(this.now());
    const types = rows.map((r) => r.type);
    const data = rows.map((r) => r.data);
    const appended = await this.db.query<{ first: number }>(APPEND, [jobId, rows.length, time, types, data, this.maxEventsPerJob]);
    if (appended.rows.length === 1) return rows.map((_, i) => ({ seq: appended.rows[0].first + i, time }));
    return this.db.transaction(async (tx) => {
      const { rows: bumped } = await tx.query<{ last: number; events_elided: number }>(
        "UPDATE jobs SET last_event_seq = last_event_seq + $2 WHERE id = $1 RETURNING last_event_seq AS last, events_elided",
        [jobId, rows.length],
      );
      if (bumped.length === 0) throw new NotFoundError(`job ${jobId} not found`);
      const { last, events_elided: alreadyElided } = bumped[0];
      const first = last - rows.length + 1;
      await tx.query(INSERT_EVENTS, [jobId, first, time, types, data]);
      const elided = elidedThrough(last, alreadyElided, this.maxEventsPerJob);
      if (elided !== undefined) {
        await tx.query("DELETE FROM job_events WHERE job_id = $1 AND seq <= $2", [jobId, elided]);
        await tx.query(INSERT_EVENT, [jobId, elided, time, ELIDED_EVENT_TYPE, JSON.stringify({ count: elided })]);
        await tx.query("UPDATE jobs SET events_elided = $2 WHERE id = $1", [jobId, elided]);
      }
      // At the first seq: a follower reads from there on, the whole batch.
      await notifyChange(tx, { kind: "event", jobId, seq: first });
      return rows.map((_, i) => ({ seq: first + i, time }));
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
