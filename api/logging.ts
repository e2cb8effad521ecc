/**
 * Structured logs (pino, JSON lines on stdout) and the request middleware that writes one line per
 * request: method, path (without the query string), status, duration, request id and principal (the
 * token's name). The request logger never logs headers, query strings or bodies in the first place;
 * credentials are censored by pino wherever a logged object carries one, and secret values in every line.
 */
import { randomUUID } from "crypto";
import type { RequestHandler } from "express";
import pino, { type Logger, type LevelWithSilent } from "pino";
import { jsonRedactor, secretValues } from "../automation/redact";

/** Paths pino censors in every log line, wherever a logged object carries a credential. */
export const REDACT_PATHS = [
  "req.headers.authorization",
  "req.headers.cookie",
  "headers.authorization",
  "headers.cookie",
  "authorization",
  "token",
  "password",
  "secret",
  "passphrase",
  "*.authorization",
  "*.token",
  "*.secret",
  "*.password",
  "*.passphrase",
  "*.*.authorization",
  "*.*.token",
  "*.*.secret",
  "*.*.password",
  "*.*.passphrase",
];

export interface LoggerOptions {
  readonly level?: LevelWithSilent;
  readonly destination?: pino.DestinationStream;
  /** Whose secret values are censored in every line (`redactSecrets`). Default `process.env`. */
  readonly env?: NodeJS.ProcessEnv;
}

/**
 * JSON lines, at `info` by default. Two layers keep secrets out: pino's `redact` censors credential
 * fields by path, and every serialized line passes a `jsonRedactor` of the secret values known at start, so the value of a secret
 * environment variable (PULUMI_CONFIG_PASSPHRASE, AWS credentials, …) is censored wherever it appears.
 */
export function createLogger(options: LoggerOptions = {}): Logger {
  const redact = jsonRedactor(secretValues(options.env ?? process.env));
  return pino(
    {
      level: options.level ?? "info",
      base: { service: "pulumi-aws-deployer" },
      redact: { paths: REDACT_PATHS, censor: "[secret]" },
      timestamp: pino.stdTimeFunctions.isoTime,
      hooks: { streamWrite: redact },
    },
    options.destination,
  );
}

/** Client request ids are kept when they are short and plain; anything else is replaced. */
const REQUEST_ID_RE = /^[A-Za-z0-9._:-]{1,128}$/;

/**
 * `req_` + 24 hex digits (96 random bits). From `randomUUID`, which draws on a buffered entropy pool:
 * `randomBytes` per request was a visible share of a read's CPU in the profile of GET /v1/jobs/:id.
 */
export function newRequestId(): string {
  const u = randomUUID();
  // xxxxxxxx-xxxx-4xxx-Nxxx-xxxxxxxxxxxx: the version and variant digits are not random; skip them.
  return `req_${u.slice(0, 8)}${u.slice(9, 13)}${u.slice(15, 18)}${u.slice(20, 23)}${u.slice(24, 30)}`;
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
