/**
 * Structured logs (pino, JSON lines on stdout) and the request middleware that writes one line per
 * request: method, path (without the query string), status, duration and request id. Credentials are
 * redacted by pino wherever they appear in a logged object; the request logger never logs headers or
 * bodies in the first place.
 */
import { randomBytes } from "crypto";
import type { RequestHandler } from "express";
import pino, { type Logger, type LevelWithSilent } from "pino";

/** Paths pino censors in every log line (tokens arrive with issue 5; nothing logs them even now). */
export const REDACT_PATHS = [
  "req.headers.authorization",
  "req.headers.cookie",
  "headers.authorization",
  "headers.cookie",
  "*.authorization",
  "*.token",
  "*.secret",
  "*.password",
  "*.passphrase",
];

export function createLogger(options: { level?: LevelWithSilent; destination?: pino.DestinationStream } = {}): Logger {
  return pino(
    {
      level: options.level ?? "info",
      base: { service: "pulumi-aws-deployer" },
      redact: { paths: REDACT_PATHS, censor: "[secret]" },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    options.destination,
  );
}

/** Client request ids are kept when they are short and plain; anything else is replaced. */
const REQUEST_ID_RE = /^[A-Za-z0-9._:-]{1,128}$/;

export function newRequestId(): string {
  return `req_${randomBytes(12).toString("hex")}`;
}

/** `X-Request-Id`: the client's if it is safe to echo and log, else a new one; on the response too. */
export const requestId: RequestHandler = (req, res, next) => {
  const given = req.get("x-request-id");
  const id = given !== undefined && REQUEST_ID_RE.test(given) ? given : newRequestId();
  res.locals.requestId = id;
  res.setHeader("X-Request-Id", id);
  next();
};

/** Probes and scrapes, logged at debug level when they succeed. */
const QUIET_PATHS: ReadonlySet<string> = new Set(["/healthz", "/readyz", "/metrics"]);

/** One line per finished (or abandoned) request. */
export function requestLogger(logger: Logger): RequestHandler {
  return (req, res, next) => {
    const started = process.hrtime.bigint();
    let logged = false;
    const done = () => {
      if (logged) return;
      logged = true;
      const durationMs = Number(process.hrtime.bigint() - started) / 1e6;
      const status = res.headersSent ? res.statusCode : 499;
      const line = {
        requestId: res.locals.requestId,
        method: req.method,
        path: req.path.slice(0, 300),
        route: req.route?.path,
        status,
        durationMs: Math.round(durationMs * 10) / 10,
        principal: res.locals.principal?.name,
      };
      if (status >= 500) logger.error(line, "request");
      else if (status < 400 && QUIET_PATHS.has(req.path)) logger.debug(line, "request");
      else logger.info(line, "request");
    };
    res.on("finish", done);
    res.on("close", done);
    next();
  };
}
