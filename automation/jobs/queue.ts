/**
 * The job queue: every operation the service runs is a job row in the store, queued first and run in
 * the background, FIFO per stack, one running job per stack (under the same stack lease the CLI
 * takes, so a CLI run and a service job never overlap) and at most `maxConcurrent` running in this
 * process (each is an engine process).
 *
 * Dispatching is driven by events, never by sleeping: a submit, a job's end, an unlock and `start()`
 * each ask for a pass over the stacks with queued jobs. One pass runs at a time (a pass reads the
 * store between its decisions, so a second one could pick the same job or slot): asked for while one
 * runs, another follows it. The only timers are slow, unref'd safety nets:
 * a retry while a stack's lease is held elsewhere (a CLI run, another replica) and a sweep that marks
 * `interrupted` the running jobs whose holder vanished without releasing its lease.
 *
 * Replicas (several processes on one shared store, PostgreSQL): each dispatches from the same rows.
 * A job queued through one runs on whichever has a free slot: the store is polled while a slot is
 * free, and its change feed (`Store.watch`) asks for a pass when a job is queued or a lease released
 * anywhere (queue-wakeups.ts). Per-stack FIFO and one running job per stack hold across them through
 * the stack lease and the claim under it (see `run`); a replica that dies leaves its running jobs to
 * the others' sweep once its leases lapse, and its queued jobs to their polls.
 *
 * The store is the source of truth: queued jobs carry their request (`Job.params`), so a restarted
 * process runs what a crashed one had queued; `recover()` turns what it left running into
 * `interrupted` and blocks those stacks for mutations until an admin `unlock`s them.
 *
 * Approvals (approvals.ts holds the rules, queue-approvals.ts the queue's side of them): on a stack whose environment requires them, a deployment, rollback or
 * destroy runs in two phases. Its plan phase runs like any job up to the operation's `beforeApply`,
 * then the job becomes `awaiting_approval`, holding no lease, slot or engine process; mutations of
 * the stack stay queued behind it (previews and drift checks run). The approval that reaches
 * `approvalsRequired` queues it again in its original place; its apply phase applies only if a fresh
 * preview matches the approved one. A rejection, a cancel or the expiry of the wait (checked by an
 * unref'd timer, at dispatch and at recover) ends it.
 *
 * Memory per running job is a handful of objects: events go to the store and to live subscribers,
 * never into a buffer here.
 */
import { EventEmitter } from "events";
import type { Engine } from "../engine/port";
import { assertStackName, type Environment } from "../environment";
import { CanceledError, ConfigError, ConflictError, DeployerError, EngineUnavailableError, isStoreBusy, NotFoundError, OutcomeKeptError, QueueFullError, toDeployerError } from "../errors";
import { scrubEvent, type OperationDeps } from "../operations/context";
import {
  MUTATING_OPERATIONS,
  TERMINAL_STATUSES,
  type Job,
  type JobPatch,
  type JobRequestParams,
  type Lease,
  type Store,
  type UpdateJobOptions,
} from "../store";
import { approvalPhase, approvalsOf, approvalsRequiredFor } from "./approvals";
import { executeJob, type JobParams } from "./execute";
import { QueueApprovals } from "./queue-approvals";
import { clearBlocked, clearHolds, type UnlockHost } from "./queue-unlock";
import { canWatch, DispatchWakeups } from "./queue-wakeups";
import { assertNotBlocked } from "./guard";
import { DEFAULT_LEASE_TTL_MS, holderIsDead, withStackLease } from "./lease";
import type { CancelOptions, OperationEvent, QueueEvents, QueueStatus, SubmitRequest } from "./types";

export interface JobQueueOptions {
  readonly store: Store;
  readonly deps: OperationDeps;
  /** Loads a stack's environment; throws NotFoundError / ConfigError. */
  readonly loadEnvironment: (stack: string) => Environment;
  /** This process's lease owner id, e.g. `service:<host>:<pid>.<start time>:<random>` (one incarnation, lease.ts). */
  readonly owner: string;
  /** Global cap on jobs running at once in this process (engine processes). Default 2. */
  readonly maxConcurrent?: number;
  /** The stack lease's time to live; renewed every third of it while a job runs. Default 60 000 ms. */
  readonly leaseTtlMs?: number;
  /** A job's timeout. Default: the environment's `deploy.timeoutMinutes`. */
  readonly timeoutMs?: (env: Environment) => number;
  /**
   * While a queued job waits for a stack lease held elsewhere (a CLI run, another replica), how often
   * to try again; also the delay before retrying a job whose lease was taken between the check and the
   * acquire. Default 2000 ms.
   */
  readonly leaseRetryMs?: number;
  /**
   * How often to look for running jobs of other processes whose lease expired (their holder died
   * without releasing it) and mark them `interrupted`. Default: `leaseTtlMs`; 0 turns the sweep off.
   */
  readonly sweepIntervalMs?: number;
  /**
   * How often to look in the store for jobs to run while a slot is free: on a store several replicas
   * share, a job queued through another replica (full, or dead) runs here. Default
   * `DEFAULT_POLL_INTERVAL_MS` when the store announces changes (`Store.watch`: a shared store), else
   * 0 (no poll: on a store only this process uses, every job is queued through it).
   */
  readonly pollIntervalMs?: number;
  /** The clock (ms since epoch) of approval waits: when one begins and when it has expired. Default `Date.now`. */
  readonly now?: () => number;
  /**
   * How often to end the approval waits that expired (as `rejected`). Default 60 000 ms; 0 turns the
   * timer off (dispatch and `recover()` still check).
   */
  readonly approvalCheckMs?: number;
  /** Jobs one stack may have queued at once; a submit beyond is refused (QueueFullError, 429). Default 20. */
  readonly maxQueuedPerStack?: number;
  /** Jobs one principal may have queued at once, over all stacks. Default 40. */
  readonly maxQueuedPerPrincipal?: number;
}

/** A job as callers see it: with its place in its stack's queue while it waits. */
export type QueuedJobView = Job & { readonly queuePosition?: number };

export const DEFAULT_MAX_CONCURRENT = 2;
export const DEFAULT_LEASE_RETRY_MS = 2_000;
export const DEFAULT_APPROVAL_CHECK_MS = 60_000;
/** The poll of a shared store (`pollIntervalMs`). */
export const DEFAULT_POLL_INTERVAL_MS = 1_000;
export const DEFAULT_MAX_QUEUED_PER_STACK = 20;
export const DEFAULT_MAX_QUEUED_PER_PRINCIPAL = 40;
/** The reason recorded on jobs a crashed or stopped process left running. */
export const RECOVERY_REASON = "the deployer stopped while this job was running";
export const SHUTDOWN_REASON = "the deployer shut down while this job was running";
export const ORPHAN_REASON = "the process running this job stopped without finishing it";
/** What a refused submit tells the client to wait before trying again while the deployer shuts down. */
export const SHUTDOWN_RETRY_AFTER_SECONDS = 30;

