/**
 * The service, assembled: store, engines (deps), job queue, drift schedule, metrics, readiness and
 * the express app, served on a port, behind bearer tokens (tokens.ts) with an audit trail (audit.ts).
 * `startServer` resolves once it listens (tests pass port 0) with the address and `stop()`, which is
 * also what SIGTERM runs (main.ts):
 *
 *   1. readiness turns false and new operations answer 503 `engine_unavailable` with Retry-After;
 *   2. the drift schedule and webhook retries stop; running jobs get the graceful interrupt (`queue.shutdown(grace)`);
 *      whatever is still running after the grace is marked `interrupted` by the queue;
 *   3. open event streams end, the HTTP server closes, the store closes.
 *
 * The service never starts open: without a tokens file (DEPLOYER_TOKENS_FILE) the first start writes
 * `<dataDir>/tokens.yaml` with one admin token's hash and hands the token to `onAdminTokenCreated`
 * once (main.ts prints it); a bad tokens file stops the start with `TokensFileError`.
 */
import { randomBytes } from "crypto";
import { createServer, type Server } from "http";
import type { AddressInfo } from "net";
import type { Duplex } from "stream";
import { hostname } from "os";
import * as path from "path";
import type { Logger } from "pino";
import { createDeps } from "../automation/deps";
import type { Environment } from "../automation/environment";
import { processIncarnation } from "../automation/jobs/lease";
import { JobQueue } from "../automation/jobs/queue";
import { DriftScheduler } from "../automation/jobs/schedule";
import { WebhookNotifier, type WebhookNotifierOptions } from "../automation/jobs/webhook";
import type { OperationDeps } from "../automation/operations/context";
import { redactSecrets, shortSecretVariables, shortSecretWarning } from "../automation/redact";
import { connectStore, PostgresStore, type Job, type Store } from "../automation/store";
import { createApp } from "./app";
import { AuditTrail } from "./audit";
import type { ApiContext, Lifecycle } from "./context";
import { environmentsIn } from "./environments";
import { loggableError } from "./errors";
import { createLogger, newRequestId } from "./logging";
import { ServiceMetrics } from "./metrics";
import { RateLimits, type RateLimitOptions } from "./rate-limit";
import { Readiness } from "./readiness";
import { EventStreams } from "./sse";
import { bootstrapTokens, TokenRegistry, type TokensFileError } from "./tokens";

export interface ServerOptions {
  /** Default 8080; 0 picks a free port. */
  readonly port?: number;
  /** Default 127.0.0.1 (plain HTTP: put a TLS proxy in front to serve further). */
  readonly host?: string;
  /** DEPLOYER_TOKENS_FILE; default `<dataDir>/tokens.yaml`, created with one admin token on first start. */
  readonly tokensFile?: string;
  /** Called once, after listening, on the start that created the first admin token. Default: print it to stderr. */
  readonly onAdminTokenCreated?: (info: { token: string; file: string; url: string }) => void;
  /** Rate limits: mutations per principal, failed authentications per address, per window. */
  readonly rateLimits?: Omit<RateLimitOptions, "logger">;
  /** Audit records older than this are deleted at start and daily. Default 90. */
  readonly auditRetentionDays?: number;
  /** Days a finished job's events (its log) are kept; the job row stays. Default 30. */
  readonly eventRetentionDays?: number;
  /** Queue caps: jobs queued per stack (default 20) and per principal (default 40); 429 beyond. */
  readonly maxQueuedPerStack?: number;
  readonly maxQueuedPerPrincipal?: number;
  /** Proxy hops whose X-Forwarded-For names the client. Default 0. */
  readonly trustProxyHops?: number;
  /** `DEPLOYER_DATA_DIR`: the store and the offline engine's snapshots. */
  readonly dataDir: string;
  /** DEPLOYER_DATABASE_URL: PostgreSQL shared with other replicas instead of SQLite in the data directory. */
  readonly databaseUrl?: string;
  /** Environment files; default the repository's `environments/`. */
  readonly envDir?: string;
  /** Jobs running at once (engine processes). Default 2. */
  readonly maxConcurrent?: number;
  /** How long `stop()` lets running jobs stop gracefully. Default 25 000 ms. */
  readonly shutdownGraceMs?: number;
  /** Default: JSON lines on stdout at `info`. */
  readonly logger?: Logger;
  /** Replaces the operations' collaborators (tests: a controllable engine). */
  readonly deps?: (store: Store) => OperationDeps;
  /** Test only: the offline engine runs this program instead of the repository's (DEPLOYER_OFFLINE_PROGRAM). */
  readonly offlineProgramPath?: string;
  /** A job's timeout; default the environment's `deploy.timeoutMinutes`. */
  readonly timeoutMs?: (env: Environment) => number;
  readonly leaseTtlMs?: number;
  /** How often the queue looks in the store for jobs to run (JobQueueOptions.pollIntervalMs). Default: the queue's (every second on a store that announces changes, PostgreSQL; none on SQLite). */
  readonly pollIntervalMs?: number;
  /** SSE heartbeat interval. Default 15 000 ms. */
  readonly sseHeartbeatMs?: number;
  /** Open event streams one principal may hold at once. Default 20. */
  readonly maxStreamsPerPrincipal?: number;
  /** How long an engine's availability is reused by readiness. Default 5000 ms. */
  readonly readinessCacheMs?: number;
  /** The process environment (secret redaction, smoke test base URL). Default `process.env`. */
  readonly processEnv?: NodeJS.ProcessEnv;
  /** This instance's lease owner id; default `service:<host>:<pid>:<random>`. */
  readonly owner?: string;
  /** Scheduled drift checks (`deploy.driftSchedule`). Default true. */
  readonly driftSchedule?: boolean;
  /** Drift notifications (DEPLOYER_WEBHOOK_URL / DEPLOYER_WEBHOOK_SECRET); tests may shorten the retries. */
  readonly webhook?: Pick<WebhookNotifierOptions, "url" | "secret" | "retryDelaysMs" | "attempts" | "timeoutMs">;
}

