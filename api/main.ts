/**
 * `npm start`: the deploy service as a process. Reads and validates its configuration (a bad value
 * stops it with one line naming the variable, exit 2), starts the server (crash recovery, queue, drift
 * schedule, then listen) and logs where it listens as a JSON line (`"msg":"listening"`, with `url` and
 * `port`). SIGTERM or SIGINT: readiness turns false at once, new operations get 503, running jobs get
 * the graceful interrupt, and the process exits before DEPLOYER_SHUTDOWN_GRACE_SECONDS is over.
 *
 * Every /v1 route needs a bearer token (api/auth.ts, api/tokens.ts). Without DEPLOYER_TOKENS_FILE the
 * first start creates one admin token and prints it once on stderr; a tokens file that does not load
 * stops the start (exit 2, naming the file and the field); SIGHUP re-reads it (a bad file then keeps
 * the tokens in force and logs why).
 */
import * as path from "path";
import { loadConfig, ServiceConfigError } from "./config";
import { loggableError } from "./errors";
import { TokensFileError } from "./tokens";
import { createLogger } from "./logging";

/** Exit codes: 0 stopped cleanly, 1 failed at run time, 2 bad configuration. */
const EXIT = { ok: 0, failed: 1, config: 2 } as const;

async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig(process.env);
  } catch (err) {
    if (err instanceof ServiceConfigError) {
      process.stderr.write(`deployer: invalid configuration: ${err.message}\n`);
      process.exit(EXIT.config);
    }
    throw err;
  }
  // Logs go through process.stdout: a reader that goes away (a closed pipe) must cost log lines, never
  // the shutdown (pino's own synchronous destination retries a broken pipe forever at exit).
  process.stdout.on("error", () => undefined);
  const logger = createLogger({ level: config.DEPLOYER_LOG_LEVEL, destination: process.stdout });
  const graceMs = config.DEPLOYER_SHUTDOWN_GRACE_SECONDS * 1000;
  // Loaded after the configuration is known good: the automation layer is the heavy part of startup.
  const { startServer } = await import("./server");
  let server;
  try {
    server = await startServer({
      port: config.PORT,
      host: config.DEPLOYER_HOST,
      dataDir: path.resolve(config.DEPLOYER_DATA_DIR),
      databaseUrl: config.DEPLOYER_DATABASE_URL,
      envDir: config.DEPLOYER_ENV_DIR === undefined ? undefined : path.resolve(config.DEPLOYER_ENV_DIR),
      maxConcurrent: config.DEPLOYER_MAX_CONCURRENT,
      leaseTtlMs: config.DEPLOYER_LEASE_TTL_SECONDS * 1000,
      shutdownGraceMs: graceMs,
      offlineProgramPath: config.DEPLOYER_OFFLINE_PROGRAM,
      webhook: config.DEPLOYER_WEBHOOK_URL === undefined ? undefined : { url: config.DEPLOYER_WEBHOOK_URL, secret: config.DEPLOYER_WEBHOOK_SECRET ?? "" },
      tokensFile: config.DEPLOYER_TOKENS_FILE === undefined ? undefined : path.resolve(config.DEPLOYER_TOKENS_FILE),
      rateLimits: { mutationsPerWindow: config.DEPLOYER_RATE_LIMIT_PER_MINUTE, unauthenticatedPerWindow: config.DEPLOYER_UNAUTH_RATE_LIMIT_PER_MINUTE },
      auditRetentionDays: config.DEPLOYER_AUDIT_RETENTION_DAYS,
      eventRetentionDays: config.DEPLOYER_EVENT_RETENTION_DAYS,
      maxQueuedPerStack: config.DEPLOYER_MAX_QUEUED_PER_STACK,
      maxQueuedPerPrincipal: config.DEPLOYER_MAX_QUEUED_PER_PRINCIPAL,
      trustProxyHops: config.DEPLOYER_TRUST_PROXY,
      logger,
    });
  } catch (err) {
    if (err instanceof TokensFileError) {
      process.stderr.write(`deployer: invalid configuration: DEPLOYER_TOKENS_FILE: ${err.message}\n`);
      process.exit(EXIT.config);
    }
    throw err;
  }
  logger.info({ url: server.url, port: server.port, pid: process.pid, startupMs: Math.round(process.uptime() * 1000) }, "listening");
  process.stderr.write(`deployer: the dashboard is at ${server.url}/ (sign in with a token)\n`);
  if (config.DEPLOYER_HOST !== "127.0.0.1" && config.DEPLOYER_HOST !== "localhost" && config.DEPLOYER_HOST !== "::1") {
    logger.warn({ host: config.DEPLOYER_HOST }, "serving plain HTTP beyond loopback: bearer tokens cross the network in clear unless a TLS proxy is in front");
  }
  const running = server;
  process.on("SIGHUP", () => log(() => running.reloadTokens()));

  let signals = 0;
  const onSignal = (signal: NodeJS.Signals) => {
    signals++;
    if (signals > 1) process.exit(EXIT.failed);
    // Readiness and submissions flip first, and the deadline is set, before anything that could throw
    // (a log line to a closed stdout).
    server.beginShutdown();
    setTimeout(() => process.exit(EXIT.failed), Math.max(500, graceMs - 250)).unref();
    server.stop().then(
      (interrupted) => {
        log(() => logger.info({ interrupted: interrupted.map((j) => j.id) }, "stopped"));
        process.exit(EXIT.ok);
      },
      (err) => {
        log(() => logger.error({ err: loggableError(err) }, "shutdown failed"));
        process.exit(EXIT.failed);
      },
    );
    log(() => logger.info({ signal, graceSeconds: config.DEPLOYER_SHUTDOWN_GRACE_SECONDS }, "shutting down"));
  };
  process.on("SIGTERM", onSignal);
  process.on("SIGINT", onSignal);
}

/** A log line that must not stop the shutdown if stdout is gone. */
function log(write: () => void): void {
  try {
    write();
  } catch {
    // nothing to tell it to
  }
}

main().catch((err) => {
  const code = (err as NodeJS.ErrnoException)?.code;
  const message = code === "EADDRINUSE" || code === "EACCES" ? `cannot listen: ${(err as Error).message}` : err instanceof Error ? err.message : String(err);
  process.stderr.write(`deployer: ${message.split("\n")[0]}\n`);
  process.exit(EXIT.failed);
});
