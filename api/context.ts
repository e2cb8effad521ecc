/**
 * What the routes work with: the store, the job queue and the engines (all from automation/), plus
 * the service's own pieces. Built once by server.ts; routes receive it and never construct anything.
 */
import type { Logger } from "pino";
import type { JobQueue } from "../automation/jobs/queue";
import type { OperationDeps } from "../automation/operations/context";
import type { Store } from "../automation/store";
import type { AuditTrail } from "./audit";
import type { Environments } from "./environments";
import type { ServiceMetrics } from "./metrics";
import type { Readiness } from "./readiness";
import type { RateLimits } from "./rate-limit";
import type { EventStreams } from "./sse";
import type { TokenRegistry } from "./tokens";

export interface Lifecycle {
  /** Set the moment SIGTERM/SIGINT (or `stop()`) arrives: readiness turns false, new operations get 503. */
  shuttingDown: boolean;
  /** What `Retry-After` says while shutting down. */
  readonly retryAfterSeconds: number;
}

export interface ApiContext {
  readonly store: Store;
  readonly queue: JobQueue;
  readonly deps: OperationDeps;
  readonly environments: Environments;
  readonly metrics: ServiceMetrics;
  readonly readiness: Readiness;
  readonly streams: EventStreams;
  readonly logger: Logger;
  readonly lifecycle: Lifecycle;
  /** The bearer tokens in force (re-read on SIGHUP). */
  readonly tokens: TokenRegistry;
  /** Where the router records mutations and denials. */
  readonly audit: AuditTrail;
  readonly rateLimits: RateLimits;
}
