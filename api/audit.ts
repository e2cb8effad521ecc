/**
 * The audit trail, written once for every route by the router (never by a handler): every mutation
 * (every route that is not a GET), allowed or not, and every denied request (401, 403, 429, and the
 * 404 a caller gets for a stack it may not read). Each record goes to the store's append-only `audit`
 * table and, as the same object, to the structured log (`"msg":"audit"`).
 *
 * A record says who (the token's name; none when authentication failed), what (the route pattern, e.g.
 * `POST /v1/stacks/:stack/deployments`), on which stack and job, the request id, the client address,
 * and the result: `allowed` (answered < 400), `denied` (authentication, authorization, rate limit) or
 * `failed` (any other error), with the status. Its details hold the path parameters, the query and the
 * validated body (never a header, never a raw body), passed through the secret redaction.
 *
 * Requests refused before anyone authenticated (401, and the 429 of an address over its limit of
 * failed authentications) are aggregated: one record per client address and window (a minute by
 * default), written when the window ends (or at shutdown), with the count, the first and last time,
 * the statuses and the routes tried. Anyone can send those, so one per request would let an anonymous
 * client fill the append-only table.
 */
import type { Logger } from "pino";
import { isStoreBusy } from "../automation/errors";
import { redactDeep } from "../automation/redact";
import { nextBackoffMs } from "../automation/store/busy";
import type { AuditEntry, AuditResult, NewAuditEntry, Store } from "../automation/store";
import { loggableError } from "./errors";
import type { AnyRoute } from "./routes/route";

/** Audit records kept while the database is busy; beyond, the oldest is logged as not written. */
const MAX_PENDING_AUDIT = 10_000;

/** Statuses that deny a request outright: unauthenticated, forbidden, rate limited. */
const DENIAL_STATUSES: ReadonlySet<number> = new Set([401, 403, 429]);

/** What the router knows about a request by the time it is answered. */
export interface AuditFacts {
  readonly route: AnyRoute;
  readonly status: number;
  readonly requestId: string;
  readonly address: string;
  readonly actor?: string;
  readonly stack?: string;
  readonly jobId?: string;
  /** A 404 that came from authorization (the caller may not read the stack), not from a missing thing. */
  readonly authzDenied?: boolean;
  readonly params?: unknown;
  readonly query?: unknown;
  readonly body?: unknown;
  /** The error code answered, when it is an error. */
  readonly errorCode?: string;
  /** More detail fields (redacted like the rest). */
  readonly extra?: Record<string, unknown>;
}

/** The route pattern as the action: `POST /v1/stacks/:stack/deployments`. */
export function actionOf(route: AnyRoute): string {
  return `${route.method.toUpperCase()} ${route.path}`;
}

export function isMutation(route: AnyRoute): boolean {
  return route.method !== "get";
}

/** Whether a request with this outcome is audited, and with which result. */
export function auditResult(route: AnyRoute, status: number, authzDenied: boolean): AuditResult | undefined {
  const denied = DENIAL_STATUSES.has(status) || (status === 404 && authzDenied);
  if (denied) return "denied";
  if (!isMutation(route)) return undefined;
  return status < 400 ? "allowed" : "failed";
}

/** Strings in details are cut to this length; a record's details stay small whatever was sent. */
const MAX_DETAIL_STRING = 300;
const MAX_DETAIL_ITEMS = 20;

function bounded(value: unknown, depth = 0): unknown {
  if (typeof value === "string") return value.length > MAX_DETAIL_STRING ? `${value.slice(0, MAX_DETAIL_STRING)}…` : value;
  if (value === null || typeof value !== "object") return value;
  if (depth > 4) return "[…]";
  if (Array.isArray(value)) return value.slice(0, MAX_DETAIL_ITEMS).map((v) => bounded(v, depth + 1));
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value as Record<string, unknown>).slice(0, MAX_DETAIL_ITEMS)) out[k.slice(0, 60)] = bounded(v, depth + 1);
  return out;
}

