/**
 * The service's one error middleware, and the few errors only HTTP has. Every error response is
 * written here, in the design's shape:
 *
 *   {"error": {"code", "message", "details"?, "requestId"}}
 *
 * A `DeployerError` (automation/errors.ts) or an `ApiError` keeps its code and message; anything else
 * (a bug, an engine failure surfacing outside a job) is logged, redacted, and answered with a generic
 * 500 `internal`: never its message, never engine output, never a stack trace.
 */
import type { ErrorRequestHandler, RequestHandler } from "express";
import type { Logger } from "pino";
import { DeployerError, isStoreBusy, isStoreUnavailable, NotFoundError } from "../automation/errors";
import { redactDeep, redactSecrets } from "../automation/redact";

/** Codes that exist only at the HTTP boundary (the rest are automation's `ErrorCode`s). */
export type ApiErrorCode = "unauthenticated" | "forbidden" | "payload_too_large" | "rate_limited";

export class ApiError extends Error {
  readonly code: ApiErrorCode = "forbidden";
  readonly details?: unknown;
  /** Sent as `Retry-After` (429, 503). */
  readonly retryAfterSeconds?: number;
  constructor(message: string, options?: { details?: unknown; retryAfterSeconds?: number }) {
    super(message);
    this.name = new.target.name;
    this.details = options?.details;
    this.retryAfterSeconds = options?.retryAfterSeconds;
  }
}

/** No or bad credentials: answered with `WWW-Authenticate: Bearer`. */
export class UnauthenticatedError extends ApiError {
  override readonly code = "unauthenticated";
}

/** Authenticated, but the principal's roles on the stack do not allow the route. */
export class ForbiddenError extends ApiError {
  override readonly code = "forbidden";
}

export class PayloadTooLargeError extends ApiError {
  override readonly code = "payload_too_large";
}

/** Too many requests from one principal or address; `retryAfterSeconds` becomes `Retry-After`. */
export class RateLimitedError extends ApiError {
  override readonly code = "rate_limited";
}

/** Status per error code; a code not listed is a 500 `internal`. */
export const STATUS_BY_CODE: Readonly<Record<string, number>> = {
  invalid_request: 400,
  unauthenticated: 401,
  forbidden: 403,
  not_found: 404,
  conflict: 409,
  blocked: 409,
  plan_changed: 409,
  payload_too_large: 413,
  rate_limited: 429,
  engine_unavailable: 503,
  store_busy: 503,
  store_unavailable: 503,
};

/** The codes an error response may carry, for the OpenAPI document. */
export const ERROR_CODES = [...Object.keys(STATUS_BY_CODE), "internal"] as const;

export interface ErrorBody {
  readonly error: {
    readonly code: string;
    readonly message: string;
    readonly details?: unknown;
    readonly requestId: string;
  };
}

const DEFAULT_RETRY_AFTER_SECONDS = 5;

interface Classified {
  readonly status: number;
  readonly code: string;
  readonly message: string;
  readonly details?: unknown;
  readonly retryAfterSeconds?: number;
  /** Unexpected: log it with its stack. */
  readonly unexpected: boolean;
}

/** Errors body-parser throws carry a `type` (`entity.too.large`, `entity.parse.failed`, …) saying what was wrong with the body. */
function bodyParserErrorType(err: unknown): string | undefined {
  if (typeof err !== "object" || err === null) return undefined;
  const type = (err as { type?: unknown }).type;
  if (typeof type !== "string") return undefined;
  return type.startsWith("entity.") || type === "encoding.unsupported" || type === "charset.unsupported" ? type : undefined;
}

function retryAfterOf(details: unknown): number | undefined {
  if (typeof details !== "object" || details === null) return undefined;
  const value = (details as { retryAfterSeconds?: unknown }).retryAfterSeconds;
  return typeof value === "number" && Number.isFinite(value) && value >= 0 ? Math.ceil(value) : undefined;
}

