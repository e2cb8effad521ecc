/**
 * The audit trail's part of the store: append, list (newest first, by time window and stack, paged by
 * id), and retention. There is deliberately no way to change or delete a record other than
 * `pruneAudit`; the table's triggers refuse an UPDATE, and a DELETE of anything younger than a day,
 * even from outside this code.
 */
import type Database from "better-sqlite3";
import { ConfigError } from "../errors";
import { newId } from "./id";

export const AUDIT_RESULTS = ["allowed", "denied", "failed"] as const;
export type AuditResult = (typeof AUDIT_RESULTS)[number];

/** One audited request (or CLI run). Never holds a token, a header, or a value the redaction knows. */
export interface AuditEntry {
  /** `aud_` + 26 characters; sorts in creation order. */
  readonly id: string;
  /** ISO 8601 (UTC). */
  readonly time: string;
  /** The principal (token name, or OS user for the CLI); absent when the request did not authenticate. */
  readonly actor?: string;
  /** The route pattern (`POST /v1/stacks/:stack/deployments`) or, for the CLI, `cli <op>`. */
  readonly action: string;
  readonly stack?: string;
  readonly jobId?: string;
  readonly requestId?: string;
  /** The client's address. */
  readonly address?: string;
  readonly result: AuditResult;
  /** The HTTP status answered (the CLI's exit is in `details`). */
  readonly status?: number;
  /** Structured, redacted context: parameters, the validated body, the error code. */
  readonly details?: unknown;
}

export type NewAuditEntry = Omit<AuditEntry, "id" | "time">;

export interface ListAuditQuery {
  /** ISO 8601: records at or after. */
  readonly from?: string;
  /** ISO 8601: records before. */
  readonly to?: string;
  /** One stack, or any of several (an empty list matches nothing). */
  readonly stack?: string | readonly string[];
  /** Default 100; at most 500. */
  readonly limit?: number;
  /** Cursor: records older than this id (the last id of the previous page). */
  readonly before?: string;
}

export const DEFAULT_AUDIT_LIMIT = 100;
export const MAX_AUDIT_LIMIT = 500;
/** The shortest retention the table lets anyone prune to. */
export const MIN_AUDIT_RETENTION_MS = 24 * 60 * 60 * 1000;

export interface AuditRow {
  id: string;
  time: string;
  actor: string | null;
  action: string;
  stack: string | null;
  job_id: string | null;
  request_id: string | null;
  address: string | null;
  result: string;
  status: number | null;
  details: string | null;
}

/** The migration that creates the table (schema.ts lists it). */
export const AUDIT_MIGRATION = `
  CREATE TABLE audit (
    id          TEXT PRIMARY KEY,
    time        TEXT NOT NULL,
    actor       TEXT,
    action      TEXT NOT NULL,
    stack       TEXT,
    job_id      TEXT,
    request_id  TEXT,
    address     TEXT,
    result      TEXT NOT NULL CHECK (result IN ('allowed', 'denied', 'failed')),
    status      INTEGER,
    details     TEXT           -- JSON, redacted
  );
  CREATE INDEX audit_time ON audit (time);
  CREATE INDEX audit_stack_id ON audit (stack, id);
  CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
  CREATE TRIGGER audit_retention_only BEFORE DELETE ON audit
    WHEN OLD.time > strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-1 day')
    BEGIN SELECT RAISE(ABORT, 'audit records younger than a day are never deleted'); END;
`;

const MAX_TEXT = 1000;

function text(value: string | undefined, max = MAX_TEXT): string | null {
  if (value === undefined) return null;
  return value.length > max ? `${value.slice(0, max)}…` : value;
}

