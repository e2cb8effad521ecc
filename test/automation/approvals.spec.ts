/**
 * Approvals in the job queue (automation/jobs/approvals.ts): plan phase → awaiting_approval → apply
 * phase, on the controllable test engine. The preview's change summary is the test's to set, so a
 * plan can change between approval and apply.
 */
import { expect } from "chai";
import { mkdtempSync, rmSync } from "fs";
import { tmpdir } from "os";
import * as path from "path";
import { summarize, type OperationResult, type ProgramCallOptions, type ResourceStep } from "../../automation/engine/port";
import { loadEnvironment, type Environment } from "../../automation/environment";
import { ConfigError, ConflictError, NotFoundError, PlanChangedError } from "../../automation/errors";
import { ApprovalRefusedError, planDifference } from "../../automation/jobs/approvals";
import { JobQueue, type JobQueueOptions } from "../../automation/jobs/queue";
import type { QueueEvents, SubmitRequest } from "../../automation/jobs/types";
import { MAX_DECISION_COMMENT, openStore, type Job, type Store } from "../../automation/store";
import { editEnvironment } from "./support/environments";
import { runOk } from "./support/jobs";
import { TestEngine, testDeps, testEnvDir } from "./support/test-engine";

const OWNER = "service:approvals-test:1:aaaa";
const HOUR = 3_600_000;

/** A test engine whose previews report the changing steps the test sets per stack. */
class PlanEngine extends TestEngine {
  readonly plans = new Map<string, ResourceStep[]>();

  override async preview(env: Environment, options: ProgramCallOptions): Promise<OperationResult> {
    const result = await super.preview(env, options);
    const steps = [...result.steps, ...(this.plans.get(env.name) ?? [])];
    return { ...result, steps, changes: summarize(steps) };
  }

  /** Every call of `op` on `stack`, in order. */
  count(op: string, stack: string): number {
    return this.calls.filter((c) => c.op === op && c.stack === stack).length;
  }
}

function step(stack: string, op: ResourceStep["op"], name = "web", type = "aws:ecs/service:Service"): ResourceStep {
  return { urn: `urn:pulumi:${stack}::pulumi-aws-deployer::${type}::${name}`, type, op, changedProperties: op === "update" ? ["taskDefinition"] : [] };
}

/** The error `fn` rejects (or throws) with; fails when it succeeds. */
async function rejection(fn: () => Promise<unknown>): Promise<unknown> {
  try {
    await fn();
  } catch (err) {
    return err;
  }
  throw new Error("expected a rejection, but it succeeded");
}

