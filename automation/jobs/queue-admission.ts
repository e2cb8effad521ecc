/**
 * Admission to the queue (queue.ts): what a submit checks before it writes the job row (the stack and
 * its environment, the version, the blocked flag, the queue caps), the idempotent replay of a request
 * already admitted, and a queued job's place in its stack's queue.
 */
import type { Environment } from "../environment";
import { ConfigError, ConflictError, EngineUnavailableError, QueueFullError } from "../errors";
import type { Job, JobRequestParams, Store } from "../store";
import { approvalsRequiredFor } from "./approvals";
import { assertNotBlocked } from "./guard";
import type { SubmitRequest } from "./types";

/** A job as callers see it: with its place in its stack's queue while it waits. */
export type QueuedJobView = Job & { readonly queuePosition?: number };

/** What a refused submit tells the client to wait before trying again while the deployer shuts down. */
export const SHUTDOWN_RETRY_AFTER_SECONDS = 30;

/** The queue, as its admission sees it. */
export interface AdmissionHost {
  readonly store: Store;
  load(stack: string): Environment;
  /** False once the queue shuts down: every submit is refused. */
  accepting(): boolean;
  /** The job was written, queued (its `job:queued`, and a dispatch pass). */
  queued(job: Job): void;
}

export interface QueueCaps {
  readonly maxQueuedPerStack: number;
  readonly maxQueuedPerPrincipal: number;
}

export class QueueAdmission {
  /** The end of the last submit's admission (submits are admitted one at a time, see `submit`). */
  private admitting: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly host: AdmissionHost,
    private readonly caps: QueueCaps,
  ) {}

  /** Queues a job (JobQueue.submit says what is refused). */
  submit(req: SubmitRequest): Promise<{ job: QueuedJobView; created: boolean }> {
    // One at a time: a submit's checks (blocked stack, queue caps, idempotency key) and its insert are
    // not interleaved with another's, so two submits cannot both pass a cap only one of them fits under.
    // Across processes (replicas) the caps are approximate; the key's uniqueness is the store's.
    const admitted = this.admitting.then(() => this.admit(req));
    this.admitting = admitted.catch(() => undefined);
    return admitted;
  }

  private async admit(req: SubmitRequest): Promise<{ job: QueuedJobView; created: boolean }> {
    const { store } = this.host;
    if (req.idempotencyKey !== undefined) {
      const existing = await store.findByIdempotencyKey(req.idempotencyKey);
      if (existing) return { job: await this.replay(existing, req), created: false };
    }
    if (!this.host.accepting()) {
      throw new EngineUnavailableError("the deployer is shutting down", { details: { retryAfterSeconds: SHUTDOWN_RETRY_AFTER_SECONDS } });
    }
    const env = this.host.load(req.stack);
    const params: JobRequestParams = { ...req.params };
    let version = params.version;
    if (req.operation === "up" || req.operation === "preview") {
      version ??= env.settings.app.version;
      if (version === undefined) {
        throw new ConfigError(`version is required: ${env.file} sets no app.version`, { details: { field: "version" } });
      }
    }
    await assertNotBlocked(store, env.name, req.operation);
    await this.assertQueueRoom(env.name, req.requestedBy);
    let job: Job;
    try {
      job = await store.createJob({
        stack: env.name,
        operation: req.operation,
        requestedBy: req.requestedBy,
        source: req.source,
        engine: env.engine,
        status: "queued",
        version,
        target: params.target && params.target.length > 0 ? [...params.target] : undefined,
        message: params.message,
        reason: params.reason,
        approvalsRequired: approvalsRequiredFor(env, req.operation),
        idempotencyKey: req.idempotencyKey,
        requestHash: req.requestHash,
        params,
      });
    } catch (err) {
      // Two requests with one key at once (another process's): the loser answers like a replay.
      const existing = req.idempotencyKey !== undefined && err instanceof ConflictError ? await store.findByIdempotencyKey(req.idempotencyKey) : undefined;
      if (existing) return { job: await this.replay(existing, req), created: false };
      throw err;
    }
    // Its place is read before the queue hears of it: the answer says where the job was queued, not
    // whether a pass has started it by then (a queued job with no position).
    const view = await withPosition(store, job);
    this.host.queued(job);
    return { job: view, created: true };
  }

  /** Refuses a submit beyond the queue caps (per stack, per principal), naming the cap. */
  private async assertQueueRoom(stack: string, principal: string): Promise<void> {
    const { maxQueuedPerStack, maxQueuedPerPrincipal } = this.caps;
    const onStack = await this.host.store.countQueued({ stack });
    if (onStack >= maxQueuedPerStack) {
      throw new QueueFullError(`stack ${stack} has ${onStack} jobs queued, the cap per stack (${maxQueuedPerStack}); retry when some have run`, {
        details: { stack, cap: "per stack", limit: maxQueuedPerStack, retryAfterSeconds: 30 },
      });
    }
    const mine = await this.host.store.countQueued({ requestedBy: principal });
    if (mine >= maxQueuedPerPrincipal) {
      throw new QueueFullError(`${principal} has ${mine} jobs queued, the cap per principal (${maxQueuedPerPrincipal}); retry when some have run`, {
        details: { principal, cap: "per principal", limit: maxQueuedPerPrincipal, retryAfterSeconds: 30 },
      });
    }
  }

  private async replay(existing: Job, req: SubmitRequest): Promise<QueuedJobView> {
    if (existing.requestHash !== req.requestHash) {
      const shown = req.idempotencyKey?.startsWith("api:") ? "this Idempotency-Key" : `Idempotency-Key "${req.idempotencyKey}"`;
      throw new ConflictError(`${shown} was used for a different request (job ${existing.id})`, {
        details: { jobId: existing.id },
      });
    }
    return withPosition(this.host.store, existing);
  }
}

/** 1-based place among the queued jobs of its stack (1: runs next); undefined unless queued. */
export async function queuePosition(store: Store, job: Job): Promise<number | undefined> {
  return job.status === "queued" ? store.queuePosition(job.id) : undefined;
}

/** The job with its `queuePosition` while it is queued. */
export async function withPosition(store: Store, job: Job): Promise<QueuedJobView> {
  const position = await queuePosition(store, job);
  return position === undefined ? job : { ...job, queuePosition: position };
}