/** The row `append` writes for `entry` at `nowMs`, checked and cut to the columns' limits (both stores). */
export function auditRow(entry: NewAuditEntry, nowMs: number): AuditRow {
  if (!(AUDIT_RESULTS as readonly string[]).includes(entry.result)) throw new ConfigError(`audit result must be one of ${AUDIT_RESULTS.join(", ")}`);
  if (typeof entry.action !== "string" || entry.action === "") throw new ConfigError("audit action is required");
  return {
    id: newId("aud_", nowMs),
    time: new Date(nowMs).toISOString(),
    actor: text(entry.actor, 200),
    action: text(entry.action, 300) as string,
    stack: text(entry.stack, 100),
    job_id: text(entry.jobId, 100),
    request_id: text(entry.requestId, 200),
    address: text(entry.address, 100),
    result: entry.result,
    status: entry.status ?? null,
    details: entry.details === undefined ? null : JSON.stringify(entry.details).slice(0, 20_000),
  };
}

/** A list query's page size: the default, or the one asked for up to MAX_AUDIT_LIMIT (ConfigError below 1). */
export function auditLimit(limit: number | undefined): number {
  const n = limit ?? DEFAULT_AUDIT_LIMIT;
  if (!Number.isInteger(n) || n < 1) throw new ConfigError(`limit must be a positive integer, got ${String(n)}`);
  return Math.min(n, MAX_AUDIT_LIMIT);
}

/** Refuses a retention shorter than a day. */
export function checkAuditRetention(retentionMs: number): void {
  if (!Number.isFinite(retentionMs) || retentionMs < MIN_AUDIT_RETENTION_MS) {
    throw new ConfigError(`audit retention must be at least a day, got ${String(retentionMs)} ms`);
  }
}

/** Operations on the `audit` table of an open database; `stmt` reuses prepared statements. */
export class AuditTable {
  constructor(
    private readonly stmt: (sql: string) => Database.Statement,
    private readonly now: () => number,
  ) {}

  append(entry: NewAuditEntry): AuditEntry {
    const row = auditRow(entry, this.now());
    this.stmt(
      `INSERT INTO audit (id, time, actor, action, stack, job_id, request_id, address, result, status, details)
       VALUES (@id, @time, @actor, @action, @stack, @job_id, @request_id, @address, @result, @status, @details)`,
    ).run(row);
    return rowToEntry(row);
  }

  list(query: ListAuditQuery = {}): AuditEntry[] {
    const where: string[] = [];
    const params: (string | number)[] = [];
    if (query.from !== undefined) {
      where.push("time >= ?");
      params.push(query.from);
    }
    if (query.to !== undefined) {
      where.push("time < ?");
      params.push(query.to);
    }
    if (query.stack !== undefined) {
      const stacks: readonly string[] = typeof query.stack === "string" ? [query.stack] : query.stack;
      where.push(stacks.length === 0 ? "0" : `stack IN (${stacks.map(() => "?").join(", ")})`);
      params.push(...stacks);
    }
    if (query.before !== undefined) {
      where.push("id < ?");
      params.push(query.before);
    }
    const sql = `SELECT * FROM audit ${where.length ? `WHERE ${where.join(" AND ")}` : ""} ORDER BY id DESC LIMIT ?`;
    return (this.stmt(sql).all(...params, auditLimit(query.limit)) as AuditRow[]).map(rowToEntry);
  }

  /** Deletes records older than `retentionMs` (at least a day); returns how many. */
  prune(retentionMs: number): number {
    checkAuditRetention(retentionMs);
    const cutoff = new Date(this.now() - retentionMs).toISOString();
    return this.stmt("DELETE FROM audit WHERE time < ?").run(cutoff).changes;
  }
}

export function rowToEntry(row: AuditRow): AuditEntry {
  return {
    id: row.id,
    time: row.time,
    ...(row.actor !== null ? { actor: row.actor } : {}),
    action: row.action,
    ...(row.stack !== null ? { stack: row.stack } : {}),
    ...(row.job_id !== null ? { jobId: row.job_id } : {}),
    ...(row.request_id !== null ? { requestId: row.request_id } : {}),
    ...(row.address !== null ? { address: row.address } : {}),
    result: row.result as AuditResult,
    ...(row.status !== null ? { status: row.status } : {}),
    ...(row.details !== null ? { details: safeParse(row.details) } : {}),
  };
}

function safeParse(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return { truncated: true };
  }
}
