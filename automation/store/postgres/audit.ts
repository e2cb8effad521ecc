/**
 * The audit trail on PostgreSQL: append, list (newest first, by time window and stack, paged by id)
 * and retention, with the same limits and truncation as SQLite's AuditTable (audit.ts). The table's
 * trigger (schema.ts) refuses UPDATE, TRUNCATE, and a DELETE of anything younger than a day.
 */
import { auditLimit, auditRow, checkAuditRetention, rowToEntry, type AuditEntry, type AuditRow, type ListAuditQuery, type NewAuditEntry } from "../audit";
import type { Db, SqlParam } from "./db";

export class PostgresAudit {
  constructor(
    private readonly db: Db,
    private readonly now: () => number,
  ) {}

  async append(entry: NewAuditEntry): Promise<AuditEntry> {
    const row = auditRow(entry, this.now());
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
    const sql = `SELECT * FROM audit ${where.length ? `WHERE ${where.join(" AND ")}` : ""} ORDER BY id DESC LIMIT ${param(auditLimit(query.limit))}`;
    const { rows } = await this.db.query(sql, params);
    return rows.map((row) => rowToEntry(row as AuditRow));
  }

  async prune(retentionMs: number): Promise<number> {
    checkAuditRetention(retentionMs);
    const cutoff = new Date(this.now() - retentionMs).toISOString();
    return (await this.db.query("DELETE FROM audit WHERE time < $1", [cutoff])).rowCount;
  }
}