/** One job this process runs (or is about to: reserved, waiting for its lease and its claim). */
interface Running {
  readonly jobId: string;
  readonly stack: string;
  readonly operation: Job["operation"];
  /** Aborted by a graceful cancel, a shutdown or (through executeJob) never otherwise. */
  readonly controller: AbortController;
  env?: Environment;
  engine?: Engine;
  lease?: Lease;
  /** While executeJob runs the job: its event log's `emit` (the queue's notes keep their place among the events). */
  emit?: (event: OperationEvent) => void;
  /**
   * True once `run` has the answer to its claim (the row says `running`, claimed by this process). The
   * row says so a moment before: `cancel` counts a job whose lease is ours as claimed.
   */
  claimed: boolean;
  /** Who asked for the graceful cancel, once someone did. */
  cancelRequestedBy?: string;
  forced: boolean;
  /** Set by shutdown: the job ends `interrupted`, not `canceled` (unless someone had asked to cancel it). */
  interruptedByShutdown: boolean;
  /** Set by shutdown after its grace: this process no longer answers for the job. */
  abandoned: boolean;
  done: Promise<void>;
}

/** The queue; emits the typed `QueueEvents` (`job:queued`, `job:start`, `job:event`, `job:done`, `job:error`). */
export class JobQueue extends EventEmitter<QueueEvents> {
  private readonly store: Store;
  private readonly deps: OperationDeps;
  private readonly load: (stack: string) => Environment;
  readonly owner: string;
  readonly maxConcurrent: number;
  private readonly leaseTtlMs: number;
  private readonly leaseRetryMs: number;
  private readonly sweepIntervalMs: number;
  private readonly timeoutFor?: (env: Environment) => number;
  private readonly now: () => number;
  private readonly approvalCheckMs: number;
  private readonly maxQueuedPerStack: number;
  private readonly maxQueuedPerPrincipal: number;

  private readonly running = new Map<string, Running>();
  private readonly runningStacks = new Map<string, string>(); // stack → job id
  /** Stacks whose lease was taken under us between the check and the acquire: not before this time. */
  private readonly leaseBackoff = new Map<string, number>();
  private readonly subscribers = new Map<string, Set<(seq: number, event: OperationEvent) => void>>();
  private readonly approvals: QueueApprovals;
  private readonly wakeups: DispatchWakeups;

  /** The end of the last submit's admission (submits are admitted one at a time, see `submit`). */
  private admitting: Promise<unknown> = Promise.resolve();

  private accepting = true;
  private dispatching = false;
  private started = false;
  private stopped = false;
  private dispatchAgain = false;
  private dispatchScheduled = false;
  private sweepTimer?: NodeJS.Timeout;
  private approvalTimer?: NodeJS.Timeout;
  /** The dispatch pass, orphan sweep or approval check under way in the background (shutdown waits for them). */
  private readonly background = new Set<Promise<unknown>>();

  constructor(options: JobQueueOptions) {
    super();
    // Listeners come and go with requests (an event stream waits for its job's `job:done`): many at
    // once is normal, not a leak.
    this.setMaxListeners(0);
    if (typeof options.owner !== "string" || options.owner === "") throw new ConfigError("JobQueue: owner is required");
    const max = options.maxConcurrent ?? DEFAULT_MAX_CONCURRENT;
    if (!Number.isInteger(max) || max < 1) throw new ConfigError(`JobQueue: maxConcurrent must be a positive integer, got ${String(max)}`);
    this.store = options.store;
    this.deps = options.deps;
    this.load = options.loadEnvironment;
    this.owner = options.owner;
    this.maxConcurrent = max;
    this.leaseTtlMs = options.leaseTtlMs ?? DEFAULT_LEASE_TTL_MS;
    this.leaseRetryMs = options.leaseRetryMs ?? DEFAULT_LEASE_RETRY_MS;
    this.sweepIntervalMs = options.sweepIntervalMs ?? this.leaseTtlMs;
    this.timeoutFor = options.timeoutMs;
    this.now = options.now ?? Date.now;
    this.approvalCheckMs = options.approvalCheckMs ?? DEFAULT_APPROVAL_CHECK_MS;
    this.maxQueuedPerStack = options.maxQueuedPerStack ?? DEFAULT_MAX_QUEUED_PER_STACK;
    this.maxQueuedPerPrincipal = options.maxQueuedPerPrincipal ?? DEFAULT_MAX_QUEUED_PER_PRINCIPAL;
    this.approvals = new QueueApprovals({
      store: this.store,
      now: () => this.now(),
      load: (stack) => this.load(stack),
      note: (jobId, level, message) => this.note(jobId, level, message),
      decided: (job, decision) => this.safeEmit("job:decision", job, decision),
      ended: (job) => {
        this.safeEmit("job:done", job);
        this.subscribers.delete(job.id);
      },
      kick: () => this.kick(),
    });
    const poll = options.pollIntervalMs ?? (canWatch(this.store) ? DEFAULT_POLL_INTERVAL_MS : 0);
    if (!Number.isFinite(poll) || poll < 0) throw new ConfigError(`JobQueue: pollIntervalMs must be 0 or more, got ${String(poll)}`);
    this.wakeups = new DispatchWakeups(
      {
        store: this.store,
        kick: () => this.kick(),
        hasFreeSlot: () => this.running.size < this.maxConcurrent,
        leaseReleased: (stack) => this.leaseBackoff.delete(stack),
        report: (error) => this.safeEmit("job:error", "", error),
      },
      poll,
    );
  }

  // Lifecycle ------------------------------------------------------------------------------------

