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
 */
import type { Logger } from "pino";
import { redactDeep } from "../automation/redact";
import type { AuditEntry, AuditResult, NewAuditEntry, Store } from "../automation/store";
import { loggableError } from "./errors";
import type { AnyRoute } from "./routes/route";

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

export class AuditTrail {
  constructor(
    private readonly store: Store,
    private readonly logger: Logger,
  ) {}

  /** Records the request when it is audited (see the file comment); never throws. */
  record(facts: AuditFacts): AuditEntry | undefined {
    const result = auditResult(facts.route, facts.status, facts.authzDenied === true);
    if (result === undefined) return undefined;
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

  /** Appends a record as given (redacted again), and logs it; a store failure is logged, never thrown. */
  append(entry: NewAuditEntry): AuditEntry | undefined {
    const clean = redactDeep(entry);
    try {
      const written = this.store.appendAudit(clean);
      this.logger.info({ audit: written }, "audit");
      return written;
    } catch (err) {
      this.logger.error({ audit: clean, err: loggableError(err) }, "audit record not written");
      return undefined;
    }
  }

  /** Retention: deletes records older than `days`; logs how many. */
  prune(days: number): number {
    try {
      const deleted = this.store.pruneAudit(days * 24 * 60 * 60 * 1000);
      if (deleted > 0) this.logger.info({ deleted, retentionDays: days }, "audit retention");
      return deleted;
    } catch (err) {
      this.logger.error({ err: loggableError(err) }, "audit retention failed");
      return 0;
    }
  }
}