function nonEmpty(value: unknown): boolean {
  return value !== undefined && value !== null && !(typeof value === "object" && Object.keys(value as object).length === 0);
}

/** One address's refused anonymous requests in the current window. */
interface RefusedWindow {
  readonly address: string;
  readonly from: string;
  to: string;
  readonly requestId: string;
  readonly action: string;
  stack?: string;
  sameStack: boolean;
  count: number;
  readonly statuses: Record<string, number>;
  readonly actions: Set<string>;
  readonly timer: NodeJS.Timeout;
}

export const DEFAULT_REFUSED_WINDOW_MS = 60_000;
const MAX_AGGREGATED_ACTIONS = 10;

export interface AuditTrailOptions {
  /** The window refused anonymous requests are aggregated over, per address. Default one minute. */
  readonly refusedWindowMs?: number;
}

export class AuditTrail {
  private readonly refusedWindowMs: number;
  private readonly refused = new Map<string, RefusedWindow>();

  constructor(
    private readonly store: Store,
    private readonly logger: Logger,
    options: AuditTrailOptions = {},
  ) {
    this.refusedWindowMs = options.refusedWindowMs ?? DEFAULT_REFUSED_WINDOW_MS;
  }

  /**
   * Records the request when it is audited (see the file comment); never throws. A refused anonymous
   * request is counted in its address's window and returns undefined (the window's record is written
   * when it ends).
   */
  async record(facts: AuditFacts): Promise<AuditEntry | undefined> {
    const result = auditResult(facts.route, facts.status, facts.authzDenied === true);
    if (result === undefined) return undefined;
    if (facts.actor === undefined && (facts.status === 401 || facts.status === 429)) {
      this.countRefused(facts);
      return undefined;
    }
    const details: Record<string, unknown> = {};
    if (nonEmpty(facts.params)) details.params = facts.params;
    if (nonEmpty(facts.query)) details.query = facts.query;
    if (nonEmpty(facts.body)) details.body = facts.body;
    if (facts.errorCode !== undefined) details.error = facts.errorCode;
    if (facts.extra) Object.assign(details, facts.extra);
    const entry: NewAuditEntry = {
      ...(facts.actor !== undefined ? { actor: facts.actor } : {}),
      action: actionOf(facts.route),
      ...(facts.stack !== undefined ? { stack: facts.stack } : {}),
      ...(facts.jobId !== undefined ? { jobId: facts.jobId } : {}),
      requestId: facts.requestId,
      address: facts.address,
      result,
      status: facts.status,
      // Redacted before it is cut: a cut through a secret would leave a part the redaction no longer knows.
      ...(Object.keys(details).length > 0 ? { details: bounded(redactDeep(details)) } : {}),
    };
    return this.append(entry);
  }

  /**
   * Writes the aggregated records of every open window now and waits for every write under way
   * (shutdown, before the store closes; tests). Records still kept for a busy database stay kept.
   */
  async flush(): Promise<void> {
    for (const window of [...this.refused.values()]) this.closeWindow(window);
    while (this.writing.size > 0) await Promise.all([...this.writing]);
  }

  private countRefused(facts: AuditFacts): void {
    const now = new Date().toISOString();
    let window = this.refused.get(facts.address);
    if (!window) {
      const timer = setTimeout(() => {
        const current = this.refused.get(facts.address);
        if (current) this.closeWindow(current);
      }, this.refusedWindowMs);
      timer.unref();
      window = {
        address: facts.address,
        from: now,
        to: now,
        requestId: facts.requestId,
        action: actionOf(facts.route),
        stack: facts.stack,
        sameStack: true,
        count: 0,
        statuses: {},
        actions: new Set(),
        timer,
      };
      this.refused.set(facts.address, window);
    }
    window.count++;
    window.to = now;
    window.statuses[String(facts.status)] = (window.statuses[String(facts.status)] ?? 0) + 1;
    if (window.actions.size < MAX_AGGREGATED_ACTIONS) window.actions.add(actionOf(facts.route));
    if (facts.stack !== window.stack) window.sameStack = false;
  }

