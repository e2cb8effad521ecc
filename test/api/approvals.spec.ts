/**
 * Approvals over HTTP, against the real server (port 0) with the controllable engine and bearer
 * tokens: issue 5's "a prod deployment by the deployer-with-prod-rights waits for approval, the
 * requester's own approval is refused, two others' approvals run it", and the rest of the rule.
 *
 * `prod` here is an offline copy of local.yaml with `deploy.approvals.required: 2`.
 */
import { expect } from "chai";
import { summarize, type OperationResult, type ProgramCallOptions } from "../../automation/engine/port";
import type { Environment } from "../../automation/environment";
import type { Job } from "../../automation/store";
import { errorOf, startTestServer, type TestPrincipal, type TestServer } from "./support/server";
import { openSse } from "./support/sse";

const PRINCIPALS: readonly TestPrincipal[] = [
  // The deployer with prod rights; an approver on prod too, so that refusing her own approval is the
  // four-eyes rule at work, not a missing role.
  { name: "dana", roles: { "*": ["viewer"], dev: ["deployer"], prod: ["deployer", "approver"] } },
  { name: "erin", roles: { "*": ["viewer"], prod: ["approver"] } },
  { name: "frank", roles: { "*": ["viewer"], prod: ["approver"] } },
  { name: "gus", roles: { prod: ["viewer", "approver"] } },
  { name: "vic", roles: { "*": ["viewer"] } },
  { name: "dev-only", roles: { dev: ["deployer", "approver"] } },
];

