import { expect } from "chai";
import Database from "better-sqlite3";
import { spawn, spawnSync } from "child_process";
import { once } from "events";
import { mkdtempSync, readFileSync, rmSync } from "fs";
import { hostname, tmpdir } from "os";
import * as path from "path";
import { OfflineEngine } from "../../automation/engine/offline";
import type { Engine } from "../../automation/engine/port";
import { loadEnvironment } from "../../automation/environment";
import { ConfigError, ConflictError, EngineUnavailableError, NotFoundError } from "../../automation/errors";
import { JobQueue, RECOVERY_REASON, holderIsDead, processIncarnation, procStat, type JobQueueOptions } from "../../automation/jobs";
import type { OperationEvent, QueueEvents, SubmitRequest } from "../../automation/jobs/types";
import { openStore, SCHEMA_VERSION, storeFile, type Job, type JobPatch, type Store, type UpdateJobOptions } from "../../automation/store";
import { MIGRATIONS } from "../../automation/store/schema";
import { TestEngine, testDeps, testEnvDir } from "./support/test-engine";

const STACKS = ["s1", "s2", "s3", "s4", "s5"];
const FIXTURES = path.join(__dirname, "fixtures");
const OWNER = "service:queue-test:1:aaaa";

/** Resolves with the next `event` whose arguments satisfy `match`. */
function next<K extends keyof QueueEvents>(queue: JobQueue, event: K, match: (...args: QueueEvents[K]) => boolean = () => true): Promise<QueueEvents[K]> {
  return new Promise((resolve) => {
    const listener = (...args: QueueEvents[K]) => {
      if (!match(...args)) return;
      (queue.off as (e: K, l: typeof listener) => void)(event, listener);
      resolve(args);
    };
    (queue.on as (e: K, l: typeof listener) => void)(event, listener);
  });
}

/** Each queue's `job:done` jobs by id, recorded from its creation (makeQueue): the first one for each job. */
const endings = new WeakMap<JobQueue, Map<string, Job>>();

function recordEndings(queue: JobQueue): void {
  const ended = new Map<string, Job>();
  endings.set(queue, ended);
  queue.on("job:done", (job) => {
    if (!ended.has(job.id)) ended.set(job.id, job);
  });
}

/**
 * The job as it was when `job:done` was emitted for it: at once if it was emitted already (a submit
 * resolves after the job was queued, by when it may have run), else when it is.
 */
async function done(queue: JobQueue, jobId: string): Promise<Job> {
  const ended = endings.get(queue)?.get(jobId);
  if (ended) return ended;
  const [job] = await next(queue, "job:done", (j) => j.id === jobId);
  return job;
}

/** The error `fn` rejects (or throws) with; fails the test when it succeeds. */
async function rejection(fn: () => Promise<unknown>): Promise<unknown> {
  try {
    await fn();
  } catch (err) {
    return err;
  }
  throw new Error("expected a rejection, but it succeeded");
}