export interface RunningServer {
  /** `http://<host>:<port>` */
  readonly url: string;
  readonly port: number;
  readonly ctx: ApiContext;
  readonly store: Store;
  readonly queue: JobQueue;
  /** Jobs `recover()` found interrupted at start. */
  readonly recovered: readonly Job[];
  readonly scheduler?: DriftScheduler;
  readonly notifier?: WebhookNotifier;
  /** The tokens file in force (what `reloadTokens` re-reads). */
  readonly tokensFile: string;
  /** SIGHUP: re-reads the tokens file; a bad file keeps the tokens in force and the reason is logged. */
  reloadTokens(): { ok: true; count: number } | { ok: false; error: TokensFileError };
  /** Step 1 of the shutdown only: readiness false, operations refused. `stop()` does the rest. */
  beginShutdown(): void;
  /** Shuts down (see the file comment); resolves with the jobs interrupted by it. Idempotent. */
  stop(options?: { graceMs?: number }): Promise<Job[]>;
}

export const DEFAULT_PORT = 8080;
export const DEFAULT_HOST = "127.0.0.1";
export const DEFAULT_SHUTDOWN_GRACE_MS = 25_000;
export const DEFAULT_AUDIT_RETENTION_DAYS = 90;
export const DEFAULT_EVENT_RETENTION_DAYS = 30;
const DAY_MS = 24 * 60 * 60 * 1000;
/** Of the grace period, what is kept back for closing connections and the store after the jobs. */
const CLOSE_RESERVE_MS = 1_500;
/** How long the service's store waits for another process's write lock before it answers busy. */
export const SERVICE_BUSY_TIMEOUT_MS = 250;

/** `service:<host>:<pid>.<start time>:<random>`: one incarnation of this process (lease.ts). */
export function serviceOwner(): string {
  return `service:${hostname().replace(/:/g, "-")}:${processIncarnation()}:${randomBytes(4).toString("hex")}`;
}