describe("api: approvals", function () {
  this.timeout(30_000);
  let t: TestServer;

  beforeEach(async () => {
    t = await startTestServer({
      stacks: ["prod", "dev"],
      editEnv: (name, text) => (name === "prod" ? text.replace(/^deploy:\n/m, "deploy:\n  approvals: { required: 2 }\n") : text),
      principals: PRINCIPALS,
    });
  });

  afterEach(async () => {
    await t?.close();
  });

  /** Resolves with the job once its plan phase is over and it awaits approval. */
  function awaiting(jobId: string): Promise<Job> {
    const { queue, store } = t.server;
    return new Promise((resolve) => {
      const listener = (job: Job) => {
        if (job.id !== jobId) return;
        queue.off("job:awaiting_approval", listener);
        resolve(job);
      };
      queue.on("job:awaiting_approval", listener);
      void store.getJob(jobId).then((now) => {
        if (now?.status === "awaiting_approval") {
          queue.off("job:awaiting_approval", listener);
          resolve(now);
        }
      });
    });
  }

  /** dana asks for a prod deployment; resolves once it awaits approval. */
  async function requestDeployment(version = "2.0.0"): Promise<string> {
    const res = await t.as("dana").post("/v1/stacks/prod/deployments").send({ version });
    expect(res.status, res.text).to.equal(202);
    expect(res.body).to.include({ status: "queued", requestedBy: "dana", approvalsRequired: 2 });
    await awaiting(res.body.id);
    return res.body.id;
  }

  it("keeps an event stream across the plan phase and the wait: the approvals arrive live, then the apply and the end", async () => {
    t.engine.hold();
    const res = await t.as("dana").post("/v1/stacks/prod/deployments").send({ version: "2.0.0" });
    await t.engine.nextCall({ stack: "prod", op: "preview" });
    // Subscribed during the plan phase.
    const stream = await openSse(`${t.url}/v1/jobs/${res.body.id}/events`, t.auth("dana"));
    t.engine.unhold();
    await awaiting(res.body.id);
    expect((await t.as("erin").post(`/v1/jobs/${res.body.id}/approvals`).send({})).status).to.be.below(300);
    // Live, while the job still waits for its second approval (not replayed at the end).
    await stream.next((e) => typeof e.data?.message === "string" && e.data.message.includes("approved by erin"));
    expect((await t.server.store.getJob(res.body.id))?.status).to.equal("awaiting_approval");
    await t.as("frank").post(`/v1/jobs/${res.body.id}/approvals`).send({});
    await stream.ended;
    expect(stream.events.at(-1)).to.deep.include({ event: "end" });
    expect(stream.events.at(-1)!.data).to.include({ status: "succeeded" });
  });

  it("waits for approval on a prod deployment by the deployer with prod rights, refuses her own approval, and runs it on two others' approvals", async () => {
    const id = await requestDeployment();
    const waiting = await t.as("dana").get(`/v1/jobs/${id}`);
    expect(waiting.status).to.equal(200);
    expect(waiting.body).to.include({ status: "awaiting_approval", approvalsRequired: 2, finishedAt: null, queuePosition: null });
    expect(waiting.body.approvals).to.deep.equal([]);
    expect(waiting.body.changes).to.deep.equal({ create: 0, update: 0, delete: 0, replace: 0, same: 1 });
    expect(Date.parse(waiting.body.approvalExpiresAt) - Date.now()).to.be.within(23.9 * 3_600_000, 24 * 3_600_000);
    // What the approvers approve, at property level, and what the plan is bound to.
    expect(waiting.body.approvalRequest).to.deep.include({ changes: waiting.body.changes, steps: [], expiresAt: waiting.body.approvalExpiresAt });
    expect(waiting.body.approvalRequest.binding.environment).to.match(/^[0-9a-f]{64}$/);
    expect(waiting.body.approvalRequest.binding.config).to.match(/^[0-9a-f]{64}$/);
    expect(t.engine.calls.map((c) => c.op)).to.deep.equal(["preview"]);
    const listed = await t.as("vic").get("/v1/jobs?stack=prod&status=awaiting_approval");
    expect(listed.body.jobs.map((j: Job) => j.id)).to.deep.equal([id]);

    const own = await t.as("dana").post(`/v1/jobs/${id}/approvals`).send({ comment: "my own change, trust me" });
    expect(own.status).to.equal(403);
    const ownError = errorOf(own);
    expect(ownError.code).to.equal("forbidden");
    expect(ownError.message).to.include("dana requested job").and.include("other than the requester");

    const first = await t.as("erin").post(`/v1/jobs/${id}/approvals`).send({ comment: "diff reviewed" });
    expect(first.status, first.text).to.equal(200);
    expect(first.headers.location).to.equal(`/v1/jobs/${id}`);
    expect(first.body.status).to.equal("awaiting_approval");
    expect(first.body.approvals).to.have.length(1);
    expect(first.body.approvals[0]).to.include({ by: "erin", comment: "diff reviewed" });
    expect(first.body.approvals[0].at).to.be.a("string");

    const again = await t.as("erin").post(`/v1/jobs/${id}/approvals`).send({});
    expect(again.status).to.equal(409);
    expect(errorOf(again)).to.include({ code: "conflict" });
    expect(errorOf(again).message).to.include("erin already approved");

    const second = await t.as("frank").post(`/v1/jobs/${id}/approvals`);
    expect(second.status, second.text).to.equal(200);
    expect(second.body.status).to.equal("queued");
    expect(second.body.approvals.map((a: { by: string }) => a.by)).to.deep.equal(["erin", "frank"]);

    const done = await t.done(id);
    expect(done.status, done.error?.message).to.equal("succeeded");
    expect(t.engine.calls.map((c) => c.op)).to.deep.equal(["preview", "preview", "up"]);
    const final = await t.as("vic").get(`/v1/jobs/${id}`);
    expect(final.body).to.include({ status: "succeeded", approvalsRequired: 2 });
    expect(final.body).to.not.have.property("approvalExpiresAt");
    expect(final.body.approvals.map((a: { by: string }) => a.by)).to.deep.equal(["erin", "frank"]);
    const log = await t.as("vic").get(`/v1/jobs/${id}/log`);
    expect(log.text).to.include("approved by erin (1 of 2): diff reviewed").and.include("approved by frank (2 of 2)");
  });

  it("ends the job rejected on another approver's rejection, with the comment on the job; it never applies", async () => {
    const id = await requestDeployment();
    const own = await t.as("dana").post(`/v1/jobs/${id}/rejections`).send({});
    expect(own.status).to.equal(403);
    expect(errorOf(own).message).to.include("cancel");

    const rejected = await t.as("gus").post(`/v1/jobs/${id}/rejections`).send({ comment: "change freeze until Monday" });
    expect(rejected.status, rejected.text).to.equal(200);
    expect(rejected.body).to.include({ status: "rejected" });
    expect(rejected.body.rejection).to.include({ by: "gus", comment: "change freeze until Monday" });
    expect(rejected.body.error).to.deep.equal({ code: "rejected", message: "rejected by gus: change freeze until Monday" });

    const late = await t.as("erin").post(`/v1/jobs/${id}/approvals`).send({});
    expect(late.status).to.equal(409);
    expect(errorOf(late).message).to.include("already rejected");
    expect(t.engine.calls.filter((c) => c.op === "up")).to.have.length(0);
  });

  it("lets the requester withdraw a job awaiting approval with a cancel", async () => {
    const id = await requestDeployment();
    const canceled = await t.as("dana").post(`/v1/jobs/${id}/cancel`).send({});
    expect(canceled.status).to.equal(200);
    expect(canceled.body).to.include({ status: "canceled" });
    expect(canceled.body.error.message).to.equal("canceled by dana while awaiting approval");
  });

  it("fails the job with plan_changed when the fresh preview no longer matches the approved one", async () => {
    const id = await requestDeployment();
    // From now on the engine's previews report a resource to create that nobody approved.
    const base = t.engine.preview.bind(t.engine);
    t.engine.preview = async (env: Environment, options: ProgramCallOptions): Promise<OperationResult> => {
      const result = await base(env, options);
      const steps = [...result.steps, { urn: "urn:pulumi:prod::pulumi-aws-deployer::aws:s3/bucket:Bucket::extra", type: "aws:s3/bucket:Bucket", op: "create" as const, changedProperties: [] }];
      return { ...result, steps, changes: summarize(steps) };
    };
    await t.as("erin").post(`/v1/jobs/${id}/approvals`).expect(200);
    await t.as("frank").post(`/v1/jobs/${id}/approvals`).expect(200);
    const done = await t.done(id);
    expect(done.status).to.equal("failed");
    const got = await t.as("vic").get(`/v1/jobs/${id}`);
    expect(got.body.error.code).to.equal("plan_changed");
    expect(got.body.error.message).to.include("no longer matches what was approved");
    expect(t.engine.calls.filter((c) => c.op === "up")).to.have.length(0);
  });

  it("needs the approver role on the job's stack, and answers 404 where the caller cannot see the stack", async () => {
    const id = await requestDeployment();
    const viewer = await t.as("vic").post(`/v1/jobs/${id}/approvals`).send({});
    expect(viewer.status).to.equal(403);
    expect(errorOf(viewer).code).to.equal("forbidden");
    const elsewhere = await t.as("dev-only").post(`/v1/jobs/${id}/approvals`).send({});
    expect(elsewhere.status).to.equal(404);
    const unauthenticated = await t.anonymous().post(`/v1/jobs/${id}/approvals`).send({});
    expect(unauthenticated.status).to.equal(401);
    expect((await t.server.store.getJob(id))?.decisions).to.deep.equal([]);
  });

  it("validates the body (comment of at most 1000 characters, nothing else) and refuses a job that needs no approval", async () => {
    const id = await requestDeployment();
    const long = await t.as("erin").post(`/v1/jobs/${id}/approvals`).send({ comment: "x".repeat(1001) });
    expect(long.status).to.equal(400);
    expect(errorOf(long).details).to.include({ field: "comment" });
    const control = await t.as("erin").post(`/v1/jobs/${id}/approvals`).send({ comment: "ok\u0000" });
    expect(control.status).to.equal(400);
    expect(errorOf(control).details).to.include({ field: "comment" });
    expect(errorOf(control).message).to.match(/control characters/);
    const extra = await t.as("erin").post(`/v1/jobs/${id}/approvals`).send({ approve: true });
    expect(extra.status).to.equal(400);
    const max = await t.as("erin").post(`/v1/jobs/${id}/approvals`).send({ comment: "y".repeat(1000) });
    expect(max.status).to.equal(200);

    const dev = await t.as("dana").post("/v1/stacks/dev/deployments").send({ version: "2.0.0" });
    expect(dev.body.approvalsRequired).to.equal(0);
    await t.done(dev.body.id);
    const none = await t.as("dev-only").post(`/v1/jobs/${dev.body.id}/approvals`).send({});
    expect(none.status).to.equal(409);
    expect(errorOf(none).message).to.include("needs no approval");
  });

  it("keeps the stack's mutations queued behind a job awaiting approval; a preview still runs", async () => {
    const id = await requestDeployment();
    const refresh = await t.as("dana").post("/v1/stacks/prod/refreshes").send({});
    const preview = await t.as("dana").post("/v1/stacks/prod/previews").send({});
    expect((await t.done(preview.body.id)).status).to.equal("succeeded");
    expect((await t.server.store.getJob(refresh.body.id))?.status).to.equal("queued");
    await t.as("erin").post(`/v1/jobs/${id}/approvals`).expect(200);
    await t.as("frank").post(`/v1/jobs/${id}/approvals`).expect(200);
    const [deployed, refreshed] = await Promise.all([t.done(id), t.done(refresh.body.id)]);
    expect(deployed.status).to.equal("succeeded");
    expect(refreshed.status).to.equal("succeeded");
    expect(Date.parse(refreshed.startedAt!)).to.be.at.least(Date.parse(deployed.finishedAt!));
  });

  it("documents both routes in the OpenAPI document with the approver role", async () => {
    const doc = await t.anonymous().get("/openapi.json");
    expect(doc.status).to.equal(200);
    const paths = doc.body.paths as Record<string, Record<string, unknown>>;
    expect(paths).to.have.property("/v1/jobs/{id}/approvals").that.has.property("post");
    expect(paths).to.have.property("/v1/jobs/{id}/rejections").that.has.property("post");
    expect(JSON.stringify(paths["/v1/jobs/{id}/approvals"])).to.include("approver");
  });
});