  /**
   * Crash recovery, once at startup before `start()`: jobs left `running` by a process that is gone
   * become `interrupted` (with `RECOVERY_REASON`), and the stacks of interrupted mutations are
   * blocked until an admin unlocks them. A lease still held by a dead process on this host (the
   * crashed previous incarnation of this service, a killed CLI) is reclaimed first; a job whose
   * holder is alive elsewhere (a CLI run, another replica) is left running. Returns the jobs it
   * interrupted.
   */
  async recover(): Promise<Job[]> {
    await this.applyKeptOutcomes();
    for (const job of await this.store.listJobs({ status: "running", limit: 500 })) {
      if (this.running.has(job.id)) continue;
      const lease = await this.store.getLease(job.stack);
      if (lease && lease.owner !== this.owner && holderIsDead(lease.owner)) {
        await this.store.releaseLease(lease.stack, lease.owner, lease.token);
      }
    }
    const interrupted = await this.store.markRunningAsInterrupted(RECOVERY_REASON, { owner: this.owner });
    for (const job of interrupted) this.safeEmit("job:done", job);
    // Jobs awaiting approval run nothing, so they survive a restart as they are, unless their wait ended.
    await this.approvals.expireDue(this.now(), true);
    return interrupted;
  }

  /** Starts dispatching the queued jobs (those a previous process left queued included). */
  start(): void {
    if (this.stopped) throw new ConflictError("the queue was shut down; create a new one");
    if (this.started) return;
    this.started = true;
    if (this.sweepIntervalMs > 0) {
      this.sweepTimer = setInterval(() => this.inBackground(this.sweepOrphans()), this.sweepIntervalMs);
      this.sweepTimer.unref();
    }
    if (this.approvalCheckMs > 0) {
      this.approvalTimer = setInterval(() => this.inBackground(this.expireApprovals()), this.approvalCheckMs);
      this.approvalTimer.unref();
    }
    this.wakeups.start();
    this.kick();
  }

  /**
   * Stops accepting and dispatching, gives every running job the graceful interrupt and waits up to
   * `graceMs` for them to stop. Jobs stopped by it end `interrupted`; anything still running after the
   * grace is marked `interrupted` here and its lease released. Their stacks are blocked for mutations,
   * as after a crash. Resolves with the jobs it interrupted, once nothing of the queue runs in the
   * background any more (a dispatch pass, a sweep); no timer of the queue is left behind.
   */
  async shutdown(graceMs: number): Promise<Job[]> {
    this.accepting = false;
    this.started = false;
    this.stopped = true;
    this.clearTimers();
    const unwatched = this.wakeups.stop();
    const entries = [...this.running.values()];
    for (const entry of entries) {
      entry.interruptedByShutdown = true;
      if (!entry.controller.signal.aborted) entry.controller.abort(new CanceledError(SHUTDOWN_REASON));
      this.callEngine(entry, "cancel");
    }
    let graceTimer: NodeJS.Timeout | undefined;
    const grace = new Promise<void>((resolve) => {
      graceTimer = setTimeout(resolve, Math.max(0, graceMs));
      graceTimer.unref();
    });
    await Promise.race([Promise.all(entries.map((e) => e.done)), grace]);
    clearTimeout(graceTimer);

    const interrupted: Job[] = [];
    for (const entry of entries) {
      const job = await this.store.getJob(entry.jobId);
      if (!job) continue;
      if (job.status === "interrupted" && entry.interruptedByShutdown) {
        interrupted.push(job);
        continue;
      }
      if (job.status !== "running" || this.running.get(entry.jobId) !== entry) continue;
      // Still running after the grace: this process stops answering for it.
      entry.abandoned = true;
      this.forget(entry);
      const marked = await this.markInterrupted(entry, `${SHUTDOWN_REASON}; it did not stop within the grace period`);
      if (entry.lease) await this.store.releaseLease(entry.stack, this.owner, entry.lease.token);
      if (marked) {
        interrupted.push(marked);
        this.safeEmit("job:done", marked);
      }
    }
    await Promise.all([...this.background, unwatched]);
    return interrupted;
  }

  // Requests -------------------------------------------------------------------------------------

  /**
   * Queues a job. The same `idempotencyKey` with the same `requestHash` returns the existing job
   * (`created: false`); with another hash it is a ConflictError. Refused (nothing written): an
   * unknown stack or bad environment (NotFoundError / ConfigError), a mutation of a blocked stack
   * (ConflictError naming the recovery), a missing version, and any request while shutting down
   * (EngineUnavailableError with `details.retryAfterSeconds`).
   */
  submit(req: SubmitRequest): Promise<{ job: QueuedJobView; created: boolean }> {
    // One at a time: a submit's checks (blocked stack, queue caps, idempotency key) and its insert are
    // not interleaved with another's, so two submits cannot both pass a cap only one of them fits under.
    // Across processes (replicas) the caps are approximate; the key's uniqueness is the store's.
    const admitted = this.admitting.then(() => this.admit(req));
    this.admitting = admitted.catch(() => undefined);
    return admitted;
  }