export async function startServer(options: ServerOptions): Promise<RunningServer> {
  const logger = options.logger ?? createLogger();
  const dataDir = path.resolve(options.dataDir);
  const graceMs = options.shutdownGraceMs ?? DEFAULT_SHUTDOWN_GRACE_MS;
  const short = shortSecretVariables(options.processEnv ?? process.env);
  if (short.length > 0) logger.warn({ variables: short }, shortSecretWarning(short));
  // A short busy timeout: better-sqlite3 waits for another process's write lock synchronously, holding
  // the event loop. What cannot wait is retried off the hot path (events, lease renewals, outcomes);
  // a request gets 503 store_busy with Retry-After.
  const store = await connectStore({ dataDir, databaseUrl: options.databaseUrl, busyTimeoutMs: SERVICE_BUSY_TIMEOUT_MS });
  let retentionTimer: NodeJS.Timeout | undefined;
  try {
    const boot = bootstrapTokens({ configuredFile: options.tokensFile, dataDir });
    const tokens = new TokenRegistry(boot.file, boot.tokens);
    logger.info({ file: boot.file, tokens: boot.tokens.size, created: boot.createdToken !== undefined }, "tokens loaded");
    const audit = new AuditTrail(store, logger);
    const retentionDays = options.auditRetentionDays ?? DEFAULT_AUDIT_RETENTION_DAYS;
    await audit.prune(retentionDays);
    const eventRetentionDays = options.eventRetentionDays ?? DEFAULT_EVENT_RETENTION_DAYS;
    const pruneEvents = async () => {
      try {
        const deleted = await store.pruneEvents(eventRetentionDays * DAY_MS);
        if (deleted > 0) logger.info({ deleted, retentionDays: eventRetentionDays }, "event retention");
      } catch (err) {
        logger.error({ err: loggableError(err) }, "event retention failed");
      }
    };
    await pruneEvents();
    const rateLimits = new RateLimits({
      ...options.rateLimits,
      logger,
      // Replicas on one PostgreSQL share their counts; a SQLite service is one process, counting in memory.
      sharedStore: store instanceof PostgresStore ? (limiter, windowMs) => store.rateLimitStore(`${limiter}:`, windowMs) : undefined,
    });
    const deps =
      options.deps?.(store) ??
      createDeps({
        store,
        dataDir,
        env: options.processEnv,
        programPath: options.offlineProgramPath === undefined ? undefined : path.resolve(options.offlineProgramPath),
      });
    const environments = environmentsIn(options.envDir);
    const queue = new JobQueue({
      store,
      deps,
      loadEnvironment: (stack) => environments.load(stack),
      owner: options.owner ?? serviceOwner(),
      maxConcurrent: options.maxConcurrent,
      leaseTtlMs: options.leaseTtlMs,
      pollIntervalMs: options.pollIntervalMs,
      timeoutMs: options.timeoutMs,
      maxQueuedPerStack: options.maxQueuedPerStack,
      maxQueuedPerPrincipal: options.maxQueuedPerPrincipal,
    });
    const lifecycle: Lifecycle = { shuttingDown: false, retryAfterSeconds: Math.max(1, Math.ceil(graceMs / 1000)) };
    const metrics = new ServiceMetrics({ store, environments, queueStatus: () => queue.status() });
    const readiness = new Readiness({
      store,
      deps,
      environments,
      queueStatus: () => queue.status(),
      shuttingDown: () => lifecycle.shuttingDown,
      cacheMs: options.readinessCacheMs,
    });
    const streams = new EventStreams({
      store,
      queue,
      heartbeatMs: options.sseHeartbeatMs,
      maxPerPrincipal: options.maxStreamsPerPrincipal,
      onError: (err) => logger.warn({ err: loggableError(err) }, "event streams: following the store failed"),
    });
    const ctx: ApiContext = { store, queue, deps, environments, metrics, readiness, streams, logger, lifecycle, tokens, audit, rateLimits };
    observeQueue(queue, metrics, logger);
    const notifier = options.webhook
      ? new WebhookNotifier({
          ...options.webhook,
          onError: (err, delivery) => logger.warn({ delivery: { id: delivery.id, attempts: delivery.attempts, status: delivery.status }, err: loggableError(err) }, "drift webhook not delivered"),
        })
      : undefined;
    const scheduler =
      options.driftSchedule === false
        ? undefined
        : new DriftScheduler({
            queue,
            store,
            environments: () => environments.list().flatMap((name) => {
              try {
                return [environments.load(name)];
              } catch {
                return []; // a file that does not load is reported on GET /v1/stacks
              }
            }),
            notifier,
            onError: (err, where) => logger.warn({ stack: where.stack, err: loggableError(err) }, "drift schedule"),
          });

    const app = createApp(ctx, { trustProxyHops: options.trustProxyHops });
    const server = createServer(app);
    // A request (headers and a body of at most 100 kB) arrives quickly or not at all; SSE responses
    // may last as long as their job, which these timeouts do not limit.
    server.headersTimeout = 30_000;
    server.requestTimeout = 60_000;
    server.on("clientError", answerClientError);

    const recovered = await queue.recover();
    if (recovered.length > 0) {
      logger.warn({ jobs: recovered.map((j) => ({ id: j.id, stack: j.stack, operation: j.operation })) }, "jobs left running by a previous process are interrupted");
    }
    // Listen before anything runs: a port in use leaves nothing behind but the store to close.
    await listen(server, options.port ?? DEFAULT_PORT, options.host ?? DEFAULT_HOST);
    queue.start();
    // The scheduler announces drift found by any drift job; without it, the notifier listens itself.
    if (scheduler) scheduler.start();
    else if (notifier) queue.on("job:done", (job) => void notifier.notifyDrift(job));
    const address = server.address() as AddressInfo;
    const host = address.family === "IPv6" ? `[${address.address}]` : address.address;
    const url = `http://${host}:${address.port}`;
    retentionTimer = setInterval(() => {
      void audit.prune(retentionDays);
      void pruneEvents();
    }, DAY_MS);
    retentionTimer.unref();
    if (boot.createdToken !== undefined) (options.onAdminTokenCreated ?? printAdminToken)({ token: boot.createdToken, file: boot.file, url });
    const reloadTokens = () => {
      const result = tokens.reload();
      if (result.ok) {
        // A revoked token's open streams end with it (a stream on a job awaiting approval could live for hours).
        const names = new Set(tokens.tokens.names);
        const closed = streams.closeRevoked((name) => names.has(name));
        logger.info({ file: tokens.file, tokens: result.count, closedStreams: closed }, "tokens reloaded");
      }
      else logger.error({ file: tokens.file, reason: result.error.message }, "tokens file not reloaded: keeping the tokens in force");
      return result;
    };

    let stopping: Promise<Job[]> | undefined;
    const beginShutdown = () => {
      lifecycle.shuttingDown = true;
    };
    const stop = (stopOptions: { graceMs?: number } = {}) =>
      (stopping ??= (async () => {
        beginShutdown();
        clearInterval(retentionTimer);
        scheduler?.stop();
        notifier?.close();
        const grace = stopOptions.graceMs ?? graceMs;
        const interrupted = await queue.shutdown(Math.max(0, grace - CLOSE_RESERVE_MS));
        streams.closeAll();
        await closeServer(server, Math.min(1_000, Math.max(100, grace / 10)));
        await audit.flush();
        await store.close();
        return interrupted;
      })());
    return { url, port: address.port, ctx, store, queue, recovered, scheduler, notifier, tokensFile: tokens.file, reloadTokens, beginShutdown, stop };
  } catch (err) {
    clearInterval(retentionTimer);
    await store.close().catch(() => undefined);
    throw err;
  }
}