/** A pid that is certainly not running: a process that has exited. */
/** Resolves once `check` holds (bounded: 5 s): for what /proc shows, which no event reports. */
async function until(what: string, check: () => boolean): Promise<void> {
  const deadline = Date.now() + 5_000;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`never: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

function comm(pid: number): string | undefined {
  try {
    return readFileSync(`/proc/${pid}/comm`, "utf8").trim();
  } catch {
    return undefined;
  }
}

function deadPid(): number {
  const child = spawnSync(process.execPath, ["-e", ""]);
  return child.pid as number;
}

describe("JobQueue", function () {
  this.timeout(30_000);

  let envDir: string;
  let dataDir: string;
  let store: Store;
  let engine: TestEngine;
  const queues: JobQueue[] = [];

  before(() => {
    envDir = testEnvDir(STACKS);
  });
  after(() => rmSync(envDir, { recursive: true, force: true }));

  beforeEach(() => {
    dataDir = mkdtempSync(path.join(tmpdir(), "deployer-queue-"));
    store = openStore(dataDir);
    engine = new TestEngine();
  });

  afterEach(async () => {
    engine.ignoreAbort = false;
    for (const q of queues.splice(0)) await q.shutdown(1000);
    engine.unhold();
    await store.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  function makeQueue(options: Partial<JobQueueOptions> & { engine?: Engine } = {}): JobQueue {
    const queue = new JobQueue({
      store,
      deps: testDeps(store, options.engine ?? engine),
      loadEnvironment: (stack) => loadEnvironment(stack, { envDir }),
      owner: OWNER,
      ...options,
    });
    recordEndings(queue);
    queues.push(queue);
    return queue;
  }

  function request(stack: string, operation: SubmitRequest["operation"] = "up", extra: Partial<SubmitRequest> = {}): SubmitRequest {
    return { stack, operation, requestedBy: "alice", source: "api", params: {}, ...extra };
  }

  describe("the store's queue support", () => {
    it("migrates a version 1 store, keeping its jobs, and stores a job's request params", async () => {
      await store.close();
      const file = storeFile(dataDir);
      rmSync(file, { force: true });
      const v1 = new Database(file);
      v1.exec(MIGRATIONS[0]);
      v1.pragma("user_version = 1");
      v1.prepare("INSERT INTO jobs (id, stack, operation, status, requested_by, source, created_at, engine) VALUES (?, ?, ?, ?, ?, ?, ?, ?)").run(
        "job_00000000000000000000000001", "s1", "up", "queued", "alice", "cli", "2025-03-01T12:00:00.000Z", "offline",
      );
      v1.close();

      store = openStore(dataDir);

      expect(SCHEMA_VERSION).to.be.at.least(2); // later migrations (audit, approvals) append to the list
      expect(await store.getJob("job_00000000000000000000000001")).to.include({ stack: "s1", status: "queued" }).and.not.have.property("params");
      const params = { version: "1.2.3", target: ["urn:pulumi:s1::p::t::n"], message: "m" };
      expect((await store.createJob({ stack: "s1", operation: "up", requestedBy: "bob", source: "api", engine: "offline", params })).params).to.deep.equal(params);
      expect(await rejection(() => store.updateJob("job_00000000000000000000000001", { params } as JobPatch))).to.be.instanceOf(ConfigError);
    });

    it("lists the stacks with queued jobs, oldest first, and each queued job's place in its stack", async () => {
      const create = (stack: string, status: Job["status"] = "queued") => store.createJob({ stack, operation: "up", requestedBy: "a", source: "api", engine: "offline", status });
      const a1 = await create("s2");
      const b1 = await create("s1");
      await create("s2", "succeeded");
      const a2 = await create("s2");
      const done1 = await create("s3", "failed");

      expect(await store.queuedStacks()).to.deep.equal([
        { stack: "s2", queued: 2, oldestJobId: a1.id },
        { stack: "s1", queued: 1, oldestJobId: b1.id },
      ]);
      expect(await Promise.all([a1, a2, b1, done1].map((j) => store.queuePosition(j.id)))).to.deep.equal([1, 2, 1, undefined]);
      expect(await store.queuePosition("job_unknown")).to.equal(undefined);
      expect((await store.queuedJobs({ stack: "s2", limit: 1 })).map((j) => j.id)).to.deep.equal([a1.id]);
    });
  });

  describe("running jobs", () => {
    it("takes a job from queued through running to succeeded, storing and emitting its events in order", async () => {
      const queue = makeQueue();
      const seen: string[] = [];
      const emitted: { seq: number; event: OperationEvent }[] = [];
      const subscribed: number[] = [];
      queue.on("job:queued", (j) => seen.push(`queued:${j.status}`));
      queue.on("job:start", (j) => seen.push(`start:${j.status}`));
      queue.on("job:done", (j) => seen.push(`done:${j.status}`));
      queue.on("job:event", (_id, seq, event) => emitted.push({ seq, event }));
      // Subscribed as soon as the job exists (its `job:queued`), before it can emit anything.
      queue.once("job:queued", (j) => queue.subscribe(j.id, (seq) => subscribed.push(seq)));
      queue.start();

      const { job, created } = await queue.submit(request("s1", "up", { params: { version: "2.0.0", message: "ship it" } }));
      expect(created).to.equal(true);
      expect(job).to.include({ stack: "s1", operation: "up", status: "queued", version: "2.0.0", message: "ship it", engine: "offline", approvalsRequired: 0, queuePosition: 1 });
      expect(job.params).to.deep.equal({ version: "2.0.0", message: "ship it" });

      const finished = await done(queue, job.id);

      expect(finished.status).to.equal("succeeded");
      expect(finished.startedAt).to.be.a("string");
      expect(finished.finishedAt).to.be.a("string");
      expect(seen).to.deep.equal(["queued:queued", "start:running", "done:succeeded"]);
      const stored = await store.listEvents(job.id);
      expect(stored.map((e) => e.seq)).to.deep.equal(stored.map((_, i) => i + 1));
      expect(emitted.map((e) => e.seq)).to.deep.equal(stored.map((e) => e.seq));
      expect(subscribed).to.deep.equal(stored.map((e) => e.seq));
      expect(emitted.map((e) => e.event)).to.deep.equal(stored.map((e) => e.data));
      expect(stored.map((e) => e.type)).to.include.members(["phase", "started", "step", "summary"]);
      expect(engine.calls.map((c) => c.op)).to.deep.equal(["preview", "up"]);
      expect(await store.getLease("s1")).to.equal(undefined);
    });

    it("records a failed job on its row and goes on with the next one", async () => {
      const queue = makeQueue();
      const errors: Error[] = [];
      queue.on("job:error", (_id, err) => errors.push(err));
      engine.failNext({ stack: "s1", op: "preview" });
      queue.start();

      const first = (await queue.submit(request("s1"))).job;
      const second = (await queue.submit(request("s1"))).job;
      const [a, b] = await Promise.all([done(queue, first.id), done(queue, second.id)]);

      expect(a.status).to.equal("failed");
      expect(a.error).to.deep.include({ code: "operation_failed" });
      expect(b.status).to.equal("succeeded");
      expect(errors).to.deep.equal([]);
    });

    it("runs jobs of a stack in order, one at a time, and never more than maxConcurrent in all, under 50 submissions at once", async () => {
      engine.delayMs = 2;
      const queue = makeQueue({ maxConcurrent: 3, maxQueuedPerPrincipal: 100 }); // one principal submits all 50
      let running = 0;
      let maxRunning = 0;
      const started = new Map<string, string[]>();
      queue.on("job:start", (j) => {
        running++;
        maxRunning = Math.max(maxRunning, running);
        started.set(j.stack, [...(started.get(j.stack) ?? []), j.id]);
      });
      queue.on("job:done", () => running--);
      queue.start();

      const submitted = (await Promise.all(Array.from({ length: 50 }, (_, i) => queue.submit(request(STACKS[i % STACKS.length], i % 3 === 0 ? "preview" : "up"))))).map((r) => r.job);
      const finished = await Promise.all(submitted.map((j) => done(queue, j.id)));

      expect(finished.map((j) => j.status)).to.deep.equal(submitted.map(() => "succeeded"));
      for (const stack of STACKS) {
        expect(started.get(stack)).to.deep.equal(submitted.filter((j) => j.stack === stack).map((j) => j.id));
      }
      expect(engine.maxActivePerStack).to.equal(1);
      expect(engine.maxActive).to.equal(3);
      expect(maxRunning).to.equal(3);
      expect(await queue.status()).to.deep.equal({ running: 0, queued: 0, maxConcurrent: 3, accepting: true });
    });

    it("shows each queued job's position in its stack's queue", async () => {
      engine.hold();
      const queue = makeQueue();
      // Submitted before the queue starts: all four are queued when their positions are read.
      const a = (await queue.submit(request("s1"))).job;
      const b = (await queue.submit(request("s1"))).job;
      const c = (await queue.submit(request("s1", "preview"))).job;
      const d = (await queue.submit(request("s2"))).job;
      expect([a, b, c, d].map((j) => j.queuePosition)).to.deep.equal([1, 2, 3, 1]);
      queue.start();

      await engine.nextCall({ stack: "s1" });
      await engine.nextCall({ stack: "s2" });

      expect(await queue.get(a.id)).to.include({ status: "running" }).and.not.have.property("queuePosition");
      expect((await queue.get(b.id))?.queuePosition).to.equal(1);
      expect((await queue.get(c.id))?.queuePosition).to.equal(2);
      expect(await queue.queuePosition((await store.getJob(c.id))!)).to.equal(2);
      expect(await queue.get("job_unknown")).to.equal(undefined);
      expect(await queue.status()).to.include({ running: 2, queued: 2 });
    });

    it("ends a job that outlives its timeout as timed_out", async () => {
      engine.hold();
      const queue = makeQueue({ timeoutMs: () => 50 });
      queue.start();
      const { job } = await queue.submit(request("s1", "drift"));

      const finished = await done(queue, job.id);

      expect(finished.status).to.equal("timed_out");
      expect(finished.error?.code).to.equal("timed_out");
    });
  });

  describe("priority", () => {
    it("dispatches a rollback ahead of previews and drift checks queued before it when slots are short", async () => {
      const queue = makeQueue({ maxConcurrent: 1 });
      engine.hold();
      queue.start();
      const first = (await queue.submit(request("s1", "preview"))).job;
      await engine.nextCall({ stack: "s1" });
      const preview = (await queue.submit(request("s2", "preview"))).job;
      const drift = (await queue.submit(request("s3", "drift"))).job;
      const rollback = (await queue.submit(request("s4", "rollback", { params: { reason: "bad release" } }))).job;
      const starts: string[] = [];
      queue.on("job:start", (j) => starts.push(j.id));
      const next = new Promise<void>((resolve) => queue.on("job:start", () => resolve()));
      engine.unhold();
      await done(queue, first.id);
      await next;
      expect(starts[0]).to.equal(rollback.id);
      await Promise.all([done(queue, preview.id), done(queue, drift.id), done(queue, rollback.id)]);
      expect(starts).to.have.members([rollback.id, preview.id, drift.id]);
      expect(starts.indexOf(preview.id)).to.be.below(starts.indexOf(drift.id));
    });

    it("reads each waiting stack's lease, block and next job in one query per pass, not three per stack", async () => {
      const calls = new Map<string, number>();
      const counted = new Proxy(store, {
        get(target, prop, receiver) {
          const value = Reflect.get(target, prop, receiver);
          if (typeof value !== "function") return value;
          return (...args: unknown[]) => {
            calls.set(String(prop), (calls.get(String(prop)) ?? 0) + 1);
            return (value as (...a: unknown[]) => unknown).apply(target, args);
          };
        },
      });
      const queue = makeQueue({ store: counted, deps: testDeps(counted, engine), maxConcurrent: 1 });
      engine.hold();
      queue.start();
      const first = (await queue.submit(request("s1"))).job;
      await engine.nextCall({ stack: "s1" });
      const waiting = await Promise.all(["s2", "s3", "s4", "s5"].map(async (stack) => (await queue.submit(request(stack, "preview"))).job));
      calls.clear();
      const started = next(queue, "job:start");
      engine.unhold();
      await done(queue, first.id);
      const [second] = await started;

      expect(second.id).to.equal(waiting[0].id);
      expect(calls.get("dispatchableStacks"), "a pass, and the claim's read under the lease").to.be.at.least(2);
      expect(calls.get("dispatchableStacks")).to.be.at.most(4);
      for (const perStack of ["getLease", "getStackState", "queuedJobs"]) expect(calls.get(perStack) ?? 0, perStack).to.equal(0);
      await Promise.all(waiting.map((j) => done(queue, j.id)));
    });
  });

  describe("submit", () => {
    it("returns the same job for the same Idempotency-Key and body, and refuses the key with another body", async () => {
      const queue = makeQueue();
      const first = await queue.submit(request("s1", "up", { idempotencyKey: "k-1", requestHash: "h-1" }));
      const again = await queue.submit(request("s1", "up", { idempotencyKey: "k-1", requestHash: "h-1" }));
      const err = await rejection(() => queue.submit(request("s1", "up", { idempotencyKey: "k-1", requestHash: "h-2" })));

      expect(first.created).to.equal(true);
      expect(again.created).to.equal(false);
      expect(again.job.id).to.equal(first.job.id);
      expect(err).to.be.instanceOf(ConflictError);
      expect((err as Error).message).to.match(/Idempotency-Key "k-1" was used for a different request/);
      expect(await store.listJobs()).to.have.length(1);
    });

    it("refuses an unknown stack or a missing version and writes nothing", async () => {
      const queue = makeQueue({ loadEnvironment: (stack) => {
        const env = loadEnvironment(stack, { envDir });
        return { ...env, settings: { ...env.settings, app: { ...env.settings.app, version: undefined } } };
      } });

      expect(await rejection(() => queue.submit(request("nope")))).to.be.instanceOf(NotFoundError);
      expect(await rejection(() => queue.submit(request("../etc")))).to.be.instanceOf(ConfigError);
      const err = await rejection(() => queue.submit(request("s1", "up")));
      expect(err).to.be.instanceOf(ConfigError);
      expect((err as ConfigError).details).to.deep.include({ field: "version" });
      expect(await store.listJobs()).to.deep.equal([]);
    });
  });

  describe("cancel", () => {
    it("cancels a queued job, which never starts", async () => {
      engine.hold();
      const queue = makeQueue();
      queue.start();
      const a = (await queue.submit(request("s1"))).job;
      const b = (await queue.submit(request("s1"))).job;
      await engine.nextCall({ stack: "s1" });
      const bDone = done(queue, b.id);

      const canceled = await queue.cancel(b.id, {}, "bob");

      expect(canceled.status).to.equal("canceled");
      expect(canceled.error).to.deep.equal({ code: "canceled", message: "canceled by bob before it started" });
      expect((await bDone).status).to.equal("canceled");
      engine.unhold();
      const c = (await queue.submit(request("s1"))).job;
      await done(queue, c.id);
      expect((await store.getJob(a.id))?.status).to.equal("succeeded");
      expect(await store.getJob(b.id)).to.not.have.property("startedAt");
      expect((await store.listEvents(b.id)).map((e) => e.type)).to.deep.equal(["log"]);
    });

    it("interrupts a running job gracefully; it ends canceled when the engine stops", async () => {
      engine.hold();
      const queue = makeQueue();
      queue.start();
      const { job } = await queue.submit(request("s1"));
      await engine.nextCall({ stack: "s1" });
      const finished = done(queue, job.id);

      const answer = await queue.cancel(job.id, {}, "bob");

      expect(answer.status).to.equal("running");
      const ended = await finished;
      expect(ended.status).to.equal("canceled");
      expect(ended.error?.code).to.equal("canceled");
      expect(ended.error?.message).to.match(/canceled by bob/);
      expect(engine.cancels).to.deep.equal(["s1"]);
      expect((await store.listEvents(job.id)).some((e) => (e.data as OperationEvent & { message?: string }).message === "cancel requested by bob: interrupting the engine")).to.equal(true);
    });

    it("forces a cancel only after a graceful one, and then kills the engine", async () => {
      engine.hold();
      engine.ignoreAbort = true;
      const queue = makeQueue();
      queue.start();
      const { job } = await queue.submit(request("s1"));
      const call = await engine.nextCall({ stack: "s1" });

      const early = await rejection(() => queue.cancel(job.id, { force: true }, "bob"));
      expect(early).to.be.instanceOf(ConflictError);
      expect((early as Error).message).to.match(/ask for a graceful cancel first/);
      expect(engine.kills).to.deep.equal([]);

      const finished = done(queue, job.id);
      expect((await queue.cancel(job.id, {}, "bob")).status).to.equal("running");
      expect((await queue.cancel(job.id, {}, "carol")).status).to.equal("running"); // asked once is enough
      expect(call.outcome).to.equal(undefined); // the engine ignores the interrupt
      await queue.cancel(job.id, { force: true }, "admin");

      expect((await finished).status).to.equal("canceled");
      expect(call.outcome).to.equal("killed");
      expect(engine.cancels).to.deep.equal(["s1"]);
      expect(engine.kills).to.deep.equal(["s1"]);
    });

    it("refuses to cancel a finished job, and an unknown one", async () => {
      const queue = makeQueue();
      queue.start();
      const { job } = await queue.submit(request("s1", "drift"));
      await done(queue, job.id);

      const err = await rejection(() => queue.cancel(job.id, {}, "bob"));

      expect(err).to.be.instanceOf(ConflictError);
      expect((err as Error).message).to.equal(`job ${job.id} already succeeded`);
      expect(await rejection(() => queue.cancel("job_nope", {}, "bob"))).to.be.instanceOf(NotFoundError);
    });

    describe("with the offline engine's real program process", () => {
      function programEvent(queue: JobQueue, jobId: string, text: RegExp): Promise<string> {
        return next(queue, "job:event", (id, _seq, event) => id === jobId && event.type === "diagnostic" && text.test(event.diagnostic.message)).then(
          ([, , event]) => (event as Extract<OperationEvent, { type: "diagnostic" }>).diagnostic.message,
        );
      }

      it("stops the program on a graceful cancel (SIGINT)", async () => {
        const offline = new OfflineEngine({ dataDir, programPath: path.join(FIXTURES, "offline-program-hang.ts") });
        const queue = makeQueue({ engine: offline });
        queue.start();
        const hanging = next(queue, "job:queued").then(([j]) => programEvent(queue, j.id, /fixture: hanging/));
        const { job } = await queue.submit(request("s1", "preview"));
        await hanging;
        const finished = done(queue, job.id);

        await queue.cancel(job.id, {}, "bob");

        expect((await finished).status).to.equal("canceled");
      });

      it("kills a program that ignores the graceful interrupt when the cancel is forced", async () => {
        const offline = new OfflineEngine({ dataDir, programPath: path.join(FIXTURES, "offline-program-stubborn.ts"), killGraceMs: 60_000 });
        const queue = makeQueue({ engine: offline });
        queue.start();
        const stubborn = next(queue, "job:queued").then(([j]) => programEvent(queue, j.id, /fixture: stubborn pid/));
        const { job } = await queue.submit(request("s1", "preview"));
        const pid = Number(/pid (\d+)/.exec(await stubborn)![1]);
        const ignored = programEvent(queue, job.id, /fixture: ignoring SIGINT/);

        await queue.cancel(job.id, {}, "bob");
        await ignored;
        expect((await store.getJob(job.id))?.status).to.equal("running");
        expect(() => process.kill(pid, 0)).to.not.throw();
        const finished = done(queue, job.id);
        await queue.cancel(job.id, { force: true }, "admin");

        expect((await finished).status).to.equal("canceled");
        expect(() => process.kill(pid, 0)).to.throw(/ESRCH/);
      });
    });
  });

  describe("the stack lease", () => {
    it("waits while a CLI run holds the stack and runs the job after it lets go; other stacks run meanwhile", async () => {
      const cli = await store.acquireLease("s1", { owner: "cli:bob@laptop:4242", ttlMs: 60_000 });
      const queue = makeQueue({ leaseRetryMs: 20 });
      queue.start();
      const waiting = (await queue.submit(request("s1"))).job;
      const other = (await queue.submit(request("s2"))).job;

      expect((await done(queue, other.id)).status).to.equal("succeeded");
      expect((await store.getJob(waiting.id))?.status).to.equal("queued");
      expect(engine.calls.filter((c) => c.stack === "s1")).to.deep.equal([]);

      const finished = done(queue, waiting.id);
      await store.releaseLease("s1", cli.owner, cli.token);
      expect((await finished).status).to.equal("succeeded");
    });
  });

  describe("crash recovery", () => {
    it("interrupts what a dead process left running, blocks its stack for mutations until an unlock, and runs the rest", async () => {
      // The crashed process: it was running an up on s1 and had queued more.
      const crashedOwner = `service:${hostname()}:${deadPid()}:old`;
      const crashed = makeQueue({ owner: crashedOwner });
      const orphan = await store.createJob({ stack: "s1", operation: "up", requestedBy: "alice", source: "api", engine: "offline", status: "running", version: "1.0.0", startedAt: new Date().toISOString(), params: { version: "1.0.0" } });
      await store.acquireLease("s1", { owner: crashedOwner, ttlMs: 60_000, jobId: orphan.id });
      const q1 = (await crashed.submit(request("s1", "up", { params: { version: "1.1.0" } }))).job;
      const q2 = (await crashed.submit(request("s1", "up", { params: { version: "1.2.0" } }))).job;
      const q3 = (await crashed.submit(request("s2", "up"))).job;

      const queue = makeQueue({ owner: "service:queue-test:2:bbbb" });
      const starts: string[] = [];
      queue.on("job:start", (j) => starts.push(j.id));
      const interrupted = await queue.recover();

      // What recovery left, before the queue starts dispatching.
      expect(interrupted.map((j) => j.id)).to.deep.equal([orphan.id]);
      expect(await store.getJob(orphan.id)).to.deep.include({ status: "interrupted", error: { code: "interrupted", message: RECOVERY_REASON } });
      expect((await store.getStackState("s1")).blockedJobId).to.equal(orphan.id);
      expect(await store.getLease("s1")).to.equal(undefined);
      queue.start();

      expect((await done(queue, q3.id)).status).to.equal("succeeded");
      expect((await store.getJob(q1.id))?.status).to.equal("queued");

      const before = (await store.listJobs({ limit: 500 })).length;
      const refused = await rejection(() => queue.submit(request("s1", "rollback")));
      expect(refused).to.be.instanceOf(ConflictError);
      expect((refused as Error).message).to.match(/^stack s1 is blocked: up job job_\w+ was interrupted \(the deployer stopped while this job was running\).*; an admin must POST \/v1\/stacks\/s1\/unlock$/);
      expect(await store.listJobs({ limit: 500 })).to.have.length(before);

      const preview = (await queue.submit(request("s1", "preview"))).job;
      expect((await done(queue, preview.id)).status).to.equal("succeeded");
      expect((await store.getJob(q1.id))?.status).to.equal("queued");

      const after = Promise.all([done(queue, q1.id), done(queue, q2.id)]);
      const unlocked = await queue.unlock("s1", "admin");
      expect(unlocked.wasBlocked).to.equal(true);
      expect(unlocked.reason).to.match(/was interrupted/);
      const [r1, r2] = await after;
      expect([r1.status, r2.status]).to.deep.equal(["succeeded", "succeeded"]);
      expect(starts).to.deep.equal([q3.id, preview.id, q1.id, q2.id]);
      expect(await store.getStackState("s1")).to.not.have.property("blockedReason");
    });

    it("interrupts at once a job whose holder is a zombie: killed, never reaped by its parent", async () => {
      // `sh` starts `sleep` in the background, then becomes a `sleep` that never waits for it.
      const parent = spawn("sh", ["-c", "sleep 60 & echo $!; exec sleep 60"], { stdio: ["ignore", "pipe", "ignore"] });
      try {
        const [line] = (await once(parent.stdout!, "data")) as [Buffer];
        const pid = Number(line.toString().trim());
        const owner = `cli:bob@${hostname()}:${processIncarnation(pid)}`;
        const job = await store.createJob({ stack: "s1", operation: "up", requestedBy: "bob", source: "cli", engine: "offline", status: "running" });
        await store.acquireLease("s1", { owner, ttlMs: 60_000, jobId: job.id });
        expect(holderIsDead(owner)).to.equal(false);

        // Only once `sh` has become `sleep` does nothing reap the child: a shell may reap it before.
        await until(`the parent ${parent.pid} runs sleep`, () => comm(parent.pid!) === "sleep");
        process.kill(pid, "SIGKILL");
        await until(`process ${pid} is a zombie`, () => procStat(pid)?.state === "Z");
        expect(() => process.kill(pid, 0)).to.not.throw(); // what the old check relied on
        const interrupted = await makeQueue().recover();

        expect(interrupted.map((j) => j.id)).to.deep.equal([job.id]);
        expect((await store.getJob(job.id))?.status).to.equal("interrupted");
        expect(await store.getLease("s1")).to.equal(undefined);
      } finally {
        parent.kill("SIGKILL");
      }
    });

    it("interrupts at once a job of its predecessor that had the same pid (a restarted container)", async () => {
      const mine = processIncarnation();
      const [pid, start] = mine.split(".");
      expect(Number(pid)).to.equal(process.pid);
      // The previous incarnation: same host, same pid, started earlier.
      const earlier = `${Number(start.split("-")[0]) - 1}${start.includes("-") ? `-${start.split("-")[1]}` : ""}`;
      const predecessor = `service:${hostname()}:${process.pid}.${earlier}:aaaa`;
      const job = await store.createJob({ stack: "s1", operation: "up", requestedBy: "alice", source: "api", engine: "offline", status: "running" });
      await store.acquireLease("s1", { owner: predecessor, ttlMs: 60_000, jobId: job.id });

      const interrupted = await makeQueue({ owner: `service:${hostname()}:${mine}:bbbb` }).recover();

      expect(interrupted.map((j) => j.id)).to.deep.equal([job.id]);
      expect((await store.getJob(job.id))?.error?.message).to.equal(RECOVERY_REASON);
      expect(holderIsDead(`service:${hostname()}:${mine}:bbbb`)).to.equal(false);
    });

    it("leaves alone a job whose holder is alive elsewhere", async () => {
      const job = await store.createJob({ stack: "s1", operation: "up", requestedBy: "bob", source: "cli", engine: "offline", status: "running" });
      await store.acquireLease("s1", { owner: `cli:bob@${hostname()}:${process.pid}`, ttlMs: 60_000 });
      const queue = makeQueue();

      expect(await queue.recover()).to.deep.equal([]);
      expect((await store.getJob(job.id))?.status).to.equal("running");
    });

    it("unlocks only when the lease's holder is gone and nothing runs on the stack here", async () => {
      const queue = makeQueue();
      const alive = await store.acquireLease("s1", { owner: `cli:bob@${hostname()}:${process.pid}`, ttlMs: 60_000 });
      expect(await rejection(() => queue.unlock("s1", "admin"))).to.be.instanceOf(ConflictError);
      await store.releaseLease("s1", alive.owner, alive.token);

      const dead = await store.acquireLease("s1", { owner: `cli:bob@${hostname()}:${deadPid()}`, ttlMs: 60_000 });
      const result = await queue.unlock("s1", "admin");
      expect(result).to.deep.equal({ clearedLease: dead, wasBlocked: false });
      expect(await store.getLease("s1")).to.equal(undefined);

      engine.hold();
      queue.start();
      await queue.submit(request("s1"));
      await engine.nextCall({ stack: "s1" });
      const busy = await rejection(() => queue.unlock("s1", "admin"));
      expect(busy).to.be.instanceOf(ConflictError);
      expect((busy as Error).message).to.match(/is running on stack s1/);
    });

    it("holds the stack's lease across unlock's recovery, and dispatches the stack's queued mutation only after it", async () => {
      const queue = makeQueue();
      const queued = await store.createJob({ stack: "s1", operation: "up", requestedBy: "bob", source: "api", engine: "offline", status: "queued", version: "1.0.0", params: { version: "1.0.0" } });
      await store.setStackState("s1", { blockedReason: "up job job_x was interrupted", blockedJobId: "job_x" });
      queue.start();
      const starts: string[] = [];
      queue.on("job:start", (j) => starts.push(j.id));
      let finish!: () => void;
      let recovering!: () => void;
      const inRecovery = new Promise<void>((resolve) => (recovering = resolve));
      const unlocked = queue.unlockAndRecover("s1", "admin", () => {
        recovering();
        return new Promise<string>((resolve) => (finish = () => resolve("recovered")));
      });
      await inRecovery;
      // Dispatch passes run while the recovery is in progress: the queued up must not start.
      const other = (await queue.submit(request("s2", "preview"))).job;
      await done(queue, other.id);
      expect((await store.getLease("s1"))?.owner).to.equal(queue.owner);
      expect((await store.getJob(queued.id))?.status).to.equal("queued");
      expect(starts).to.not.include(queued.id);
      expect((await store.getStackState("s1")).blockedReason).to.be.a("string");
      expect(await rejection(() => queue.unlock("s1", "admin"))).to.be.instanceOf(ConflictError);

      finish();
      const result = await unlocked;
      expect(result).to.deep.include({ wasBlocked: true, recovery: "recovered" });
      expect((await done(queue, queued.id)).status).to.equal("succeeded");
      expect(await store.getStackState("s1")).to.not.have.property("blockedReason");
    });

    it("keeps the stack blocked when unlock's recovery fails", async () => {
      const queue = makeQueue();
      await store.setStackState("s1", { blockedReason: "up job job_x was interrupted", blockedJobId: "job_x" });
      const failure = await queue.unlockAndRecover("s1", "admin", async () => {
        throw new Error("refresh failed");
      }).then(() => undefined, (err: Error) => err);
      expect(failure?.message).to.equal("refresh failed");
      expect((await store.getStackState("s1")).blockedReason).to.equal("up job job_x was interrupted");
      expect(await store.getLease("s1")).to.equal(undefined);
    });

    it("sweeps up running jobs nobody holds a lease for, and leaves those whose stack is held", async () => {
      const running = (stack: string) => store.createJob({ stack, operation: "up", requestedBy: "bob", source: "cli", engine: "offline", status: "running" });
      const orphan = await running("s1"); // its CLI was killed and its lease has lapsed
      const lapsed = await store.acquireLease("s1", { owner: "cli:bob@elsewhere:1", ttlMs: 60_000 });
      await store.releaseLease("s1", lapsed.owner, lapsed.token);
      const held = await running("s2"); // a CLI run in progress elsewhere
      await store.acquireLease("s2", { owner: "cli:carol@elsewhere:2", ttlMs: 60_000 });
      const queue = makeQueue();

      const swept = await queue.sweepOrphans();

      expect(swept.map((j) => j.id)).to.deep.equal([orphan.id]);
      expect((await store.getJob(orphan.id))?.status).to.equal("interrupted");
      expect((await store.getStackState("s1")).blockedJobId).to.equal(orphan.id);
      expect((await store.getJob(held.id))?.status).to.equal("running");
    });

    it("tells a dead local process from a live or remote one by its owner id", () => {
      expect(holderIsDead(`cli:bob@${hostname()}:${deadPid()}`)).to.equal(true);
      expect(holderIsDead(`service:${hostname()}:${deadPid()}:x`)).to.equal(true);
      expect(holderIsDead(`cli:bob@${hostname()}:${process.pid}`)).to.equal(false);
      expect(holderIsDead(`cli:bob@elsewhere:${deadPid()}`)).to.equal(false);
      expect(holderIsDead("someone")).to.equal(false);
    });
  });

  describe("shutdown", () => {
    it("interrupts running jobs gracefully, refuses new ones and leaves queued ones for the next start", async () => {
      engine.hold();
      const queue = makeQueue();
      queue.start();
      const a = (await queue.submit(request("s1"))).job;
      const b = (await queue.submit(request("s2", "drift"))).job;
      const c = (await queue.submit(request("s3"))).job;
      await engine.nextCall({ stack: "s1" });
      await engine.nextCall({ stack: "s2" });

      const stopping = queue.shutdown(10_000);
      const refused = await rejection(() => queue.submit(request("s4")));
      const interrupted = await stopping;

      expect(refused).to.be.instanceOf(EngineUnavailableError);
      expect((refused as EngineUnavailableError).details).to.deep.equal({ retryAfterSeconds: 30 });
      expect(interrupted.map((j) => j.id).sort()).to.deep.equal([a.id, b.id].sort());
      for (const job of interrupted) {
        expect(job.status).to.equal("interrupted");
        expect(job.error?.message).to.match(/shut down while this job was running; it was interrupted gracefully/);
      }
      expect((await store.getStackState("s1")).blockedJobId).to.equal(a.id); // an interrupted mutation
      expect(await store.getStackState("s2")).to.not.have.property("blockedReason"); // a drift check changes nothing
      expect((await store.getJob(c.id))?.status).to.equal("queued");
      expect(await queue.status()).to.deep.equal({ running: 0, queued: 1, maxConcurrent: 2, accepting: false });
    });

    it("marks a job that does not stop within the grace interrupted and releases its lease", async () => {
      engine.hold();
      engine.ignoreAbort = true;
      // Watches the late outcome the abandoned job tries to record.
      let lateWrite: (status: string) => void = () => undefined;
      const late = new Promise<string>((resolve) => (lateWrite = resolve));
      const watched = new Proxy(store, {
        get(target, prop) {
          if (prop !== "updateJob") return Reflect.get(target, prop, target).bind?.(target) ?? Reflect.get(target, prop, target);
          return async (id: string, patch: JobPatch, options?: UpdateJobOptions) => {
            try {
              return await target.updateJob(id, patch, options);
            } finally {
              if (patch.status === "succeeded") lateWrite((await target.getJob(id))!.status);
            }
          };
        },
      });
      const queue = makeQueue({ store: watched, deps: testDeps(watched, engine) });
      queue.start();
      const { job } = await queue.submit(request("s1", "preview"));
      const call = await engine.nextCall({ stack: "s1" });

      const interrupted = await queue.shutdown(30);

      expect(interrupted.map((j) => j.status)).to.deep.equal(["interrupted"]);
      expect(interrupted[0].error?.message).to.match(/did not stop within the grace period/);
      expect(await store.getLease("s1")).to.equal(undefined);
      expect((await queue.status()).running).to.equal(0);

      call.release(); // the engine finishes after all: the row keeps the first outcome
      expect(await late).to.equal("interrupted");
      expect((await store.getJob(job.id))?.status).to.equal("interrupted");
    });
  });
});
