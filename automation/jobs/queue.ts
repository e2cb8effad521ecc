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
 * the stack lease and the claim under it (see `run`, queue-run.ts); a replica that dies leaves its running jobs to
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
 *
 * JobQueue is the public face; its parts sit behind small host interfaces: admission (submit, caps,
 * idempotent replay) in queue-admission.ts, the dispatch passes in queue-dispatch.ts, running one job
 * (lease, claim, executeJob, outcome) in queue-run.ts, cancel and the shutdown's interrupt in
 * queue-cancel.ts, crash recovery and the orphan sweep in queue-recovery.ts, events and subscribers
 * in queue-events.ts, the admin unlock in queue-unlock.ts.
 */
import { EventEmitter } from "events";
import type { Environment } from "../environment";
import { ConfigError, ConflictError } from "../errors";
import type { OperationDeps } from "../operations/context";
import type { Job, Lease, Store } from "../store";
import { QueueAdmission, queuePosition, withPosition, type QueuedJobView } from "./queue-admission";
import { QueueApprovals } from "./queue-approvals";
import { cancelJob, interruptRunning, type CancelHost } from "./queue-cancel";
import { Dispatcher } from "./queue-dispatch";
import { asError, JobEvents } from "./queue-events";
import { ORPHAN_REASON, QueueRecovery } from "./queue-recovery";
import { JobRunner, type Running } from "./queue-run";
import { unlock, unlockAndRecover, type UnlockHost } from "./queue-unlock";
import { canWatch, DispatchWakeups } from "./queue-wakeups";
import { DEFAULT_LEASE_TTL_MS } from "./lease";
import type { CancelOptions, OperationEvent, QueueEvents, QueueStatus, SubmitRequest } from "./types";

export { SHUTDOWN_RETRY_AFTER_SECONDS, type QueuedJobView } from "./queue-admission";
export { ORPHAN_REASON, RECOVERY_REASON, SHUTDOWN_REASON } from "./queue-recovery";
export { jobParams } from "./queue-run";

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

export const DEFAULT_MAX_CONCURRENT = 2;
export const DEFAULT_LEASE_RETRY_MS = 2_000;
export const DEFAULT_APPROVAL_CHECK_MS = 60_000;
/** The poll of a shared store (`pollIntervalMs`). */
export const DEFAULT_POLL_INTERVAL_MS = 1_000;
export const DEFAULT_MAX_QUEUED_PER_STACK = 20;
export const DEFAULT_MAX_QUEUED_PER_PRINCIPAL = 40;

/** The queue; emits the typed `QueueEvents` (`job:queued`, `job:start`, `job:event`, `job:done`, `job:error`). */
export class JobQueue extends EventEmitter<QueueEvents> {
  private readonly store: Store;
  private readonly load: (stack: string) => Environment;
  readonly owner: string;
  readonly maxConcurrent: number;
  private readonly leaseTtlMs: number;
  private readonly sweepIntervalMs: number;
  private readonly now: () => number;
  private readonly approvalCheckMs: number;

  private readonly running = new Map<string, Running>();
  private readonly runningStacks = new Map<string, string>(); // stack → job id
  private readonly events: JobEvents;
  private readonly admission: QueueAdmission;
  private readonly approvals: QueueApprovals;
  private readonly wakeups: DispatchWakeups;
  private readonly dispatcher: Dispatcher;
  private readonly runner: JobRunner;
  private readonly recovery: QueueRecovery;
  private readonly cancelHost: CancelHost;
  private readonly unlockHost: UnlockHost;