  private async admit(req: SubmitRequest): Promise<{ job: QueuedJobView; created: boolean }> {
    if (req.idempotencyKey !== undefined) {
      const existing = await this.store.findByIdempotencyKey(req.idempotencyKey);
      if (existing) return { job: await this.replay(existing, req), created: false };
    }
    if (!this.accepting) {
      throw new EngineUnavailableError("the deployer is shutting down", { details: { retryAfterSeconds: SHUTDOWN_RETRY_AFTER_SECONDS } });
    }
    const env = this.load(req.stack);
    const params: JobRequestParams = { ...req.params };
    let version = params.version;
    if (req.operation === "up" || req.operation === "preview") {
      version ??= env.settings.app.version;
      if (version === undefined) {
        throw new ConfigError(`version is required: ${env.file} sets no app.version`, { details: { field: "version" } });
      }
    }
    await assertNotBlocked(this.store, env.name, req.operation);
    await this.assertQueueRoom(env.name, req.requestedBy);
    let job: Job;
    try {
      job = await this.store.createJob({
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
      const existing = req.idempotencyKey !== undefined && err instanceof ConflictError ? await this.store.findByIdempotencyKey(req.idempotencyKey) : undefined;
      if (existing) return { job: await this.replay(existing, req), created: false };
      throw err;
    }
    this.safeEmit("job:queued", job);
    this.kick();
    return { job: await this.withPosition(job), created: true };
  }

  /** Refuses a submit beyond the queue caps (per stack, per principal), naming the cap. */
  private async assertQueueRoom(stack: string, principal: string): Promise<void> {
    const onStack = await this.store.countQueued({ stack });
    if (onStack >= this.maxQueuedPerStack) {
      throw new QueueFullError(`stack ${stack} has ${onStack} jobs queued, the cap per stack (${this.maxQueuedPerStack}); retry when some have run`, {
        details: { stack, cap: "per stack", limit: this.maxQueuedPerStack, retryAfterSeconds: 30 },
      });
    }
    const mine = await this.store.countQueued({ requestedBy: principal });
    if (mine >= this.maxQueuedPerPrincipal) {
      throw new QueueFullError(`${principal} has ${mine} jobs queued, the cap per principal (${this.maxQueuedPerPrincipal}); retry when some have run`, {
        details: { principal, cap: "per principal", limit: this.maxQueuedPerPrincipal, retryAfterSeconds: 30 },
      });
    }
  }

  /** The job with its `queuePosition` while it is queued; undefined when unknown. */
  async get(jobId: string): Promise<QueuedJobView | undefined> {
    const job = await this.store.getJob(jobId);
    return job && this.withPosition(job);
  }

  /** 1-based place among the queued jobs of its stack (1: runs next); undefined unless queued. */
  async queuePosition(job: Job): Promise<number | undefined> {
    return job.status === "queued" ? this.store.queuePosition(job.id) : undefined;
  }

  /**
   * Cancels a job. Queued (or awaiting approval): `canceled` at once, it never starts. Running here:
   * the first call sends the graceful interrupt and the job becomes `canceled` when the engine stops;
   * later calls change nothing, except `force`, which kills the engine's processes (only after a
   * graceful cancel was asked). Finished: ConflictError; unknown: NotFoundError.
   */
  async cancel(jobId: string, options: CancelOptions, by: string): Promise<Job> {
    const job = await this.store.getJob(jobId);
    if (!job) throw new NotFoundError(`job ${jobId} not found`, { details: { jobId } });
    if (TERMINAL_STATUSES.has(job.status)) {
      throw new ConflictError(`job ${jobId} already ${job.status}`, { details: { jobId, status: job.status } });
    }
    if (job.status === "queued" || job.status === "awaiting_approval") {
      // Nothing runs (yet, or while it waits for approval), so nothing to kill: `force` cancels it like a plain cancel.
      try {
        const message = job.status === "awaiting_approval" ? `canceled by ${by} while awaiting approval` : `canceled by ${by} before it started`;
        const canceled = await this.store.updateJob(
          jobId,
          { status: "canceled", finishedAt: new Date().toISOString(), error: { code: "canceled", message } },
          { ifStatus: ["queued", "awaiting_approval"] },
        );
        await this.note(jobId, "warning", message);
        const final = (await this.store.getJob(jobId)) ?? canceled;
        this.safeEmit("job:done", final);
        this.subscribers.delete(jobId); // it will say nothing more
        if (job.status === "awaiting_approval") this.kick(); // the mutations queued behind it may run
        return final;
      } catch (err) {
        // Claimed (or finished) between the read and the write: answer for its new state.
        if (err instanceof ConflictError) return this.cancel(jobId, options, by);
        throw err;
      }
    }
    // running
    const entry = this.running.get(jobId);
    // Ours once we hold the stack's lease: the row says `running` only after our claim, whose answer
    // may not have reached `run` yet (`claimed` still false); until then the aborted signal stops it
    // before its engine starts.
    if (!entry || (!entry.claimed && entry.lease === undefined)) {
      const lease = await this.store.getLease(job.stack);
      throw new ConflictError(
        `job ${jobId} is running in another process${lease ? ` (${lease.owner})` : ""}; cancel it there`,
        { details: { jobId, status: job.status, ...(lease ? { holder: lease.owner } : {}) } },
      );
    }
    if (!options.force) {
      if (entry.cancelRequestedBy === undefined) {
        entry.cancelRequestedBy = by;
        // The note goes first (its line precedes the engine's answer) but is awaited once the
        // interrupt is sent, so that a forced cancel arriving meanwhile finds it sent.
        const noted = this.note(jobId, "warning", `cancel requested by ${by}: interrupting the engine`);
        entry.controller.abort(new CanceledError(`${job.operation} on ${job.stack} was canceled by ${by}`));
        this.callEngine(entry, "cancel");
        await noted;
      }
      return (await this.store.getJob(jobId)) ?? job;
    }
    if (entry.cancelRequestedBy === undefined) {
      throw new ConflictError(`job ${jobId} is running: ask for a graceful cancel first, then force it if the engine does not stop`, {
        details: { jobId, status: job.status },
      });
    }
    if (!entry.engine?.kill) {
      throw new ConflictError(`the ${entry.engine?.kind ?? "job's"} engine cannot be killed from here; the graceful cancel is in progress`, {
        details: { jobId, status: job.status },
      });
    }
    if (!entry.forced) {
      entry.forced = true;
      const noted = this.note(jobId, "warning", `forced cancel requested by ${by}: killing the engine's processes`);
      this.callEngine(entry, "kill");
      await noted;
    }
    return (await this.store.getJob(jobId)) ?? job;
  }

  /**
   * Admin recovery of a stack: clears its blocked flag, and its lease when the holder is gone (the
   * lease expired; or this process holds it but runs nothing there; or the holder's job is no longer
   * running; or the holder is a process on this host that no longer exists). Refused (ConflictError)
   * while a job runs on the stack here, or while the lease's holder is alive.
   *
   * What it does not do: for the pulumi engine it does not look at the backend's own lock or at
   * pending operations in the checkpoint (the engine port has no call for either). An interrupted
   * pulumi update can leave pending creates; after unlocking, run a refresh (or `pulumi stack export`
   * / `import` by hand) before the next deployment.
   */
  async unlock(stack: string, by: string): Promise<{ clearedLease?: Lease; wasBlocked: boolean; reason?: string }> {
    const marker = this.reserveForUnlock(stack, by);
    try {
      const clearedLease = await clearHolds(this.unlockHost(), stack, by);
      const cleared = await clearBlocked(this.store, stack);
      this.leaseBackoff.delete(stack);
      return { ...(clearedLease ? { clearedLease } : {}), ...cleared };
    } finally {
      if (this.runningStacks.get(stack) === marker) this.runningStacks.delete(stack);
      this.kick();
    }
  }

  /**
   * `unlock`, with the engine's recovery (a refresh that clears pending creates, say) run under the
   * stack's lease held by this process: nothing queued on the stack is dispatched until the recovery
   * has finished and the lease is released. The stack is unblocked only once the recovery succeeded;
   * when it throws, the stack stays blocked and the error is the caller's.
   */
  async unlockAndRecover<R>(stack: string, by: string, recover: () => Promise<R>): Promise<{ clearedLease?: Lease; wasBlocked: boolean; reason?: string; recovery: R }> {
    const marker = this.reserveForUnlock(stack, by);
    try {
      const clearedLease = await clearHolds(this.unlockHost(), stack, by);
      const recovery = await withStackLease(this.store, stack, this.owner, () => recover(), { ttlMs: this.leaseTtlMs });
      const cleared = await clearBlocked(this.store, stack);
      return { ...(clearedLease ? { clearedLease } : {}), ...cleared, recovery };
    } finally {
      if (this.runningStacks.get(stack) === marker) this.runningStacks.delete(stack);
      this.leaseBackoff.delete(stack);
      this.kick();
    }
  }

  /**
   * Refuses an unlock while a job runs on the stack here (or another unlock is under way), then
   * reserves the stack like a running job until the caller deletes the returned marker: no job is
   * dispatched on it while the unlock reads and clears its lease and its running jobs.
   */
  private reserveForUnlock(stack: string, by: string): string {
    assertStackName(stack);
    const runningHere = this.runningStacks.get(stack);
    if (runningHere !== undefined) {
      throw new ConflictError(
        runningHere.startsWith("job_") ? `job ${runningHere} is running on stack ${stack}; cancel it before unlocking` : `stack ${stack} is being recovered (${runningHere}); wait for it to finish`,
        { details: { stack, ...(runningHere.startsWith("job_") ? { jobId: runningHere } : {}) } },
      );
    }
    const marker = `unlock by ${by}`;
    this.runningStacks.set(stack, marker);
    return marker;
  }

  private unlockHost(): UnlockHost {
    return { store: this.store, owner: this.owner, orphanReason: ORPHAN_REASON, ended: (job) => this.safeEmit("job:done", job) };
  }

  // Approvals ------------------------------------------------------------------------------------

  /**
   * Records `by`'s approval of a job awaiting approval (`comment` optional). The approval that reaches
   * the job's `approvalsRequired` queues it again for its apply phase. Refused: the requester
   * (ApprovalRefusedError, 403); a second decision by the same principal, or a job that is not
   * awaiting approval or needs none (ConflictError); an unknown job (NotFoundError). The caller
   * checks that `by` is an approver of the job's stack.
   */
  approve(jobId: string, by: string, comment?: string): Promise<Job> {
    return this.approvals.decide(jobId, { by, decision: "approved", comment });
  }

  /**
   * Records `by`'s rejection of a job awaiting approval: it ends `rejected` with the reason and never
   * applies. Refused like `approve`; the requester withdraws a job with `cancel` instead.
   */
  reject(jobId: string, by: string, comment?: string): Promise<Job> {
    return this.approvals.decide(jobId, { by, decision: "rejected", comment });
  }

  /**
   * Ends as `rejected` every approval wait that is over (`deploy.approvals.expiresHours` after it
   * began, by the queue's clock). Runs on a timer, at each dispatch and at `recover()`; returns the
   * jobs it ended; never rejects (a failure is reported as `job:error`).
   */
  async expireApprovals(): Promise<Job[]> {
    let expired: Job[];
    try {
      expired = (await this.approvals.expireDue(this.now(), true)).expired;
    } catch (err) {
      this.safeEmit("job:error", "", asError(err));
      return [];
    }
    if (expired.length > 0) this.kick();
    return expired;
  }

  /** Live events of one job (after they were stored); returns the unsubscribe function. */
  subscribe(jobId: string, listener: (seq: number, event: OperationEvent) => void): () => void {
    let set = this.subscribers.get(jobId);
    if (!set) {
      set = new Set();
      this.subscribers.set(jobId, set);
    }
    set.add(listener);
    return () => {
      const current = this.subscribers.get(jobId);
      if (!current) return;
      current.delete(listener);
      if (current.size === 0) this.subscribers.delete(jobId);
    };
  }

  async status(): Promise<QueueStatus> {
    let queued = 0;
    for (const s of await this.store.queuedStacks()) queued += s.queued;
    let running = 0;
    for (const entry of this.running.values()) if (entry.claimed && !entry.abandoned) running++;
    return { running, queued, maxConcurrent: this.maxConcurrent, accepting: this.accepting };
  }

  /** The ids of the jobs running in this process now. */
  runningJobIds(): string[] {
    return [...this.running.values()].filter((e) => e.claimed && !e.abandoned).map((e) => e.jobId);
  }

  // Dispatching ----------------------------------------------------------------------------------

  /** Asks for a dispatch pass soon (coalesced: many submits in one tick make one pass). */
  private kick(): void {
    if (!this.started || this.dispatchScheduled) return;
    this.dispatchScheduled = true;
    queueMicrotask(() => {
      this.dispatchScheduled = false;
      this.inBackground(this.dispatch());
    });
  }

  /** Keeps track of a background task until it settles; `task` never rejects (it reports its failures as `job:error`). */
  private inBackground(task: Promise<unknown>): void {
    this.background.add(task);
    const settled = () => this.background.delete(task);
    task.then(settled, settled);
  }

  /**
   * Starts what may start now. One pass at a time: a pass awaits the store between counting the
   * slots, choosing the jobs and reserving them, so a second pass meanwhile could choose the same job
   * or slot; asked for while one runs, another pass follows it. Never rejects; a failure is reported
   * as `job:error`.
   */
  private async dispatch(): Promise<void> {
    if (!this.started) return;
    if (this.dispatching) {
      this.dispatchAgain = true;
      return;
    }
    this.dispatching = true;
    try {
      do {
        this.dispatchAgain = false;
        await this.dispatchOnce();
      } while (this.dispatchAgain && this.started);
    } catch (err) {
      this.safeEmit("job:error", "", asError(err));
    } finally {
      this.dispatching = false;
    }
  }

  private async dispatchOnce(): Promise<void> {
    if (this.running.size >= this.maxConcurrent) return;
    const now = Date.now();
    let waitUntil = Infinity;
    // The stacks this process may try: one query, all a pass costs when nothing is runnable (the
    // poll of a shared store runs this every second).
    const open: string[] = [];
    for (const { stack } of await this.store.queuedStacks()) {
      if (this.runningStacks.has(stack)) continue;
      const backoff = this.leaseBackoff.get(stack);
      if (backoff !== undefined) {
        if (backoff > now) {
          waitUntil = Math.min(waitUntil, backoff);
          continue;
        }
        this.leaseBackoff.delete(stack);
      }
      open.push(stack);
    }
    const candidates: Job[] = [];
    if (open.length > 0) {
      // An approval wait that is over releases the mutations queued behind it; one that is not holds them.
      const { waiting } = await this.approvals.expireDue();
      for (const stack of open) {
        const lease = await this.store.getLease(stack);
        if (lease && lease.owner !== this.owner) {
          // A CLI run or another replica holds the stack: try again when it may have let go.
          const retryAt = Math.min(now + this.leaseRetryMs, Date.parse(lease.expiresAt) + 1);
          waitUntil = Math.min(waitUntil, retryAt);
          // Polled (a shared store): the polls skip the stack until then, without reading its lease
          // each time; its release, announced by the store, ends the wait at once.
          if (this.wakeups.polling) this.leaseBackoff.set(stack, retryAt);
          continue;
        }
        const next = await this.nextRunnable(stack, waiting.has(stack));
        if (next) candidates.push(next);
      }
    }
    // Rollbacks and mutations of production stacks first, then the others in FIFO order (by id).
    const rank = new Map(candidates.map((j) => [j.id, this.priorityOf(j)]));
    candidates.sort((a, b) => rank.get(b.id)! - rank.get(a.id)! || (a.id < b.id ? -1 : 1));
    // No await from here on: the slots, the stacks and `started` are checked as each job is reserved.
    // A stack reserved meanwhile (an unlock) is skipped; a job canceled meanwhile fails its claim (CAS).
    for (const next of candidates) {
      if (!this.started || this.running.size >= this.maxConcurrent) break;
      if (this.runningStacks.has(next.stack)) continue;
      this.launch(next);
    }
    if (waitUntil !== Infinity) this.wakeups.retry(waitUntil);
  }

  /** 1 for a rollback or a mutation of a production stack (dispatched first when slots are short), else 0. */
  private priorityOf(job: Job): number {
    if (job.operation === "rollback") return 1;
    if (!MUTATING_OPERATIONS.has(job.operation)) return 0;
    try {
      return this.load(job.stack).settings.production ? 1 : 0;
    } catch {
      return 0;
    }
  }

  /**
   * The stack's oldest queued job that may run now. A blocked stack runs only previews and drift
   * checks; so does a stack with a job awaiting approval (FIFO: its mutations wait behind it).
   */
  private async nextRunnable(stack: string, awaitingApproval: boolean): Promise<Job | undefined> {
    const held = awaitingApproval || (await this.store.getStackState(stack)).blockedReason !== undefined;
    if (!held) return (await this.store.queuedJobs({ stack, limit: 1 }))[0];
    return (await this.store.queuedJobs({ stack })).find((j) => !MUTATING_OPERATIONS.has(j.operation));
  }

  /**
   * `nextRunnable`, read while this process holds the stack's lease. A job still `running` on the
   * stack then is one nobody runs (running rows are written under the lease, and their holder's lease
   * lapsed or was cleared): it is interrupted first, as the sweep would, and blocks the stack if it
   * was a mutation, so the next job does not run on what it left half done.
   */
  private async nextUnderLease(stack: string): Promise<Job | undefined> {
    let awaitingApproval = false;
    for (const job of await this.store.listJobs({ stack, status: ["running", "awaiting_approval"], limit: 500 })) {
      if (job.status === "awaiting_approval") awaitingApproval = true;
      else if (!this.running.has(job.id)) await this.interruptOrphan(job);
    }
    return this.nextRunnable(stack, awaitingApproval);
  }

  /** Reserves a slot and the stack for the job, then runs it in the background. */
  private launch(job: Job): void {
    const entry: Running = {
      jobId: job.id,
      stack: job.stack,
      operation: job.operation,
      controller: new AbortController(),
      claimed: false,
      forced: false,
      interruptedByShutdown: false,
      abandoned: false,
      done: Promise.resolve(),
    };
    this.running.set(job.id, entry);
    this.runningStacks.set(job.stack, job.id);
    entry.done = this.run(entry, job)
      .catch((err) => this.safeEmit("job:error", job.id, asError(err)))
      .finally(() => {
        this.forget(entry);
        this.kick();
      });
  }

  /**
   * The job no longer counts as running here (before `job:done`, so its listeners see the stack free).
   * Its subscribers stay: a job that ends its plan phase goes on (approvals, the apply phase), and a
   * subscriber unsubscribes itself when the job ends.
   */
  private forget(entry: Running): void {
    if (this.running.get(entry.jobId) === entry) this.running.delete(entry.jobId);
    if (this.runningStacks.get(entry.stack) === entry.jobId) this.runningStacks.delete(entry.stack);
  }

  private async run(entry: Running, queued: Job): Promise<void> {
    // Everything that can be decided without the engine fails the job before it takes the lease.
    let env: Environment;
    let what: JobParams;
    try {
      env = this.load(queued.stack);
      if (approvalPhase(queued) === "apply") {
        if (await this.approvals.expireIfDue(queued)) {
          this.forget(entry);
          return;
        }
        // A rule raised since the approvals: back to waiting for the rest.
        const current = await this.approvals.applyRaisedRule(queued, env);
        if (approvalsOf(current).length < current.approvalsRequired) {
          const waiting = await this.store.updateJob(queued.id, { status: "awaiting_approval" }, { ifStatus: "queued" });
          this.forget(entry);
          this.safeEmit("job:awaiting_approval", waiting);
          return;
        }
      }
      what = this.approvals.withApprovalPhase(queued, env, jobParams(queued, env));
    } catch (err) {
      // The database busy under another process is no reason to fail the job: it waits its turn again.
      if (isStoreBusy(err)) return this.retryLater(queued.stack);
      const error = toDeployerError(err);
      const failed = await this.finishQueued(queued.id, "failed", { code: error.code, message: error.message });
      this.forget(entry);
      if (failed) this.safeEmit("job:done", failed);
      return;
    }
    entry.env = env;
    entry.engine = this.deps.engineFor(env);

    let entered = false;
    let finished: Job | undefined;
    try {
      await withStackLease(
        this.store,
        queued.stack,
        this.owner,
        async (leaseLost, lease) => {
          entered = true;
          entry.lease = lease;
          if (!this.started || entry.controller.signal.aborted) return; // shutting down: it stays queued
          // The claim: what `SELECT … FOR UPDATE SKIP LOCKED` gives a worker pool, across replicas. The
          // stack's lease is the lock: a replica that finds it held skips the stack (dispatchOnce), and
          // one that loses the race to acquire it backs off (retryLater below), leaving the job queued.
          // The candidate was read before the lease, so it is read again under it: the stack's next
          // job now (the one before may have run meanwhile, or gone back to queued after its approval,
          // or started to await approval). Anything else than the candidate, in the phase it was
          // prepared for: nothing is claimed, the lease is let go, and the next pass (kicked when this
          // entry is forgotten) reads afresh. Then the CAS queued → running, under the lease: nothing
          // else can claim a job of this stack meanwhile, and a cancel in between makes it fail.
          // Per-stack FIFO and one running job per stack follow; the leases' fencing tokens make sure
          // a holder that lost its lease cannot renew it.
          const current = await this.nextUnderLease(queued.stack);
          if (current?.id !== queued.id || approvalPhase(current) !== approvalPhase(queued)) return;
          what = this.approvals.withApprovalPhase(current, env, jobParams(current, env));
          let claimed: Job;
          try {
            claimed = await this.store.updateJob(queued.id, { status: "running", startedAt: new Date().toISOString() }, { ifStatus: "queued" });
          } catch (err) {
            if (err instanceof ConflictError) return; // canceled meanwhile
            throw err;
          }
          entry.claimed = true;
          this.safeEmit("job:start", claimed);
          try {
            const result = await executeJob({ ...this.deps, store: firstFinishWins(this.store, queued.id) }, env, claimed, what, {
              signal: AbortSignal.any([entry.controller.signal, leaseLost]),
              onEvent: (event, seq) => this.publish(queued.id, seq, event),
              onRunning: (emit) => {
                entry.emit = emit;
              },
              timeoutMs: this.timeoutFor?.(env),
            });
            finished = result.job;
          } finally {
            entry.emit = undefined;
          }
        },
        { ttlMs: this.leaseTtlMs, jobId: queued.id },
      );
    } catch (err) {
      // The lease was taken between the check and the acquire, or the database was busy before the job
      // was claimed: it waits its turn again.
      if ((!entered && err instanceof ConflictError) || (!entry.claimed && isStoreBusy(err))) return this.retryLater(queued.stack);
      // Something escaped executeJob (the store failed under it): record what can be recorded, so the
      // job does not stay `running`, then report the error. An outcome kept on disk is the truth: it
      // is applied (now, if the database takes it again, else by the sweep or the next start).
      if (err instanceof OutcomeKeptError) {
        this.forget(entry);
        await this.applyKeptOutcomes();
      } else if (entry.claimed && !entry.abandoned) {
        try {
          const failed = await this.store.updateJob(
            queued.id,
            { status: "failed", finishedAt: new Date().toISOString(), error: { code: "internal", message: "the deployer failed while running this job" } },
            { ifStatus: "running" },
          );
          this.forget(entry);
          this.safeEmit("job:done", failed);
        } catch {
          // the store is gone too: recover() or the sweep will find the job
        }
      }
      throw err;
    }
    if (!entry.claimed || entry.abandoned) return;
    let job = finished ?? (await this.store.getJob(queued.id));
    if (!job) return;
    if (job.status === "awaiting_approval") {
      // The plan phase is over: lease and slot are free; the job waits for its approvers.
      this.forget(entry);
      this.safeEmit("job:awaiting_approval", job);
      // A cancel asked while executeJob was writing that move found the job still running, and its
      // interrupt came too late to stop it: it stands, as for a job that waits.
      if (entry.cancelRequestedBy !== undefined) {
        try {
          await this.cancel(job.id, {}, entry.cancelRequestedBy);
        } catch (err) {
          if (!(err instanceof ConflictError)) throw err; // ended otherwise meanwhile
        }
      }
      return;
    }
    if (entry.interruptedByShutdown && entry.cancelRequestedBy === undefined && job.status === "canceled") {
      job = (await this.markInterrupted(entry, `${SHUTDOWN_REASON}; it was interrupted gracefully`, "canceled")) ?? job;
    }
    if (job.status === "running") {
      // executeJob always records an outcome; a store failure could leave the row behind.
      job = (await this.markInterrupted(entry, "the job ended without recording an outcome")) ?? job;
    }
    this.forget(entry);
    this.safeEmit("job:done", job);
  }

  /** Ends a job that never started (CAS on `queued`); undefined if it was no longer queued. */
  private async finishQueued(jobId: string, status: "failed" | "canceled", error: { code: string; message: string }): Promise<Job | undefined> {
    try {
      return await this.store.updateJob(jobId, { status, finishedAt: new Date().toISOString(), error }, { ifStatus: "queued" });
    } catch (err) {
      if (err instanceof ConflictError) return undefined;
      throw err;
    }
  }

  /** Marks a job of ours `interrupted` (CAS) and blocks its stack if it was a mutation. */
  private async markInterrupted(entry: Running, message: string, from: Job["status"] = "running"): Promise<Job | undefined> {
    let job: Job;
    try {
      job = await this.store.updateJob(entry.jobId, { status: "interrupted", finishedAt: new Date().toISOString(), error: { code: "interrupted", message } }, { ifStatus: from });
    } catch (err) {
      if (err instanceof ConflictError) return undefined;
      throw err;
    }
    if (MUTATING_OPERATIONS.has(entry.operation)) {
      await this.store.setStackState(entry.stack, {
        blockedReason: `${entry.operation} job ${entry.jobId} was interrupted (${message}); recover the stack before changing it again`,
        blockedJobId: entry.jobId,
        blockedAt: job.finishedAt ?? new Date().toISOString(),
      });
    }
    return job;
  }

  /** A stored event, to the `job:event` listeners and the job's subscribers; their failures stay theirs. */
  private publish(jobId: string, seq: number, event: OperationEvent): void {
    this.safeEmit("job:event", jobId, seq, event);
    const listeners = this.subscribers.get(jobId);
    if (!listeners) return;
    for (const listener of [...listeners]) {
      try {
        listener(seq, event);
      } catch (err) {
        this.safeEmit("job:error", jobId, asError(err));
      }
    }
  }

  /**
   * Stores and publishes a line of the queue's own (a cancel request, an approval) in the job's log;
   * never rejects. While the job runs here, through its own event log, so that the line keeps its
   * place among the operation's events (stored after the ones emitted before it).
   */
  private async note(jobId: string, level: "info" | "warning" | "phase", message: string): Promise<void> {
    const event = scrubEvent(level === "phase" ? { type: "phase", phase: "approval", message } : { type: "log", level, message });
    const emit = this.running.get(jobId)?.emit;
    if (emit) return emit(event);
    try {
      const { seq } = await this.store.appendEvent(jobId, { type: event.type, data: event });
      this.publish(jobId, seq, event);
    } catch (err) {
      this.safeEmit("job:error", jobId, asError(err));
    }
  }

  /** Engine cancel/kill in the background (none before the claim: the engine has not started); a failure is reported, never thrown. */
  private callEngine(entry: Running, what: "cancel" | "kill"): void {
    const { engine, env } = entry;
    if (!entry.claimed || !engine || !env) return;
    const call = what === "kill" ? engine.kill?.bind(engine) : engine.cancel.bind(engine);
    if (!call) return;
    Promise.resolve()
      .then(() => call(env))
      .catch((err) => this.safeEmit("job:error", entry.jobId, new DeployerError(`engine ${what} failed for job ${entry.jobId}`, { cause: err })));
  }

  /**
   * Running jobs that nobody answers for: not ours, and nobody holds their stack's lease (a holder
   * renews it while it runs, so it died). Marked `interrupted`, their stacks blocked for mutations,
   * as recover() would have done had this process been the one restarting. A stack with a live lease
   * is left alone whoever holds it (an automatic rollback runs as a second job under its deployment's
   * lease). A job that ends between the read and the write keeps its ending (CAS on `running`).
   * Never rejects: a failure is reported as `job:error`.
   */
  async sweepOrphans(): Promise<Job[]> {
    const interrupted: Job[] = [];
    await this.applyKeptOutcomes();
    try {
      for (const job of await this.store.listJobs({ status: "running", limit: 500 })) {
        if (this.running.has(job.id) || this.runningStacks.has(job.stack) || (await this.store.getLease(job.stack))) continue;
        const marked = await this.interruptOrphan(job);
        if (marked) interrupted.push(marked);
      }
    } catch (err) {
      this.safeEmit("job:error", "", asError(err));
    }
    return interrupted;
  }

  /**
   * Marks `interrupted` (CAS on `running`) a job nobody runs, blocks its stack if it was a mutation,
   * and emits its `job:done`; undefined when it ended otherwise meanwhile.
   */
  private async interruptOrphan(job: Job): Promise<Job | undefined> {
    const finishedAt = new Date().toISOString();
    let marked: Job;
    try {
      marked = await this.store.updateJob(job.id, { status: "interrupted", finishedAt, error: { code: "interrupted", message: ORPHAN_REASON } }, { ifStatus: "running" });
    } catch (err) {
      if (err instanceof ConflictError) return undefined;
      throw err;
    }
    if (MUTATING_OPERATIONS.has(job.operation)) {
      await this.store.setStackState(job.stack, {
        blockedReason: `${job.operation} job ${job.id} was interrupted (${ORPHAN_REASON}); recover the stack before changing it again`,
        blockedJobId: job.id,
        blockedAt: finishedAt,
      });
    }
    this.safeEmit("job:done", marked);
    return marked;
  }

  /** The stack's next dispatch waits `leaseRetryMs`. */
  private retryLater(stack: string): void {
    this.leaseBackoff.set(stack, Date.now() + this.leaseRetryMs);
    this.wakeups.retry(Date.now() + this.leaseRetryMs);
  }

  /** Writes the outcomes kept on disk (store/outcomes.ts) to their jobs; each one written ends its job. */
  private async applyKeptOutcomes(): Promise<void> {
    try {
      for (const job of await this.store.applyKeptOutcomes()) this.safeEmit("job:done", job);
    } catch (err) {
      this.safeEmit("job:error", "", asError(err));
    }
  }

  private async replay(existing: Job, req: SubmitRequest): Promise<QueuedJobView> {
    if (existing.requestHash !== req.requestHash) {
      const shown = req.idempotencyKey?.startsWith("api:") ? "this Idempotency-Key" : `Idempotency-Key "${req.idempotencyKey}"`;
      throw new ConflictError(`${shown} was used for a different request (job ${existing.id})`, {
        details: { jobId: existing.id },
      });
    }
    return this.withPosition(existing);
  }

  private async withPosition(job: Job): Promise<QueuedJobView> {
    const queuePosition = await this.queuePosition(job);
    return queuePosition === undefined ? job : { ...job, queuePosition };
  }

  private clearTimers(): void {
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    this.sweepTimer = undefined;
    if (this.approvalTimer) clearInterval(this.approvalTimer);
    this.approvalTimer = undefined;
  }

  /** Emits without letting a listener's throw reach the job or the loop. */
  private safeEmit<K extends keyof QueueEvents>(event: K, ...args: QueueEvents[K]): void {
    try {
      (this.emit as (e: K, ...a: QueueEvents[K]) => boolean)(event, ...args);
    } catch (err) {
      if (event === "job:error") return;
      try {
        (this.emit as (e: "job:error", ...a: QueueEvents["job:error"]) => boolean)("job:error", typeof args[0] === "string" ? args[0] : ((args[0] as Job | undefined)?.id ?? ""), asError(err));
      } catch {
        // a job:error listener that throws has nobody left to tell
      }
    }
  }
}

// Helpers ------------------------------------------------------------------------------------------

/** What executeJob runs for a queued job: its stored request (or, for rows without one, its fields). */
export function jobParams(job: Job, env: Environment): JobParams {
  const p: JobRequestParams = job.params ?? { version: job.version, target: job.target, reason: job.reason, message: job.message };
  const target = p.target && p.target.length > 0 ? p.target : undefined;
  const version = (): string => {
    const v = job.version ?? p.version ?? env.settings.app.version;
    if (v === undefined) throw new ConfigError(`version is required: ${env.file} sets no app.version`, { details: { field: "version" } });
    return v;
  };
  switch (job.operation) {
    case "up":
      return { operation: "up", params: { version: version(), target, allowDestroy: p.allowDestroy } };
    case "preview":
      return { operation: "preview", params: { version: version(), target, allowDestroy: p.allowDestroy } };
    case "rollback":
      return { operation: "rollback", params: { to: p.to, reason: p.reason } };
    case "destroy":
      return { operation: "destroy", params: { allowDestroy: p.allowDestroy } };
    case "refresh":
      return { operation: "refresh" };
    case "drift":
      return { operation: "drift" };
  }
}

/**
 * The store as one job's execution sees it: once the row has a final status (set by a forced
 * shutdown, say), a later attempt to set another is ignored instead of overwriting it.
 */
function firstFinishWins(store: Store, jobId: string): Store {
  const updateJob = async (id: string, patch: JobPatch, options: UpdateJobOptions = {}): Promise<Job> => {
    if (id !== jobId || options.ifStatus !== undefined || patch.status === undefined || !TERMINAL_STATUSES.has(patch.status)) {
      return store.updateJob(id, patch, options);
    }
    try {
      return await store.updateJob(id, patch, { ifStatus: "running" });
    } catch (err) {
      const current = err instanceof ConflictError ? await store.getJob(id) : undefined;
      if (current && TERMINAL_STATUSES.has(current.status)) return current;
      throw err;
    }
  };
  return new Proxy(store, {
    get(target, prop) {
      if (prop === "updateJob") return updateJob;
      const value = Reflect.get(target, prop, target);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}

function asError(err: unknown): Error {
  if (err instanceof Error) return err;
  return new Error(String(err), { cause: err });
}
