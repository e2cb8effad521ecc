/**
 * Rate limits (express-rate-limit; in memory, per process, unless a shared store is given: on
 * PostgreSQL every replica counts against the same budget, postgres/rate-limits.ts):
 *
 * - **mutations**, per principal: every non-GET route, after authentication, counts against the
 *   caller's token name (DEPLOYER_RATE_LIMIT_PER_MINUTE, default 60 a minute);
 * - **unauthenticated**, per client address: every request that fails authentication counts; once an
 *   address is over the limit (DEPLOYER_UNAUTH_RATE_LIMIT_PER_MINUTE, default 30 a minute) its failed
 *   authentications answer 429 instead of 401. A valid token is never refused here, whatever others
 *   sent from its address (behind a TLS proxy every client has the proxy's address); tokens are 256
 *   random bits, so the limit bounds noise, not guessing.
 *
 * Both answer 429 `rate_limited` in the error shape, with `Retry-After` and the IETF draft-8
 * `RateLimit` / `RateLimit-Policy` headers (also sent on the requests that were counted and allowed).
 *
 * A shared store that fails (the database is unreachable) lets the request through uncounted, and
 * the limiter logs it at error: failing closed would turn every request into an error while the
 * database is away, and what the limits guard tolerates a short gap (mutations are authenticated and
 * need the database themselves; a failed authentication is refused with 401 anyway).
 */
import type { NextFunction, Request, Response } from "express";
import { ipKeyGenerator, rateLimit, type RateLimitRequestHandler, type Store as RateLimitStore } from "express-rate-limit";
import type { Logger } from "pino";
import type { Principal } from "./auth";
import { RateLimitedError } from "./errors";

export const DEFAULT_MUTATIONS_PER_MINUTE = 60;
export const DEFAULT_UNAUTHENTICATED_PER_MINUTE = 30;

export interface RateLimitOptions {
  /** Mutations per principal per window. Default 60. */
  readonly mutationsPerWindow?: number;
  /** Failed authentications per address per window. Default 30. */
  readonly unauthenticatedPerWindow?: number;
  /** Default one minute. */
  readonly windowMs?: number;
  readonly logger?: Logger;
  /** Counts shared by the replicas (PostgreSQL), one store per limiter; default each process counts in memory. */
  readonly sharedStore?: (limiter: "mutations" | "unauthenticated", windowMs: number) => RateLimitStore;
}

/** The client's address as the limits key it: IPv6 addresses by their /56, as express-rate-limit advises. */
export function clientAddress(req: Request): string {
  return req.ip ?? req.socket.remoteAddress ?? "unknown";
}

export class RateLimits {
  readonly mutationsPerWindow: number;
  readonly unauthenticatedPerWindow: number;
  readonly windowMs: number;
  private readonly mutations: RateLimitRequestHandler;
  private readonly unauthenticated: RateLimitRequestHandler;

  constructor(options: RateLimitOptions = {}) {
    this.mutationsPerWindow = options.mutationsPerWindow ?? DEFAULT_MUTATIONS_PER_MINUTE;
    this.unauthenticatedPerWindow = options.unauthenticatedPerWindow ?? DEFAULT_UNAUTHENTICATED_PER_MINUTE;
    this.windowMs = options.windowMs ?? 60_000;
    const logger = options.logger;
    const common = {
      windowMs: this.windowMs,
      standardHeaders: "draft-8" as const,
      legacyHeaders: false,
      // The library's own checks log to the console; what they guard (proxies, key generators) is set here.
      validate: { xForwardedForHeader: false, forwardedHeader: false, trustProxy: false },
      logger: { error: (err: unknown, msg?: string) => logger?.error({ err: String(err) }, msg ?? "rate limit"), warn: (err: unknown, msg?: string) => logger?.warn({ err: String(err) }, msg ?? "rate limit") },
      handler: (req: Request, _res: Response, next: NextFunction) => next(limited(req, this.windowMs)),
      // A failing shared store: through, uncounted, logged at error (see the file comment).
      passOnStoreError: true,
    };
    const store = (limiter: "mutations" | "unauthenticated") => (options.sharedStore ? { store: options.sharedStore(limiter, this.windowMs) } : {});
    this.mutations = rateLimit({
      ...common,
      limit: this.mutationsPerWindow,
      identifier: "mutations",
      ...store("mutations"),
      keyGenerator: (_req, res) => `p:${(res.locals.principal as Principal).name}`,
    });
    this.unauthenticated = rateLimit({
      ...common,
      limit: this.unauthenticatedPerWindow,
      identifier: "unauthenticated",
      ...store("unauthenticated"),
      keyGenerator: (req) => `a:${ipKeyGenerator(clientAddress(req))}`,
    });
  }

  /** Counts one mutation of the authenticated principal (`res.locals.principal`); rejects with 429 over the limit. */
  countMutation(req: Request, res: Response): Promise<void> {
    return run(this.mutations, req, res);
  }

  /** Counts one failed authentication of the address; rejects with 429 over the limit, resolves under it. */
  countUnauthenticated(req: Request, res: Response): Promise<void> {
    return run(this.unauthenticated, req, res);
  }
}

function limited(req: Request, windowMs: number): RateLimitedError {
  const reset = (req as Request & { rateLimit?: { resetTime?: Date } }).rateLimit?.resetTime;
  const seconds = reset ? Math.max(1, Math.ceil((reset.getTime() - Date.now()) / 1000)) : Math.ceil(windowMs / 1000);
  return new RateLimitedError(`too many requests: retry in ${seconds} s`, { retryAfterSeconds: seconds });
}

function run(limiter: RateLimitRequestHandler, req: Request, res: Response): Promise<void> {
  return new Promise((resolve, reject) => {
    void limiter(req, res, (err?: unknown) => (err ? reject(err) : resolve()));
  });
}
