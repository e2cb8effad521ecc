/**
 * Jobs, leases and stack flags as PostgreSQL rows: the SQL and the decoding that differ from SQLite's
 * (json columns arrive parsed, BIGINT as strings). What both stores share is ../rows.ts.
 */
import { MUTABLE_JOB_KEYS, JOB_FIELDS, maskOutputs, STACK_STATE_FIELDS, type LeaseRow } from "../rows";
import type { Outputs } from "../../engine/port";
import type { Job, StackState } from "../types";
import type { SqlParam } from "./db";

export {
  asArray,
  checkJob,
  checkOwner,
  checkTtl,
  conflictDetails,
  describeHolder,
  isLive,
  iso,
  JOB_FIELDS,
  listLimit,
  MUTABLE_JOB_KEYS,
  NEW_JOB_KEYS,
  REQUIRED_JOB_KEYS,
  rowToLease,
  STACK_STATE_FIELDS,
  withoutUndefined,
  type LeaseRow,
} from "../rows";

export type Row = Record<string, unknown>;

const MUTABLE_FIELDS = JOB_FIELDS.filter((f) => MUTABLE_JOB_KEYS.has(f.key));
export const JOB_INSERT_SQL = `INSERT INTO jobs (${JOB_FIELDS.map((f) => f.column).join(", ")})
  VALUES (${JOB_FIELDS.map((f, i) => `$${i + 1}${f.json ? "::json" : ""}`).join(", ")})`;
/** Writes every mutable column, and a new revision (what updateJob's compare-and-set compares). */
export const JOB_UPDATE_SQL = `UPDATE jobs SET ${MUTABLE_FIELDS.map((f, i) => `${f.column} = $${i + 2}${f.json ? "::json" : ""}`).join(", ")},
  revision = revision + 1 WHERE id = $1`;
/** How many parameters JOB_UPDATE_SQL takes (the id, then every mutable column). */
export const JOB_UPDATE_PARAMS = MUTABLE_FIELDS.length + 1;

/** Parameters of JOB_INSERT_SQL. */
export function insertParams(job: Job): SqlParam[] {
  return JOB_FIELDS.map((f) => columnValue(job, f));
}

/** Parameters of JOB_UPDATE_SQL. */
export function updateParams(job: Job): SqlParam[] {
  return [job.id, ...MUTABLE_FIELDS.map((f) => columnValue(job, f))];
}

function columnValue(job: Job, f: (typeof JOB_FIELDS)[number]): SqlParam {
  let value: unknown = job[f.key];
  if (f.key === "outputs" && value !== undefined) value = maskOutputs(value as Outputs);
  if (value === undefined || value === null) return null;
  return f.json ? JSON.stringify(value) : (value as SqlParam);
}

/** A row as a Job (without its decisions): `json` columns arrive parsed. */
export function rowToJob(row: Row): Job {
  const job: Record<string, unknown> = {};
  for (const f of JOB_FIELDS) {
    const value = row[f.column];
    if (value === null || value === undefined) continue;
    job[f.key] = value;
  }
  return job as unknown as Job;
}

/** SQLite's LIMIT for "no limit" is -1 (any negative); PostgreSQL's is NULL. */
export function optionalLimit(limit: number | undefined): number | null {
  return limit === undefined || limit < 0 ? null : Math.floor(limit);
}

// Leases -------------------------------------------------------------------------------------------

/** BIGINT columns arrive as strings. */
export function toLeaseRow(row: Row): LeaseRow {
  return {
    stack: row.stack as string,
    owner: row.owner as string,
    token: Number(row.token),
    acquired_at: Number(row.acquired_at),
    expires_at: Number(row.expires_at),
    job_id: (row.job_id as string | null) ?? null,
    released_at: row.released_at === null || row.released_at === undefined ? null : Number(row.released_at),
  };
}

// Stack flags --------------------------------------------------------------------------------------

export function rowToStackState(stack: string, row: Row | undefined): StackState {
  const state: Record<string, unknown> = { stack };
  if (row) {
    for (const f of STACK_STATE_FIELDS) {
      const v = row[f.column];
      if (v !== null && v !== undefined) state[f.key] = v;
    }
  }
  return state as unknown as StackState;
}