  private accepting = true;
  private started = false;
  private stopped = false;
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
    const deps: OperationDeps = options.deps;
    this.load = options.loadEnvironment;
    this.owner = options.owner;
    this.maxConcurrent = max;
    this.leaseTtlMs = options.leaseTtlMs ?? DEFAULT_LEASE_TTL_MS;
    const leaseRetryMs = options.leaseRetryMs ?? DEFAULT_LEASE_RETRY_MS;
    this.sweepIntervalMs = options.sweepIntervalMs ?? this.leaseTtlMs;
    this.now = options.now ?? Date.now;
    this.approvalCheckMs = options.approvalCheckMs ?? DEFAULT_APPROVAL_CHECK_MS;
    this.events = new JobEvents({ store: this.store, emitter: this, runningEmit: (jobId) => this.running.get(jobId)?.emit });
    this.admission = new QueueAdmission(
      {
        store: this.store,
        load: (stack) => this.load(stack),
        accepting: () => this.accepting,
        queued: (job) => {
          this.events.emit("job:queued", job);
          this.dispatcher.kick();
        },
      },
      {
        maxQueuedPerStack: options.maxQueuedPerStack ?? DEFAULT_MAX_QUEUED_PER_STACK,
        maxQueuedPerPrincipal: options.maxQueuedPerPrincipal ?? DEFAULT_MAX_QUEUED_PER_PRINCIPAL,
      },
    );
    this.approvals = new QueueApprovals({
      store: this.store,
      now: () => this.now(),
      load: (stack) => this.load(stack),
      note: (jobId, level, message) => this.events.note(jobId, level, message),
      decided: (job, decision) => this.events.emit("job:decision", job, decision),
      ended: (job) => {
        this.events.emit("job:done", job);
        this.events.dropSubscribers(job.id);
      },
      kick: () => this.dispatcher.kick(),
    });
    const poll = options.pollIntervalMs ?? (canWatch(this.store) ? DEFAULT_POLL_INTERVAL_MS : 0);
    if (!Number.isFinite(poll) || poll < 0) throw new ConfigError(`JobQueue: pollIntervalMs must be 0 or more, got ${String(poll)}`);
    this.wakeups = new DispatchWakeups(
      {
        store: this.store,
        kick: () => this.dispatcher.kick(),
        hasFreeSlot: () => this.running.size < this.maxConcurrent,
        leaseReleased: (stack) => this.dispatcher.clearBackoff(stack),
        report: (error) => this.events.emit("job:error", "", error),
      },
      poll,
    );
    this.recovery = new QueueRecovery({
      store: this.store,
      owner: this.owner,
      events: this.events,
      runsHere: (jobId) => this.running.has(jobId),
      reservedHere: (stack) => this.runningStacks.has(stack),
    });
    this.dispatcher = new Dispatcher({
      store: this.store,
      owner: this.owner,
      maxConcurrent: this.maxConcurrent,
      leaseRetryMs,
      running: this.running,
      runningStacks: this.runningStacks,
      approvals: this.approvals,
      wakeups: this.wakeups,
      events: this.events,
      started: () => this.started,
      load: (stack) => this.load(stack),
      run: (entry, job) => this.runner.run(entry, job),
      inBackground: (task) => this.inBackground(task),
    });
    this.runner = new JobRunner({
      store: this.store,
      deps,
      owner: this.owner,
      leaseTtlMs: this.leaseTtlMs,
      timeoutFor: options.timeoutMs,
      approvals: this.approvals,
      recovery: this.recovery,
      events: this.events,
      dispatcher: this.dispatcher,
      started: () => this.started,
      load: (stack) => this.load(stack),
      runsHere: (jobId) => this.running.has(jobId),
      cancel: (jobId, by) => this.cancel(jobId, {}, by),
    });
    this.cancelHost = {
      store: this.store,
      owner: this.owner,
      events: this.events,
      entryOf: (jobId) => this.running.get(jobId),
      forget: (entry) => this.dispatcher.forget(entry),
      kick: () => this.dispatcher.kick(),
    };
    this.unlockHost = {
      store: this.store,
      owner: this.owner,
      orphanReason: ORPHAN_REASON,
      leaseTtlMs: this.leaseTtlMs,
      runningStacks: this.runningStacks,
      ended: (job) => this.events.emit("job:done", job),
      clearBackoff: (stack) => this.dispatcher.clearBackoff(stack),
      kick: () => this.dispatcher.kick(),
    };
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
    const interrupted = await this.recovery.recover();
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
    this.dispatcher.kick();
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
    const interrupted = await interruptRunning(this.cancelHost, [...this.running.values()], graceMs);
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
    return this.admission.submit(req);
  }

  /** The job with its `queuePosition` while it is queued; undefined when unknown. */
  async get(jobId: string): Promise<QueuedJobView | undefined> {
    const job = await this.store.getJob(jobId);
    return job && withPosition(this.store, job);
  }

  /** 1-based place among the queued jobs of its stack (1: runs next); undefined unless queued. */
  async queuePosition(job: Job): Promise<number | undefined> {
    return queuePosition(this.store, job);
  }

  /**
   * Cancels a job. Queued (or awaiting approval): `canceled` at once, it never starts. Running here:
   * the first call sends the graceful interrupt and the job becomes `canceled` when the engine stops;
   * later calls change nothing, except `force`, which kills the engine's processes (only after a
   * graceful cancel was asked). Finished: ConflictError; unknown: NotFoundError.
   */
  cancel(jobId: string, options: CancelOptions, by: string): Promise<Job> {
    return cancelJob(this.cancelHost, jobId, options, by);
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
  unlock(stack: string, by: string): Promise<{ clearedLease?: Lease; wasBlocked: boolean; reason?: string }> {
    return unlock(this.unlockHost, stack, by);
  }

  /**
   * `unlock`, with the engine's recovery (a refresh that clears pending creates, say) run under the
   * stack's lease held by this process: nothing queued on the stack is dispatched until the recovery
   * has finished and the lease is released. The stack is unblocked only once the recovery succeeded;
   * when it throws, the stack stays blocked and the error is the caller's.
   */
  unlockAndRecover<R>(stack: string, by: string, recover: () => Promise<R>): Promise<{ clearedLease?: Lease; wasBlocked: boolean; reason?: string; recovery: R }> {
    return unlockAndRecover(this.unlockHost, stack, by, recover);
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
      this.events.emit("job:error", "", asError(err));
      return [];
    }
    if (expired.length > 0) this.dispatcher.kick();
    return expired;
  }

  /** Live events of one job (after they were stored); returns the unsubscribe function. */
  subscribe(jobId: string, listener: (seq: number, event: OperationEvent) => void): () => void {
    return this.events.subscribe(jobId, listener);
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

  /** Keeps track of a background task until it settles; `task` never rejects (it reports its failures as `job:error`). */
  private inBackground(task: Promise<unknown>): void {
    this.background.add(task);
    const settled = () => this.background.delete(task);
    task.then(settled, settled);
  }

  /**
   * Running jobs that nobody answers for: not ours, and nobody holds their stack's lease (a holder
   * renews it while it runs, so it died). Marked `interrupted`, their stacks blocked for mutations,
   * as recover() would have done had this process been the one restarting. A stack with a live lease
   * is left alone whoever holds it (an automatic rollback runs as a second job under its deployment's
   * lease). A job that ends between the read and the write keeps its ending (CAS on `running`).
   * Never rejects: a failure is reported as `job:error`.
   */
  sweepOrphans(): Promise<Job[]> {
    return this.recovery.sweep();
  }

  private clearTimers(): void {
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    this.sweepTimer = undefined;
    if (this.approvalTimer) clearInterval(this.approvalTimer);
    this.approvalTimer = undefined;
  }
}