export function classify(err: unknown): Classified {
  // The database (PostgreSQL) does not answer. Its message names the server, which is the operator's
  // business (the log has it), not the caller's.
  if (isStoreUnavailable(err)) return { status: 503, code: "store_unavailable", message: "the database does not answer; nothing was changed, retry shortly", retryAfterSeconds: 2, unexpected: false };
  if (err instanceof ApiError || err instanceof DeployerError) {
    const status = STATUS_BY_CODE[err.code];
    if (status === undefined) return { status: 500, code: "internal", message: "internal error", unexpected: true };
    const retryAfterSeconds = err instanceof ApiError ? err.retryAfterSeconds : retryAfterOf(err.details);
    return {
      status,
      code: err.code,
      message: redactSecrets(err.message),
      details: err.details === undefined ? undefined : redactDetails(err.details),
      retryAfterSeconds: status === 503 || status === 429 ? (retryAfterSeconds ?? DEFAULT_RETRY_AFTER_SECONDS) : undefined,
      unexpected: false,
    };
  }
  // A path whose percent-encoding does not decode (`/v1/stacks/%zz`) names nothing (the router throws URIError).
  if (err instanceof URIError) return { status: 404, code: "not_found", message: "not found", unexpected: false };
  const parserError = bodyParserErrorType(err);
  if (parserError !== undefined) {
    if (parserError === "entity.too.large") return { status: 413, code: "payload_too_large", message: "the request body is larger than 100 kB", unexpected: false };
    if (parserError === "entity.parse.failed") return { status: 400, code: "invalid_request", message: "the request body is not valid JSON", details: { field: "body" }, unexpected: false };
    return { status: 400, code: "invalid_request", message: "the request body could not be read", details: { field: "body" }, unexpected: false };
  }
  // Another process holds the database's write lock past the service's short busy timeout: nothing
  // was written, and the request can be repeated (with its Idempotency-Key, for a mutation).
  if (isStoreBusy(err)) return { status: 503, code: "store_busy", message: "the database is busy (another process holds its write lock); nothing was changed, retry shortly", retryAfterSeconds: 1, unexpected: false };
  return { status: 500, code: "internal", message: "internal error", unexpected: true };
}

/**
 * Details are structured data chosen to be safe; their strings still pass the redaction, value by
 * value before anything is serialized (redacting the JSON text missed a secret holding `"` or `\`,
 * which JSON escapes).
 */
function redactDetails(details: unknown): unknown {
  return redactDeep(details);
}

/** The error as a log field: message and stack redacted, the cause chain kept. */
export function loggableError(err: unknown, depth = 0): Record<string, unknown> {
  if (!(err instanceof Error)) return { value: redactSecrets(String(err)) };
  return {
    type: err.name,
    message: redactSecrets(err.message),
    stack: err.stack === undefined ? undefined : redactSecrets(err.stack),
    ...(err.cause !== undefined && depth < 3 ? { cause: loggableError(err.cause, depth + 1) } : {}),
  };
}

/** RFC 6750: the scheme, and `error="invalid_token"` when a token was presented and refused. */
function wwwAuthenticate(err: unknown): string {
  const reason = err instanceof UnauthenticatedError ? (err.details as { reason?: string } | undefined)?.reason : undefined;
  return reason === "invalid_token" || reason === "malformed" ? 'Bearer realm="deployer", error="invalid_token"' : 'Bearer realm="deployer"';
}

/** The last handler: no route matched. */
export const notFoundHandler: RequestHandler = (req, _res, next) => {
  next(new NotFoundError(`no route ${req.method} ${req.path.slice(0, 200)}`));
};

export function errorHandler(logger: Logger): ErrorRequestHandler {
  return (err, req, res, next) => {
    const requestId = String(res.locals.requestId ?? "");
    const c = classify(err);
    if (c.unexpected) logger.error({ requestId, method: req.method, path: req.path, err: loggableError(err) }, "unexpected error");
    else if (c.code === "store_unavailable") logger.error({ requestId, method: req.method, path: req.path, err: loggableError(err) }, "database unavailable");
    if (res.headersSent) {
      // A stream (SSE, log) already answered: nothing can be said any more but the connection.
      next(err);
      return;
    }
    if (c.retryAfterSeconds !== undefined) res.setHeader("Retry-After", String(c.retryAfterSeconds));
    if (c.status === 401) res.setHeader("WWW-Authenticate", wwwAuthenticate(err));
    res.setHeader("Cache-Control", "no-store");
    const body: ErrorBody = {
      error: {
        code: c.code,
        message: c.unexpected ? `internal error (request ${requestId}); the service log has the details` : c.message,
        ...(c.details !== undefined ? { details: c.details } : {}),
        requestId,
      },
    };
    res.status(c.status).json(body);
  };
}