describe("approvals in the job queue", function () {
  this.timeout(30_000);

  let envDir: string;
  let dataDir: string;
  let store: Store;
  let engine: PlanEngine;
  let clock: number;
  const queues: JobQueue[] = [];

  before(() => {
    // p1, p2: prod-like (two approvals); p2's wait expires after 1.5 h; d1: no approvals.
    envDir = testEnvDir(["p1", "p2", "d1"]);
    editEnvironment(envDir, "p1", (doc) => (doc.deploy.approvals = { required: 2 }));
    editEnvironment(envDir, "p2", (doc) => (doc.deploy.approvals = { required: 2, expiresHours: 1.5 }));
  });
  after(() => rmSync(envDir, { recursive: true, force: true }));

  beforeEach(() => {
    dataDir = mkdtempSync(path.join(tmpdir(), "deployer-approvals-"));
    store = openStore(dataDir);
    engine = new PlanEngine();
    for (const stack of ["p1", "p2", "d1"]) engine.plans.set(stack, [step(stack, "update")]);
    clock = Date.parse("2025-06-01T09:00:00.000Z");
  });

  afterEach(async () => {
    for (const q of queues.splice(0)) await q.shutdown(1000);
    engine.unhold();
    await store.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  function makeQueue(options: Partial<JobQueueOptions> = {}): JobQueue {
    const queue = new JobQueue({
      store,
      deps: testDeps(store, engine),
      loadEnvironment: (stack) => loadEnvironment(stack, { envDir }),
      owner: OWNER,
      now: () => clock,
      approvalCheckMs: 0,
      ...options,
    });
    queues.push(queue);
    return queue;
  }

  function request(stack: string, operation: SubmitRequest["operation"] = "up", params: SubmitRequest["params"] = { version: "2.0.0" }): SubmitRequest {
    return { stack, operation, requestedBy: "dana", source: "api", params };
  }

  /** Resolves with the job when `event` is emitted for it (or at once when `ready` holds for it already). */
  function when<K extends "job:done" | "job:awaiting_approval">(queue: JobQueue, event: K, jobId: string, ready: (job: Job) => boolean): Promise<Job> {
    return new Promise((resolve, reject) => {
      let settled = false;
      const settle = (job: Job) => {
        if (settled) return;
        settled = true;
        queue.off(event, listener as never);
        resolve(job);
      };
      const listener = (...args: QueueEvents[K]) => {
        const job = args[0] as Job;
        if (job.id === jobId) settle(job);
      };
      // Listening first, then reading: an event emitted while the read is under way is not missed.
      queue.on(event, listener as never);
      store.getJob(jobId).then((now) => {
        if (now && ready(now)) settle(now);
      }, (err: unknown) => {
        if (settled) return;
        settled = true;
        queue.off(event, listener as never);
        reject(err instanceof Error ? err : new Error(String(err)));
      });
    });
  }
  const awaiting = (queue: JobQueue, jobId: string) => when(queue, "job:awaiting_approval", jobId, (j) => j.status === "awaiting_approval");
  const done = (queue: JobQueue, jobId: string) =>
    when(queue, "job:done", jobId, (j) => ["succeeded", "failed", "canceled", "timed_out", "interrupted", "rejected"].includes(j.status));

  /** Submits and waits for the plan phase to end. */
  async function planned(queue: JobQueue, req: SubmitRequest = request("p1")): Promise<Job> {
    const { job } = await queue.submit(req);
    return awaiting(queue, job.id);
  }

  async function messages(jobId: string): Promise<string[]> {
    return (await store.listEvents(jobId)).flatMap((e) => {
      const d = e.data as { type?: string; message?: string };
      return (d.type === "log" || d.type === "phase") && d.message ? [d.message] : [];
    });
  }

  it("runs the preview under the lease, then waits as awaiting_approval with the change summary, holding no lease, slot or engine", async () => {
    const queue = makeQueue();
    queue.start();
    const { job: submitted } = await queue.submit(request("p1"));
    expect(submitted).to.include({ status: "queued", approvalsRequired: 2 });

    const job = await awaiting(queue, submitted.id);
    expect(job.status).to.equal("awaiting_approval");
    expect(job.changes).to.deep.equal({ create: 0, update: 1, delete: 0, replace: 0, same: 1 });
    expect(job.steps?.filter((s) => s.op !== "same")).to.have.length(1);
    expect(job.approvalRequest?.steps.map((s) => `${s.op} ${s.urn}`)).to.deep.equal([`update ${step("p1", "update").urn}`]);
    expect(job.approvalRequest?.requestedAt).to.equal(new Date(clock).toISOString());
    expect(Date.parse(job.approvalRequest!.expiresAt) - clock).to.equal(24 * HOUR);
    expect(job.decisions).to.deep.equal([]);
    expect(job.finishedAt).to.equal(undefined);
    expect(job.error).to.equal(undefined);

    // Nothing was applied, and nothing is held while it waits.
    expect(engine.count("preview", "p1")).to.equal(1);
    expect(engine.count("up", "p1")).to.equal(0);
    expect(engine.runningCalls()).to.deep.equal([]);
    expect(await store.getLease("p1")).to.equal(undefined);
    expect(await queue.status()).to.include({ running: 0, queued: 0 });
    expect(queue.runningJobIds()).to.deep.equal([]);
    expect((await messages(job.id)).join("\n")).to.include("awaiting 2 approvals from approvers other than dana").and.include("expires after 24 h");
  });

  it("takes no approvals on a stack that requires none: its jobs run at once", async () => {
    const queue = makeQueue();
    queue.start();
    const { job } = await queue.submit(request("d1"));
    expect(job.approvalsRequired).to.equal(0);
    expect((await done(queue, job.id)).status).to.equal("succeeded");
    expect(await rejection(() => queue.approve(job.id, "erin"))).to.be.instanceOf(ConflictError).and.have.property("message").that.includes("needs no approval");
    // Previews, refreshes and drift checks of a stack that requires approvals need none either.
    for (const operation of ["preview", "refresh", "drift"] as const) {
      const other = (await queue.submit(request("p1", operation, operation === "preview" ? { version: "2.0.0" } : {}))).job;
      expect(other.approvalsRequired, operation).to.equal(0);
      expect((await done(queue, other.id)).status, operation).to.equal("succeeded");
    }
  });

  it("refuses the requester's own approval and rejection (forbidden), a second decision by one principal and an unknown job", async () => {
    const queue = makeQueue();
    queue.start();
    const job = await planned(queue);

    const self = await rejection(() => queue.approve(job.id, "dana", "lgtm"));
    expect(self).to.be.instanceOf(ApprovalRefusedError).and.include({ code: "forbidden" });
    expect((self as Error).message).to.include("dana requested job").and.include("cannot approve it");
    const selfReject = await rejection(() => queue.reject(job.id, "dana"));
    expect(selfReject).to.be.instanceOf(ApprovalRefusedError);
    expect((selfReject as Error).message).to.include("cancel");

    const first = await queue.approve(job.id, "erin", "looks right");
    expect(first.status).to.equal("awaiting_approval");
    expect(first.decisions).to.have.length(1).and.to.deep.include({ by: "erin", decision: "approved", comment: "looks right", at: first.decisions![0].at });
    const twice = await rejection(() => queue.approve(job.id, "erin"));
    expect(twice).to.be.instanceOf(ConflictError);
    expect((twice as Error).message).to.include("erin already approved");
    // One decision per principal: no rejection after an approval either.
    expect(await rejection(() => queue.reject(job.id, "erin", "changed my mind"))).to.be.instanceOf(ConflictError);
    expect(await rejection(() => queue.approve("job_00000000000000000000000000", "erin"))).to.be.instanceOf(NotFoundError);

    const after = (await store.getJob(job.id))!;
    expect(after.status).to.equal("awaiting_approval");
    expect(after.decisions?.map((d) => d.by)).to.deep.equal(["erin"]);
    expect(engine.count("up", "p1")).to.equal(0);
  });

  it("takes decisions only while the job awaits approval", async () => {
    const queue = makeQueue();
    queue.start();
    engine.hold();
    const { job } = await queue.submit(request("p1"));
    await engine.nextCall({ op: "preview", stack: "p1" });
    // Running its plan phase: there is nothing to approve yet.
    const early = await rejection(() => queue.approve(job.id, "erin"));
    expect(early).to.be.instanceOf(ConflictError);
    expect((early as Error).message).to.include("is running");
    engine.unhold();
    await awaiting(queue, job.id);
    await queue.cancel(job.id, {}, "dana");
    const late = await rejection(() => queue.approve(job.id, "erin"));
    expect(late).to.be.instanceOf(ConflictError);
    expect((late as Error).message).to.include("already canceled");
  });

  it("queues the job again once two approvers other than the requester approve; a fresh preview matching the approved one, then it applies", async () => {
    const queue = makeQueue();
    queue.start();
    const job = await planned(queue);

    expect((await queue.approve(job.id, "erin")).status).to.equal("awaiting_approval");
    const second = await queue.approve(job.id, "frank", "ok for the 14:00 window");
    expect(second.status).to.equal("queued");
    const finished = await done(queue, job.id);

    expect(finished.status, finished.error?.message).to.equal("succeeded");
    expect(finished.decisions?.map((d) => [d.by, d.decision, d.comment])).to.deep.equal([
      ["erin", "approved", undefined],
      ["frank", "approved", "ok for the 14:00 window"],
    ]);
    expect(engine.calls.filter((c) => c.stack === "p1").map((c) => c.op)).to.deep.equal(["preview", "preview", "up"]);
    const log = (await messages(job.id)).join("\n");
    expect(log).to.include("approved by erin (1 of 2)").and.include("approved by frank (2 of 2): ok for the 14:00 window; queued to apply");
    expect(log).to.include("the fresh plan is the approved one");
    expect((await store.deployments("p1"))[0]?.id).to.equal(job.id);
  });

  it("ends the job rejected with the approver's reason on a rejection; it never applies", async () => {
    const queue = makeQueue();
    queue.start();
    const job = await planned(queue);
    await queue.approve(job.id, "erin");
    const doneP = done(queue, job.id);
    const rejected = await queue.reject(job.id, "frank", "not during the freeze");
    expect(rejected.status).to.equal("rejected");
    expect(rejected.error).to.deep.equal({ code: "rejected", message: "rejected by frank: not during the freeze" });
    expect(rejected.finishedAt).to.be.a("string");
    expect((await doneP).status).to.equal("rejected");

    expect(await rejection(() => queue.approve(job.id, "gus"))).to.be.instanceOf(ConflictError);
    await new Promise((r) => setTimeout(r, 20));
    expect(engine.count("up", "p1")).to.equal(0);
    expect((await store.getJob(job.id))?.status).to.equal("rejected");
  });

  it("ends an approval wait after deploy.approvals.expiresHours as rejected with the reason (timer, dispatch, or a late decision)", async () => {
    const queue = makeQueue();
    queue.start();
    const a = await planned(queue, request("p1"));
    const b = await planned(queue, request("p2"));
    await queue.approve(a.id, "erin");

    clock += 1.5 * HOUR; // p2's wait (1.5 h) is over, p1's (24 h) is not
    const late = await rejection(() => queue.approve(b.id, "erin"));
    expect(late).to.be.instanceOf(ConflictError);
    expect((late as Error).message).to.include("already rejected");
    expect((await store.getJob(b.id))?.error).to.deep.equal({ code: "approval_expired", message: "approval expired after 1.5 h" });
    expect((await store.getJob(a.id))?.status).to.equal("awaiting_approval");

    clock += 22.5 * HOUR; // exactly 24 h after p1's plan
    const doneA = done(queue, a.id);
    expect((await queue.expireApprovals()).map((j) => j.id)).to.deep.equal([a.id]);
    const expired = await doneA;
    expect(expired).to.include({ status: "rejected" });
    expect(expired.error).to.deep.equal({ code: "approval_expired", message: "approval expired after 24 h" });
    expect(expired.finishedAt).to.equal(new Date(clock).toISOString());
    expect(await messages(a.id)).to.include("approval expired after 24 h");
    expect(engine.count("up", "p1") + engine.count("up", "p2")).to.equal(0);
  });

  it("checks expiry at dispatch: an expired wait no longer holds the mutations behind it", async () => {
    const queue = makeQueue();
    queue.start();
    const a = await planned(queue);
    clock += 25 * HOUR;
    const { job: b } = await queue.submit(request("p1", "refresh", {}));
    expect((await done(queue, b.id)).status).to.equal("succeeded");
    expect((await store.getJob(a.id))?.status).to.equal("rejected");
  });

  it("runs its timer unref'd and expires waits from it", async () => {
    const queue = makeQueue({ approvalCheckMs: 20 });
    queue.start();
    const a = await planned(queue);
    clock += 24 * HOUR + 1;
    const expired = await done(queue, a.id);
    expect(expired.error?.code).to.equal("approval_expired");
  });

  it("fails with plan_changed, applying nothing, when the fresh preview differs from the approved one", async () => {
    const queue = makeQueue();
    queue.start();
    const job = await planned(queue);
    await queue.approve(job.id, "erin");
    // Between approval and apply, the preview starts reporting one more resource to create.
    engine.plans.set("p1", [step("p1", "update"), step("p1", "create", "extra", "aws:s3/bucket:Bucket")]);
    await queue.approve(job.id, "frank");
    const failed = await done(queue, job.id);

    expect(failed.status).to.equal("failed");
    expect(failed.error?.code).to.equal(new PlanChangedError("x").code).and.equal("plan_changed");
    expect(failed.error?.message).to.include("no longer matches what was approved").and.include("1 to create");
    expect(failed.error?.message).to.include(`now also: create ${step("p1", "create", "extra", "aws:s3/bucket:Bucket").urn}`);
    expect(engine.count("up", "p1")).to.equal(0);
    // The job shows what the fresh preview found; the approved plan stays on it.
    expect(failed.changes?.create).to.equal(1);
    expect(failed.approvalRequest?.changes.create).to.equal(0);
  });

  it("compares the set of (urn, op) steps, not only the counts", () => {
    const approved = { changes: summarize([step("s", "update", "a")]), steps: [step("s", "update", "a")] };
    expect(planDifference(approved, { changes: summarize([step("s", "update", "a")]), steps: [step("s", "update", "a"), step("s", "same", "b")] })).to.equal(undefined);
    const otherUrn = planDifference(approved, { changes: summarize([step("s", "update", "b")]), steps: [step("s", "update", "b")] });
    expect(otherUrn?.added).to.deep.equal([`update ${step("s", "update", "b").urn} [taskDefinition]`]);
    expect(otherUrn?.removed).to.deep.equal([`update ${step("s", "update", "a").urn} [taskDefinition]`]);
    const otherOp = planDifference(approved, { changes: summarize([step("s", "replace", "a")]), steps: [step("s", "replace", "a")] });
    expect(otherOp?.now).to.include("1 to replace");
  });

  it("compares the changed properties of each step: the same resource changing another property is another plan", () => {
    const approved = { changes: summarize([step("s", "update", "a")]), steps: [step("s", "update", "a")] };
    const more = { ...step("s", "update", "a"), changedProperties: ["taskDefinition", "desiredCount"] };
    const diff = planDifference(approved, { changes: summarize([more]), steps: [more] });
    expect(diff?.added).to.deep.equal([`update ${more.urn} [desiredCount, taskDefinition]`]);
  });

  describe("binding the exact plan", () => {
    let ownDir: string;
    beforeEach(() => {
      ownDir = testEnvDir(["p3"]);
      editEnvironment(ownDir, "p3", (doc) => (doc.deploy.approvals = { required: 2, expiresHours: 2 }));
      engine.plans.set("p3", [step("p3", "update")]);
    });
    afterEach(() => rmSync(ownDir, { recursive: true, force: true }));
    const ownQueue = () => makeQueue({ loadEnvironment: (stack) => loadEnvironment(stack, { envDir: ownDir }) });

    it("records the steps with their changed properties and the plan's binding for the approvers", async () => {
      const queue = ownQueue();
      queue.start();
      const job = await planned(queue, request("p3"));
      expect(job.approvalRequest?.steps).to.deep.equal([{ ...step("p3", "update"), changedProperties: ["taskDefinition"] }]);
      expect(job.approvalRequest?.binding?.environment).to.match(/^[0-9a-f]{64}$/);
      expect(job.approvalRequest?.binding?.config).to.match(/^[0-9a-f]{64}$/);
    });

    it("fails plan_changed when the environment file was edited between the approvals and the apply (the review's case)", async () => {
      const queue = ownQueue();
      queue.start();
      const job = await planned(queue, request("p3"));
      await queue.approve(job.id, "erin");
      // After the first approval: a new container variable, and the rule raised to 3.
      editEnvironment(ownDir, "p3", (doc) => {
        doc.app.environment = { ...(doc.app.environment ?? {}), FEATURE_X: "on" };
        doc.deploy.approvals = { required: 3, expiresHours: 2 };
      });
      const second = await queue.approve(job.id, "frank");
      expect(second.status).to.equal("awaiting_approval");
      expect(second.approvalsRequired).to.equal(3);
      expect((await messages(job.id)).join("\n")).to.include("approved by frank (2 of 3)");
      expect((await queue.approve(job.id, "grace")).status).to.equal("queued");
      const finished = await done(queue, job.id);
      expect(finished.status).to.equal("failed");
      expect(finished.error?.code).to.equal("plan_changed");
      expect(finished.error?.message).to.include("the environment file changed since the approval").and.include("the program config changed");
      expect(engine.count("up", "p3")).to.equal(0);
    });

    it("sends an approved job back to waiting when the rule is raised before it applies", async () => {
      const queue = ownQueue();
      engine.hold();
      queue.start();
      // Another job holds the stack so the approved one stays queued.
      const { job } = await queue.submit(request("p3"));
      await engine.nextCall({ op: "preview", stack: "p3" });
      engine.unhold();
      await awaiting(queue, job.id);
      await queue.shutdown(1000);
      const stopped = makeQueue({ loadEnvironment: (stack) => loadEnvironment(stack, { envDir: ownDir }) });
      await stopped.approve(job.id, "erin");
      expect((await stopped.approve(job.id, "frank")).status).to.equal("queued");
      editEnvironment(ownDir, "p3", (doc) => (doc.deploy.approvals = { required: 3, expiresHours: 2 }));
      const back = awaiting(stopped, job.id);
      stopped.start();
      const waiting = await back;
      expect(waiting.status).to.equal("awaiting_approval");
      expect(waiting.approvalsRequired).to.equal(3);
      expect(engine.count("up", "p3")).to.equal(0);
    });

    it("expires an approved job that stays queued past expiresHours, like one that waits", async () => {
      const queue = ownQueue();
      queue.start();
      const job = await planned(queue, request("p3"));
      await queue.shutdown(1000);
      const later = makeQueue({ loadEnvironment: (stack) => loadEnvironment(stack, { envDir: ownDir }) });
      await later.approve(job.id, "erin");
      expect((await later.approve(job.id, "frank")).status).to.equal("queued");
      clock += 2 * HOUR + 1;
      const expired = await later.expireApprovals();
      expect(expired.map((j) => [j.id, j.status, j.error?.code])).to.deep.equal([[job.id, "rejected", "approval_expired"]]);
      expect(engine.count("up", "p3")).to.equal(0);
    });
  });

  it("keeps the stack's mutations queued behind a job awaiting approval while previews and drift checks run; they run after it", async () => {
    const queue = makeQueue();
    queue.start();
    const a = await planned(queue);
    const b = (await queue.submit(request("p1", "refresh", {}))).job;
    const c = (await queue.submit(request("p1", "preview"))).job;
    const d = (await queue.submit(request("p1", "drift", {}))).job;
    expect((await done(queue, c.id)).status).to.equal("succeeded");
    expect((await done(queue, d.id)).status).to.equal("succeeded");
    await new Promise((r) => setTimeout(r, 30));
    expect((await store.getJob(b.id))?.status).to.equal("queued");
    expect(engine.count("refresh", "p1")).to.equal(0);
    // Another stack is not held.
    const other = (await queue.submit(request("d1", "refresh", {}))).job;
    expect((await done(queue, other.id)).status).to.equal("succeeded");

    // Approved: it runs first (FIFO by creation), then the refresh behind it.
    await queue.approve(a.id, "erin");
    await queue.approve(a.id, "frank");
    const [ranA, ranB] = await Promise.all([done(queue, a.id), done(queue, b.id)]);
    expect(ranA.status).to.equal("succeeded");
    expect(ranB.status).to.equal("succeeded");
    expect(Date.parse(ranB.startedAt!)).to.be.at.least(Date.parse(ranA.finishedAt!));
    expect(engine.maxActivePerStack).to.equal(1);
  });

  it("queues a second deployment's plan behind the first one's wait", async () => {
    const queue = makeQueue();
    queue.start();
    const a = await planned(queue);
    const b = (await queue.submit(request("p1", "up", { version: "3.0.0" }))).job;
    await new Promise((r) => setTimeout(r, 30));
    expect((await store.getJob(b.id))?.status).to.equal("queued");
    await queue.reject(a.id, "erin", "superseded by 3.0.0");
    const waitingB = await awaiting(queue, b.id);
    expect(waitingB.version).to.equal("3.0.0");
  });

  it("cancels a job awaiting approval (canceled, never applies) and lets what waited behind it run", async () => {
    const queue = makeQueue();
    queue.start();
    const a = await planned(queue);
    const b = (await queue.submit(request("p1", "refresh", {}))).job;
    const canceled = await queue.cancel(a.id, { force: true }, "dana");
    expect(canceled.status).to.equal("canceled");
    expect(canceled.error?.message).to.equal("canceled by dana while awaiting approval");
    expect((await done(queue, b.id)).status).to.equal("succeeded");
    expect(engine.count("up", "p1")).to.equal(0);
    expect(await rejection(() => queue.approve(a.id, "erin"))).to.be.instanceOf(ConflictError);
  });

  it("keeps a job awaiting approval across a restart, and applies it once approved in the new process", async () => {
    const first = makeQueue();
    first.start();
    const job = await planned(first);
    await first.approve(job.id, "erin");
    await first.shutdown(1000);

    const second = makeQueue({ owner: "service:approvals-test:2:bbbb" });
    expect(await second.recover()).to.deep.equal([]);
    second.start();
    const kept = (await store.getJob(job.id))!;
    expect(kept.status).to.equal("awaiting_approval");
    expect(kept.decisions?.map((d) => d.by)).to.deep.equal(["erin"]);
    expect(kept.approvalRequest).to.deep.equal(job.approvalRequest);

    await second.approve(job.id, "frank");
    expect((await done(second, job.id)).status).to.equal("succeeded");
    expect(engine.count("up", "p1")).to.equal(1);
  });

  it("expires a wait that ended while the service was down at recover()", async () => {
    const first = makeQueue();
    first.start();
    const job = await planned(first);
    await first.shutdown(1000);
    clock += 24 * HOUR;
    const second = makeQueue({ owner: "service:approvals-test:2:bbbb" });
    await second.recover();
    expect((await store.getJob(job.id))?.error?.code).to.equal("approval_expired");
  });

  it("runs a rollback and a destroy through the same two phases", async () => {
    // Two deployments made outside the queue (as a CLI run with a bypass would).
    const env = loadEnvironment("p1", { envDir });
    const deps = testDeps(store, engine);
    await runOk(deps, env, { operation: "up", params: { version: "1.0.0" } });
    await runOk(deps, env, { operation: "up", params: { version: "2.0.0" } });
    const queue = makeQueue();
    queue.start();

    const rollback = await planned(queue, request("p1", "rollback", { reason: "bad release" }));
    expect(rollback.approvalsRequired).to.equal(2);
    expect(engine.count("up", "p1")).to.equal(2);
    await queue.approve(rollback.id, "erin");
    await queue.approve(rollback.id, "frank");
    const rolledBack = await done(queue, rollback.id);
    expect(rolledBack.status, rolledBack.error?.message).to.equal("succeeded");
    expect(rolledBack.version).to.equal("1.0.0");
    expect(engine.count("up", "p1")).to.equal(3);

    const destroy = await planned(queue, request("p1", "destroy", { reason: "decommissioned" }));
    expect(destroy.approvalRequest).to.not.equal(undefined);
    expect(engine.count("destroy", "p1")).to.equal(0);
    await queue.approve(destroy.id, "erin");
    await queue.approve(destroy.id, "frank");
    expect((await done(queue, destroy.id)).status).to.equal("succeeded");
    expect(engine.count("destroy", "p1")).to.equal(1);
  });

  describe("the store's approvals", () => {
    it("records one decision per principal, only while the job awaits approval, and refuses long comments", async () => {
      const job = await store.createJob({ stack: "p1", operation: "up", requestedBy: "dana", source: "api", engine: "offline", approvalsRequired: 2 });
      expect(await rejection(() => store.recordDecision(job.id, { by: "erin", decision: "approved" }))).to.be.instanceOf(ConflictError);
      await store.updateJob(job.id, { status: "awaiting_approval" });
      expect(await rejection(() => store.recordDecision(job.id, { by: "erin", decision: "approved", comment: "x".repeat(MAX_DECISION_COMMENT + 1) }))).to.be.instanceOf(ConfigError);
      expect((await store.recordDecision(job.id, { by: "erin", decision: "approved", comment: "x".repeat(MAX_DECISION_COMMENT) })).status).to.equal("awaiting_approval");
      expect(await rejection(() => store.recordDecision(job.id, { by: "erin", decision: "rejected" }))).to.be.instanceOf(ConflictError);
      expect((await store.recordDecision(job.id, { by: "frank", decision: "approved" })).status).to.equal("queued");
      expect((await store.listDecisions(job.id)).map((d) => d.by)).to.deep.equal(["erin", "frank"]);
      expect(await rejection(() => store.updateJob(job.id, { decisions: [] } as never))).to.be.instanceOf(ConfigError);
      // A job that needs no approvals is read without the extra query.
      const plain = await store.createJob({ stack: "d1", operation: "up", requestedBy: "dana", source: "api", engine: "offline" });
      expect(await store.getJob(plain.id)).to.not.have.property("decisions");
    });
  });
});
