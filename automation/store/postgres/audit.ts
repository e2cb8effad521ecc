/**
 * The audit trail on PostgreSQL: append, list (newest first, by time window and stack, paged by id)
 * and retention, with the same limits and truncation as SQLite's AuditTable (audit.ts). The table's
 * trigger (schema.ts) refuses UPDATE, TRUNCATE, and a DELETE of anything younger than a day.
 */
import { ConfigError } from "../../errors";
import {
  AUDIT_RESULTS,
  DEFAULT_AUDIT_LIMIT,
  MAX_AUDIT_LIMIT,
  MIN_AUDIT_RETENTION_MS,
  type AuditEntry,
  type AuditResult,
  type ListAuditQuery,
  type NewAuditEntry,
} from "../audit";
import { newId } from "../id";
import type { Db, SqlParam } from "./db";

const MAX_TEXT = 1000;

function text(value: string | undefined, max = MAX_TEXT): string | null {
  if (value === undefined) return null;
  return value.length > max ? `${value.slice(0, max)}…` : value;
}

export class PostgresAudit {
  constructor(
    private readonly db: Db,
    private readonly now: () => number,
  ) {}

  async append(entry: NewAuditEntry): Promise<AuditEntry> {
    if (!(AUDIT_RESULTS as readonly string[]).includes(entry.result)) throw new ConfigError(`audit result must be one of ${AUDIT_RESULTS.join(", ")}`);
    if (typeof entry.action !== "string" || entry.action === "") throw new ConfigError("audit action is required");
    const nowMs = this.now();
    const row: Record<string, string | number | null> = {
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
    await this.db.query(
      `INSERT INTO audit (id, time, actor, action, stack, job_id, request_id, address, result, status, details)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
      [row.id, row.time, row.actor, row.action, row.stack, row.job_id, row.request_id, row.address, row.result, row.status, row.details],
    );
    return rowToEntry(row);
  }

  async list(query: ListAuditQuery = {}): Promise<AuditEntry[]> {
    const where: string[] = [];
    const params: SqlParam[] = [];
    const param = (value: SqlParam) => (params.push(value), `$${params.length}`);
    if (query.from !== undefined) where.push(`time >= ${param(query.from)}`);
    if (query.to !== undefined) where.push(`time < ${param(query.to)}`);
    if (query.stack !== undefined) {
      const stacks: readonly string[] = typeof query.stack === "string" ? [query.stack] : query.stack;
      where.push(`stack = ANY(${param(stacks)}::text[])`);
    }
    if (query.before !== undefined) where.push(`id < ${param(query.before)}`);
    const limit = query.limit ?? DEFAULT_AUDIT_LIMIT;
    if (!Number.isInteger(limit) || limit < 1) throw new ConfigError(`limit must be a positive integer, got ${String(limit)}`);
    const sql = `SELECT * FROM audit ${where.length ? `WHERE ${where.join(" AND ")}` : ""} ORDER BY id DESC LIMIT ${param(Math.min(limit, MAX_AUDIT_LIMIT))}`;
    const { rows } = await this.db.query(sql, params);
    return rows.map(rowToEntry);
  }

  async prune(retentionMs: number): Promise<number> {
    if (!Number.isFinite(retentionMs) || retentionMs < MIN_AUDIT_RETENTION_MS) {
      throw new ConfigError(`audit retention must be at least a day, got ${String(retentionMs)} ms`);
    }
    const cutoff = new Date(this.now() - retentionMs).toISOString();
    return (await this.db.query("DELETE FROM audit WHERE time < $1", [cutoff])).rowCount;
  }
}

function rowToEntry(row: Record<string, unknown>): AuditEntry {
  const opt = <K extends string>(key: K, value: unknown) => (value !== null && value !== undefined ? { [key]: value } : {});
  return {
    id: row.id as string,
    time: row.time as string,
    ...opt("actor", row.actor),
    action: row.action as string,
    ...opt("stack", row.stack),
    ...opt("jobId", row.job_id),
    ...opt("requestId", row.request_id),
    ...opt("address", row.address),
    result: row.result as AuditResult,
    ...opt("status", row.status),
    ...(row.details !== null && row.details !== undefined ? { details: safeParse(row.details as string) } : {}),
  } as AuditEntry;
}

function safeParse(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return { truncated: true };
  }
}
