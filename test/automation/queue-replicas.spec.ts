/**
 * The job queue as several service replicas on one PostgreSQL database: each replica here is a
 * JobQueue with its own owner on its own PostgresStore (its own pool), in one process, sharing the
 * test engine (whose per-stack concurrency count sees across them). Skipped without PostgreSQL
 * (test/support/postgres.ts); CI runs it.
 */
import { expect } from "chai";
import { rmSync } from "fs";
import { loadEnvironment, listEnvironments } from "../../automation/environment";
import { DriftScheduler, JobQueue, ORPHAN_REASON, type JobQueueOptions, type SchedulerTimers } from "../../automation/jobs";
import type { SubmitRequest } from "../../automation/jobs/types";
import { openPostgresStore, type Job, type PostgresStore } from "../../automation/store";
import { createTestDatabase, requirePostgresOrSkip, type TestDatabase } from "../support/postgres";
import { TestEngine, testDeps, testEnvDir } from "./support/test-engine";

const STACKS = ["s1", "s2", "s3"];
/** The lease TTL of the "dead replica" tests: short, so its leases lapse within the test. */
const SHORT_TTL_MS = 1_500;

/** Rejects when `promise` has not settled within `ms`. */
function within<T>(ms: number, what: string, promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`not within ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

describe("JobQueue replicas on one PostgreSQL", function () {
  this.timeout(60_000);

  let envDir: string;
  let db: TestDatabase | undefined;
  let engine: TestEngine;
  const stores: PostgresStore[] = [];
  const queues: JobQueue[] = [];
  const errors: Error[] = [];
  /** The first `job:done` of each job, from whichever replica emitted it, and who did. */
  let ended: Map<string, { job: Job; by: string }>;
  let waiters: { jobId: string; resolve: (e: { job: Job; by: string }) => void }[];

  before(function () {
    requirePostgresOrSkip(this);
    envDir = testEnvDir(STACKS, (_name, text) => text.replace("deploy:\n", `deploy:\n  driftSchedule: "*/5 * * * *"\n`));
  });
  after(() => {
    if (envDir) rmSync(envDir, { recursive: true, force: true });
  });

  beforeEach(async () => {
    db = await createTestDatabase();
    engine = new TestEngine();
    ended = new Map();
    waiters = [];
  });

  afterEach(async () => {
    engine.ignoreAbort = false;
    engine.unhold();
    for (const q of queues.splice(0)) await q.shutdown(1000);
    for (const s of stores.splice(0)) await s.close();
    await db?.drop();
    db = undefined;
    errors.splice(0);
  });

  async function openStore(): Promise<PostgresStore> {
    const store = await openPostgresStore((db as TestDatabase).url, { poolSize: 4 });
    stores.push(store);
    return store;
  }

  /** A replica: its own store (pool) on the shared database, its own owner; polls every 25 ms. */
  async function replica(name: string, options: Partial<JobQueueOptions> = {}): Promise<JobQueue> {
    const store = await openStore();
    const queue = new JobQueue({
      store,
      deps: testDeps(store, engine),
      loadEnvironment: (stack) => loadEnvironment(stack, { envDir }),
      owner: `service:replica-test:${name}:x`,
      pollIntervalMs: 25,
      leaseRetryMs: 25,
      ...options,
    });
    queue.on("job:error", (_jobId, err) => errors.push(err));
    queue.on("job:done", (job) => {
      if (ended.has(job.id)) return;
      const e = { job, by: name };
      ended.set(job.id, e);
      for (const w of waiters.filter((w) => w.jobId === job.id)) w.resolve(e);
      waiters = waiters.filter((w) => w.jobId !== job.id);
    });
    queues.push(queue);
    return queue;
  }

  /** The job's first `job:done`, on any replica (at once if it was emitted already). */
  function done(jobId: string): Promise<{ job: Job; by: string }> {
    const e = ended.get(jobId);
    if (e) return Promise.resolve(e);
    return new Promise((resolve) => waiters.push({ jobId, resolve }));
  }

  function request(stack: string, operation: SubmitRequest["operation"] = "up", extra: Partial<SubmitRequest> = {}): SubmitRequest {
    return { stack, operation, requestedBy: "alice", source: "api", params: {}, ...extra };
  }

  it("runs 30 jobs submitted round-robin through 3 replicas: all succeed, FIFO per stack, never two at once on a stack", async () => {
    const replicas = [await replica("a"), await replica("b"), await replica("c")];
    const startedBy = new Map<string, string>();
    replicas.forEach((q, i) => q.on("job:start", (job) => startedBy.set(job.id, "abc"[i])));
    for (const q of replicas) q.start();
    engine.delayMs = 5;

    const submitted: Job[] = [];
    for (let i = 0; i < 30; i++) {
      // Each stack's jobs go through every replica in turn.
      const through = replicas[Math.floor(i / STACKS.length) % replicas.length];
      const op = i % 4 === 3 ? "preview" : "up";
      submitted.push((await through.submit(request(STACKS[i % STACKS.length], op))).job);
    }
    const endings = await Promise.all(submitted.map((j) => done(j.id)));

    expect(endings.map((e) => e.job.status)).to.deep.equal(submitted.map(() => "succeeded"));
    expect(errors).to.deep.equal([]);
    expect(engine.maxActivePerStack).to.equal(1);
    const store = stores[0];
    for (const stack of STACKS) {
      // Ids are in submit order; the rows' intervals must follow it without overlapping.
      const rows = (await store.listJobs({ stack, limit: 500 })).sort((x, y) => (x.id < y.id ? -1 : 1));
      expect(rows).to.have.length(10);
      for (let i = 1; i < rows.length; i++) {
        const [before, after] = [rows[i - 1], rows[i]];
        expect(after.startedAt! >= before.finishedAt!, `${stack}: ${after.id} started at ${after.startedAt}, before ${before.id} finished at ${before.finishedAt}`).to.equal(true);
      }
    }
    // Every job started exactly once, and not all on one replica.
    expect([...startedBy.keys()].sort()).to.deep.equal(submitted.map((j) => j.id).sort());
    expect(new Set(startedBy.values()).size).to.be.greaterThan(1);
    for (const stack of STACKS) expect(await store.getLease(stack)).to.equal(undefined);
  });

  it("runs a job submitted to a full replica on one with a free slot", async () => {
    engine.hold();
    const busy = await replica("busy", { maxConcurrent: 1 });
    busy.start();
    // Previews: one engine call each (an up previews first), so one release ends the job.
    const first = (await busy.submit(request("s1", "preview"))).job;
    const firstCall = await engine.nextCall({ stack: "s1" });

    const idle = await replica("idle", { maxConcurrent: 1 });
    const starts: string[] = [];
    busy.on("job:start", (job) => starts.push(`busy:${job.id}`));
    idle.on("job:start", (job) => starts.push(`idle:${job.id}`));
    idle.start();
    const second = (await busy.submit(request("s2", "preview"))).job;
    (await engine.nextCall({ stack: "s2" })).release();
    const secondEnd = await done(second.id);

    expect(secondEnd).to.deep.include({ by: "idle" });
    expect(secondEnd.job.status).to.equal("succeeded");
    expect(starts).to.deep.equal([`idle:${second.id}`]);
    expect(busy.runningJobIds()).to.deep.equal([first.id]);

    firstCall.release();
    expect(await done(first.id)).to.deep.include({ by: "busy" });
    expect(errors).to.deep.equal([]);
  });

  it("the loser of a race for a stack backs off and the job runs once; the stack's next job follows", async () => {
    engine.hold();
    const a = await replica("a");
    const b = await replica("b");
    // Previews and drift checks: one engine call each, so one release ends a job.
    const submitted = [(await a.submit(request("s1", "preview"))).job, (await a.submit(request("s1", "drift"))).job, (await b.submit(request("s1", "preview"))).job];
    const starts: string[] = [];
    for (const q of [a, b]) q.on("job:start", (job) => starts.push(job.id));
    // Both read the same oldest job at once; one takes the lease.
    a.start();
    b.start();
    for (let i = 0; i < submitted.length; i++) {
      const call = await engine.nextCall({ stack: "s1" });
      expect(engine.runningCalls()).to.have.length(1);
      call.release();
      expect((await done(submitted[i].id)).job.status).to.equal("succeeded");
    }
    expect(starts).to.deep.equal(submitted.map((j) => j.id));
    expect(engine.maxActivePerStack).to.equal(1);
    expect(errors).to.deep.equal([]);
  });

  describe("a replica that dies", () => {
    const DEAD = "service:dead-host:4242.1:gone"; // another host: never taken for dead by its pid

    it("leaves its running jobs interrupted by a live replica once its lease lapses, and its queued jobs run elsewhere", async () => {
      const store = await openStore();
      const job = (stack: string, operation: Job["operation"], status: "running" | "queued") =>
        store.createJob({ stack, operation, requestedBy: "alice", source: "api", engine: "offline", status, version: "1.0.0", params: { version: "1.0.0" }, ...(status === "running" ? { startedAt: new Date().toISOString() } : {}) });
      // The dead replica was running a preview on s1 and an up on s3, and had queued an up behind each and one on s2.
      const orphanPreview = await job("s1", "preview", "running");
      await store.acquireLease("s1", { owner: DEAD, ttlMs: SHORT_TTL_MS, jobId: orphanPreview.id });
      const orphanUp = await job("s3", "up", "running");
      await store.acquireLease("s3", { owner: DEAD, ttlMs: SHORT_TTL_MS, jobId: orphanUp.id });
      const behindPreview = await job("s1", "up", "queued");
      const behindUp = await job("s3", "up", "queued");
      const elsewhere = await job("s2", "up", "queued");
      const diedAt = Date.now();

      const live = [await replica("a", { leaseTtlMs: SHORT_TTL_MS }), await replica("b", { leaseTtlMs: SHORT_TTL_MS })];
      // A replica starting while another one's lease is live leaves that one's jobs alone: it may be alive.
      for (const q of live) expect(await q.recover()).to.deep.equal([]);
      for (const q of live) q.start();

      expect((await within(5_000, "the queued job of a free stack runs", done(elsewhere.id))).job.status).to.equal("succeeded");
      const margin = 5_000;
      for (const orphan of [orphanPreview, orphanUp]) {
        const { job: interrupted } = await within(SHORT_TTL_MS + margin, `${orphan.id} interrupted`, done(orphan.id));
        expect(interrupted).to.deep.include({ status: "interrupted", error: { code: "interrupted", message: ORPHAN_REASON } });
        expect(Date.parse(interrupted.finishedAt!) - diedAt).to.be.at.least(SHORT_TTL_MS - 200); // not before its lease lapsed
      }
      // Behind the interrupted preview: runs. Behind the interrupted up: the stack is blocked for
      // mutations until an admin unlocks it (queued, held by that rule), then runs.
      const ran = (await within(5_000, "the job behind the preview runs", done(behindPreview.id))).job;
      expect(ran.status).to.equal("succeeded");
      expect(ran.startedAt! >= (await store.getJob(orphanPreview.id))!.finishedAt!).to.equal(true);
      expect((await store.getStackState("s3")).blockedJobId).to.equal(orphanUp.id);
      expect((await store.getJob(behindUp.id))?.status).to.equal("queued");
      // The replica that interrupted the orphan did so under the stack's lease, and announces the job's
      // end before it lets go of the lease: the unlock waits for the release, as an admin retrying a 409 would.
      let release!: () => void;
      const released = new Promise<void>((resolve) => (release = resolve));
      const unwatch = await store.watch!((change) => {
        if (change.kind === "lease" && change.stack === "s3") release();
      });
      if (await store.getLease("s3")) await within(5_000, "the lease on s3 is released", released);
      await unwatch();
      await live[1].unlock("s3", "admin");
      expect((await within(5_000, "the job behind the up runs after the unlock", done(behindUp.id))).job.status).to.equal("succeeded");

      expect(await store.listJobs({ status: ["queued", "running"], limit: 500 })).to.deep.equal([]);
      expect(errors).to.deep.equal([]);
    });
  });

  it("makes one drift job per due time when the schedulers of several replicas fire it", async () => {
    const replicas = [await replica("a"), await replica("b"), await replica("c")];
    let clock = Date.parse("2025-03-01T12:01:30Z");
    const noTimers: SchedulerTimers = { set: () => undefined, clear: () => undefined };
    const environments = () => listEnvironments({ envDir }).map((stack) => loadEnvironment(stack, { envDir }));
    const schedulers = replicas.map((queue, i) => new DriftScheduler({ queue, store: stores[i], environments, now: () => clock, timers: noTimers }));
    for (const s of schedulers) s.start();
    clock = Date.parse("2025-03-01T12:05:10Z"); // 12:05 is due for every stack

    // All at once: each replica's submit races the others' for every stack's key.
    const created = (await Promise.all(schedulers.map((s) => s.tick()))).flat();

    expect(created.map((j) => j.stack).sort()).to.deep.equal(STACKS);
    const drift = await stores[0].listJobs({ operation: "drift", limit: 500 });
    expect(drift.map((j) => j.idempotencyKey).sort()).to.deep.equal(STACKS.map((s) => `schedule:drift:${s}:2025-03-01T12:05:00.000Z`));
    // A replica whose scheduler fires the same due time late, after the job ran elsewhere (its
    // "already queued" check passes): the key's owner answers, nothing is created.
    for (const job of drift) await stores[0].updateJob(job.id, { status: "succeeded", startedAt: new Date().toISOString(), finishedAt: new Date().toISOString() });
    const late = new DriftScheduler({ queue: replicas[1], store: stores[1], environments, now: () => Date.parse("2025-03-01T12:04:59Z"), timers: noTimers });
    late.start();
    expect(await late.tick(Date.parse("2025-03-01T12:05:20Z"))).to.deep.equal([]);
    expect(await stores[0].listJobs({ operation: "drift", limit: 500 })).to.have.length(3);
    for (const s of [...schedulers, late]) s.stop();
  });
});