  private closeWindow(window: RefusedWindow): void {
    clearTimeout(window.timer);
    if (this.refused.get(window.address) === window) this.refused.delete(window.address);
    const statuses = Object.keys(window.statuses).map(Number);
    void this.append({
      action: window.action,
      ...(window.sameStack && window.stack !== undefined ? { stack: window.stack } : {}),
      requestId: window.requestId,
      address: window.address,
      result: "denied",
      status: statuses.includes(401) ? 401 : statuses[0],
      details: {
        aggregated: true,
        count: window.count,
        from: window.from,
        to: window.to,
        statuses: window.statuses,
        actions: [...window.actions],
      },
    });
  }

  /**
   * Appends a record as given (redacted again), and logs it; a store failure is logged, never thrown.
   * A record the database refuses because another process holds its lock is kept, in order, and
   * written later (backing off from 50 ms to 2 s; at most MAX_PENDING_AUDIT are kept), with the time
   * it was asked for in `details.requestedAt`.
   */
  async append(entry: NewAuditEntry): Promise<AuditEntry | undefined> {
    const clean = redactDeep(entry);
    if (this.pending.length > 0 || this.flushing) {
      this.keep(clean);
      return undefined;
    }
    try {
      return await this.write(clean);
    } catch (err) {
      if (isStoreBusy(err)) this.keep(clean);
      else this.logger.error({ audit: clean, err: loggableError(err) }, "audit record not written");
      return undefined;
    }
  }

  /** Records kept while the database was busy, oldest first. */
  private readonly pending: NewAuditEntry[] = [];
  private retryTimer?: NodeJS.Timeout;
  private backoffMs = 0;
  private flushing = false;
  /** Writes under way (`flush` waits for them). */
  private readonly writing = new Set<Promise<AuditEntry>>();

  private async write(entry: NewAuditEntry): Promise<AuditEntry> {
    const write = this.store.appendAudit(entry);
    this.writing.add(write);
    try {
      const written = await write;
      this.logger.info({ audit: written }, "audit");
      return written;
    } finally {
      this.writing.delete(write);
    }
  }

  private keep(entry: NewAuditEntry): void {
    if (this.pending.length >= MAX_PENDING_AUDIT) {
      const dropped = this.pending.shift();
      this.logger.error({ audit: dropped }, "audit record not written: the database stayed busy");
    }
    const requestedAt = new Date().toISOString();
    const d = entry.details;
    const details = d === undefined ? { requestedAt } : typeof d === "object" && d !== null && !Array.isArray(d) ? { ...d, requestedAt } : { value: d, requestedAt };
    this.pending.push({ ...entry, details });
    this.armRetry();
  }

  private armRetry(): void {
    if (this.retryTimer !== undefined) return;
    this.backoffMs = nextBackoffMs(this.backoffMs);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      void this.flushPending();
    }, this.backoffMs);
    this.retryTimer.unref();
  }

  /**
   * Writes the kept records, in order, until the database refuses again; one pass at a time (a
   * record appended meanwhile is kept behind the others). Never throws.
   */
  async flushPending(): Promise<void> {
    if (this.flushing) return;
    this.flushing = true;
    try {
      while (this.pending.length > 0) {
        try {
          await this.write(this.pending[0]);
        } catch (err) {
          if (isStoreBusy(err)) return this.armRetry();
          this.logger.error({ audit: this.pending[0], err: loggableError(err) }, "audit record not written");
        }
        this.pending.shift();
      }
      this.backoffMs = 0;
    } finally {
      this.flushing = false;
    }
  }

  /** Retention: deletes records older than `days`; logs how many. Never throws. */
  async prune(days: number): Promise<number> {
    try {
      const deleted = await this.store.pruneAudit(days * 24 * 60 * 60 * 1000);
      if (deleted > 0) this.logger.info({ deleted, retentionDays: days }, "audit retention");
      return deleted;
    } catch (err) {
      this.logger.error({ err: loggableError(err) }, "audit retention failed");
      return 0;
    }
  }
}