/** The first start's admin token, shown once on stderr with how to use it (never in the JSON log on stdout). */
function printAdminToken({ token, file, url }: { token: string; file: string; url: string }): void {
  process.stderr.write(
    [
      "",
      "deployer: no tokens were configured, so an admin token was created. It is shown this once only:",
      "",
      `    ${token}`,
      "",
      `Open the dashboard at ${url}/ and sign in with it (the field labelled Token).`,
      "",
      `Only its SHA-256 is stored, in ${file}. Use it as a bearer token, e.g.`,
      "",
      `    curl -H "Authorization: Bearer ${token}" ${url}/v1/stacks`,
      "",
      "Add more tokens (name, sha256, roles per stack) to that file, or set DEPLOYER_TOKENS_FILE; SIGHUP reloads it.",
      "",
      "",
    ].join("\n"),
  );
}

/**
 * What Node's HTTP parser refuses before express sees it (a URL or headers over 16 kB, a malformed
 * request line) is answered in the error shape too, instead of Node's bare status line.
 */
function answerClientError(err: NodeJS.ErrnoException, socket: Duplex): void {
  if (err.code === "ECONNRESET" || !socket.writable) {
    socket.destroy();
    return;
  }
  const tooLarge = err.code === "HPE_HEADER_OVERFLOW";
  const timeout = err.code === "ERR_HTTP_REQUEST_TIMEOUT";
  const status = tooLarge ? 431 : timeout ? 408 : 400;
  const reason = tooLarge ? "Request Header Fields Too Large" : timeout ? "Request Timeout" : "Bad Request";
  const message = tooLarge ? "the request's URL and headers are larger than 16 kB" : timeout ? "the request did not arrive in time" : "the request is not valid HTTP";
  const body = JSON.stringify({ error: { code: "invalid_request", message, requestId: newRequestId() } });
  socket.end(`HTTP/1.1 ${status} ${reason}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n${body}`);
}

/** Job lifecycle in the log and the metrics: the queue's typed events, not scattered logging. */
function observeQueue(queue: JobQueue, metrics: ServiceMetrics, logger: Logger): void {
  queue.on("job:queued", (job) => logger.info({ jobId: job.id, stack: job.stack, operation: job.operation, requestedBy: job.requestedBy }, "job queued"));
  queue.on("job:start", (job) => logger.info({ jobId: job.id, stack: job.stack, operation: job.operation }, "job started"));
  queue.on("job:done", (job) => {
    metrics.jobDone(job);
    const line = { jobId: job.id, stack: job.stack, operation: job.operation, status: job.status, error: job.error && { code: job.error.code, message: redactSecrets(job.error.message) } };
    if (job.status === "succeeded") logger.info(line, "job finished");
    else logger.warn(line, "job finished");
  });
  queue.on("job:error", (jobId, err) => logger.error({ jobId: jobId || undefined, err: loggableError(err) }, "job queue error"));
}

function listen(server: Server, port: number, host: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error) => reject(err);
    server.once("error", onError);
    server.listen(port, host, () => {
      server.off("error", onError);
      resolve();
    });
  });
}

/** Stops accepting, lets in-flight requests finish for up to `waitMs`, then drops what is left. */
function closeServer(server: Server, waitMs: number): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => server.closeAllConnections(), waitMs);
    timer.unref();
    server.close(() => {
      clearTimeout(timer);
      resolve();
    });
    server.closeIdleConnections();
  });
}
