/** The service around the routes: health, readiness, metrics, stacks, unlock, the drift webhook, shutdown. */
import { expect } from "chai";
import { copyFileSync, writeFileSync } from "fs";
import { createServer, type IncomingMessage } from "http";
import * as path from "path";
import type { AddressInfo } from "net";
import { verifyWebhookSignature } from "../../automation/jobs/webhook";
import { errorOf, startTestServer, type TestServer } from "./support/server";

const DRIFTED = [{ urn: "urn:pulumi:s1::p::aws:s3/bucket:Bucket::logs", type: "aws:s3/bucket:Bucket", kind: "update" as const, properties: [{ path: "tags.Owner", kind: "update" as const, state: "a", live: "b" }] }];

describe("api: service", function () {
  this.timeout(30_000);
  let t: TestServer;

  afterEach(async () => {
    await t?.close();
  });

  describe("health and readiness", () => {
    beforeEach(async () => {
      t = await startTestServer();
    });

    it("is alive and ready with the store and the engine", async () => {
      expect((await t.http().get("/healthz")).body).to.deep.equal({ status: "ok" });
      const ready = await t.http().get("/readyz");
      expect(ready.status).to.equal(200);
      expect(ready.body).to.deep.include({ ready: true, shuttingDown: false, store: { ok: true }, engines: { offline: { ok: true } } });
    });

    it("is not ready when no engine can run, saying why", async () => {
      t.engine.availability = { ok: false, reason: "no engine here" };
      const res = await t.http().get("/readyz");
      expect(res.status).to.equal(503);
      const error = errorOf(res);
      expect(error.code).to.equal("engine_unavailable");
      expect(error.details.engines.offline).to.deep.equal({ ok: false, reason: "no engine here" });
      expect(res.headers["retry-after"]).to.match(/^\d+$/);
    });

    it("refuses operations on a stack whose engine cannot run, with 503 and nothing written", async () => {
      t.engine.availability = { ok: false, reason: "no engine here" };
      const res = await t.http().post("/v1/stacks/s1/drift-checks").send({});
      expect(res.status).to.equal(503);
      expect(errorOf(res).message).to.equal("no engine here");
      expect(res.headers["retry-after"]).to.match(/^\d+$/);
      expect((await t.jobCount())).to.equal(0);
    });
  });

  describe("an environment file that does not load", () => {
    beforeEach(async () => {
      t = await startTestServer({ stacks: ["s1", "s2", "s3"], principals: [{ name: "vic", roles: { s1: ["viewer"], s3: ["viewer"] } }] });
      writeFileSync(path.join(t.envDir, "s3.yaml"), "app: [unclosed\n");
    });

    it("loads a copy of s1.yaml saved as twin.yaml; a deployment of either stops at the review gate naming both files", async () => {
      copyFileSync(path.join(t.envDir, "s1.yaml"), path.join(t.envDir, "twin.yaml"));
      const res = await t.http().get("/v1/stacks");
      for (const stack of res.body.stacks.filter((s: { name: string }) => s.name !== "s3")) expect(stack, stack.name).to.not.have.property("invalid");
      for (const [stack, other] of [["s1", "twin.yaml"], ["twin", "s1.yaml"]]) {
        const deployed = await t.http().post(`/v1/stacks/${stack}/deployments`).send({ version: "1.0.0" });
        expect(deployed.status).to.equal(202);
        const job = await t.done(deployed.body.id);
        expect(job.status).to.equal("failed");
        expect(job.error?.code).to.equal("blocked");
        expect(job.error?.message).to.contain(`${stack}.yaml`).and.to.contain(other).and.to.contain("overlaps");
      }
      const ready = await t.http().get("/readyz");
      expect(ready.body).to.deep.include({ ready: true, invalidStacks: ["s3"], runnableStacks: 3 });
    });

    it("makes only its own stack invalid: the others are listed, run, and the service stays ready naming it", async () => {
      const res = await t.http().get("/v1/stacks");
      expect(res.status).to.equal(200);
      const byName = new Map<string, any>(res.body.stacks.map((s: { name: string }) => [s.name, s]));
      expect([...byName.keys()]).to.deep.equal(["s1", "s2", "s3"]);
      expect(byName.get("s1")).to.not.have.property("invalid");
      expect(byName.get("s1").engine).to.equal("offline");
      expect(byName.get("s3").invalid).to.deep.equal({ file: "s3.yaml", field: "(file)", reason: byName.get("s3").invalid.reason });
      expect(byName.get("s3").invalid.reason).to.match(/^is not valid YAML/);
      expect(JSON.stringify(byName.get("s3"))).to.not.contain(t.envDir);

      const deployed = await t.http().post("/v1/stacks/s2/deployments").send({ version: "1.0.0" });
      expect(deployed.status).to.equal(202);
      expect((await t.done(deployed.body.id)).status).to.equal("succeeded");

      const ready = await t.http().get("/readyz");
      expect(ready.status).to.equal(200);
      expect(ready.body).to.deep.include({ ready: true, invalidStacks: ["s3"], runnableStacks: 2 });
    });

    it("shows a viewer only the stacks it may read, reasons included", async () => {
      const res = await t.as("vic").get("/v1/stacks");
      expect(res.body.stacks.map((s: { name: string }) => s.name)).to.deep.equal(["s1", "s3"]);
      expect(res.body.stacks[1].invalid.file).to.equal("s3.yaml");
    });

    it("is not ready when no stack can run, naming the invalid ones instead of blaming the engine", async () => {
      writeFileSync(path.join(t.envDir, "s1.yaml"), "engine: [\n");
      writeFileSync(path.join(t.envDir, "s2.yaml"), "nope: 1\n");
      const res = await t.http().get("/readyz");
      expect(res.status).to.equal(503);
      expect(errorOf(res).message).to.equal("not ready: no stack can run: the environment files of s1, s2, s3 do not load");
      expect(errorOf(res).details.invalidStacks).to.deep.equal(["s1", "s2", "s3"]);
    });
  });

  describe("stacks", () => {
    beforeEach(async () => {
      t = await startTestServer({ stacks: ["s1", "s2"] });
    });

    it("lists every environment with its last deployment, drift, block, running job and queue", async () => {
      const deployed = await t.http().post("/v1/stacks/s1/deployments").send({ version: "3.1.4" });
      await t.done(deployed.body.id);
      t.engine.setDrift("s1", DRIFTED);
      await t.done((await t.http().post("/v1/stacks/s1/drift-checks").send({})).body.id);
      const res = await t.http().get("/v1/stacks");
      expect(res.status).to.equal(200);
      expect(res.body.stacks.map((s: { name: string }) => s.name)).to.deep.equal(["s1", "s2"]);
      const s1 = res.body.stacks[0];
      expect(s1).to.deep.include({ name: "s1", engine: "offline", production: false, blockedReason: null, runningJobId: null, queued: 0 });
      expect(s1.lastDeployment).to.deep.include({ id: deployed.body.id, version: "3.1.4" });
      expect(s1.drift.drifted).to.equal(true);
      expect(res.body.stacks[1]).to.deep.include({ lastDeployment: null, drift: { drifted: null, lastDriftAt: null } });
    });

    it("serves the latest drift report, and 404 before any drift check", async () => {
      const none = await t.http().get("/v1/stacks/s2/drift");
      expect(none.status).to.equal(404);
      t.engine.setDrift("s1", DRIFTED);
      const job = (await t.http().post("/v1/stacks/s1/drift-checks").send({})).body;
      await t.done(job.id);
      const res = await t.http().get("/v1/stacks/s1/drift");
      expect(res.status).to.equal(200);
      expect(res.body).to.deep.include({ stack: "s1", jobId: job.id, drifted: true });
      expect(res.body.resources[0]).to.deep.include({ urn: DRIFTED[0].urn, kind: "update" });
    });

    it("masks secret outputs", async () => {
      t.engine.outputs = async () => ({ url: { value: "http://x", secret: false }, dbPassword: { value: "hunter2", secret: true } });
      const res = await t.http().get("/v1/stacks/s1/outputs");
      expect(res.status).to.equal(200);
      expect(res.body.outputs).to.deep.equal({ url: { value: "http://x", secret: false }, dbPassword: { value: "[secret]", secret: true } });
      expect(res.text).to.not.contain("hunter2");
    });

    it("unlocks a stack blocked by an interrupted mutation: mutations 409 naming the unlock before, run after", async () => {
      await t.server.store.setStackState("s1", { blockedReason: "up job job_x was interrupted", blockedJobId: "job_00000000000000000000000000" });
      const refused = await t.http().post("/v1/stacks/s1/deployments").send({ version: "1.0.0" });
      expect(refused.status).to.equal(409);
      expect(errorOf(refused).message).to.contain("POST /v1/stacks/s1/unlock");
      const preview = await t.http().post("/v1/stacks/s1/previews").send({});
      expect(preview.status).to.equal(202);
      // Unlock refuses while a job runs on the stack (409, "cancel it before unlocking"): the preview ends first.
      expect((await t.done(preview.body.id)).status).to.equal("succeeded");
      const unlocked = await t.http().post("/v1/stacks/s1/unlock").send({});
      expect(unlocked.status).to.equal(200);
      expect(unlocked.body).to.deep.include({ stack: "s1", wasBlocked: true, reason: "up job job_x was interrupted" });
      const deploy = await t.http().post("/v1/stacks/s1/deployments").send({ version: "1.0.0" });
      expect(deploy.status).to.equal(202);
      expect((await t.done(deploy.body.id)).status).to.equal("succeeded");
    });

    it("asks the engine to recover the stack, passing clearPendingCreates, and reports what it found", async () => {
      const asked: unknown[] = [];
      const engine = t.engine as unknown as { recover?: (env: unknown, o: unknown) => Promise<unknown> };
      engine.recover = async (_env, options) => {
        asked.push(options);
        return { engine: "pulumi", pendingOperations: [{ urn: "urn:pulumi:s1::p::aws:ecs/service:Service::web", type: "aws:ecs/service:Service", kind: "creating" }], lockCleared: true, notes: [] };
      };

      const unlocked = await t.http().post("/v1/stacks/s1/unlock").send({ clearPendingCreates: true });

      expect(unlocked.status).to.equal(200);
      expect(asked).to.deep.equal([{ clearPendingCreates: true }]);
      expect(unlocked.body.engine).to.deep.include({ kind: "pulumi", lockCleared: true, refreshed: null });
      expect(unlocked.body.engine.pendingOperations).to.have.length(1);
    });

    it("refuses an unlock body with unknown keys, naming them", async () => {
      const refused = await t.http().post("/v1/stacks/s1/unlock").send({ force: true });
      expect(refused.status).to.equal(400);
    });
  });

  describe("metrics", () => {
    beforeEach(async () => {
      t = await startTestServer();
    });

    it("exposes job counts, durations, queue depth, running jobs, drift and the last deployment time", async () => {
      const ok = await t.http().post("/v1/stacks/s1/deployments").send({ version: "1.0.0" });
      await t.done(ok.body.id);
      t.engine.failNext({ op: "preview", stack: "s2" });
      await t.done((await t.http().post("/v1/stacks/s2/previews").send({})).body.id);
      t.engine.setDrift("s1", DRIFTED);
      await t.done((await t.http().post("/v1/stacks/s1/drift-checks").send({})).body.id);
      await t.done((await t.http().post("/v1/stacks/s2/drift-checks").send({})).body.id);
      const res = await t.http().get("/metrics");
      expect(res.status).to.equal(200);
      expect(res.headers["content-type"]).to.match(/^text\/plain/);
      const text = res.text;
      expect(text).to.contain('deployer_jobs_total{operation="up",stack="s1",status="succeeded"} 1');
      expect(text).to.contain('deployer_jobs_total{operation="preview",stack="s2",status="failed"} 1');
      expect(text).to.match(/deployer_job_duration_seconds_count\{operation="up"\} 1/);
      expect(text).to.contain("deployer_queue_depth 0");
      expect(text).to.contain("deployer_running_jobs 0");
      expect(text).to.contain('deployer_stack_drifted{stack="s1"} 1');
      expect(text).to.contain('deployer_stack_drifted{stack="s2"} 0');
      expect(text).to.match(/deployer_last_successful_deployment_timestamp_seconds\{stack="s1"\} \d{10}/);
      expect(text).to.contain("process_cpu_seconds_total");
    });
  });

  describe("drift webhook", () => {
    it("POSTs a signed notification to the webhook when a drift check finds drift", async () => {
      const secret = "a-webhook-secret-of-some-length";
      const received: { body: string; signature?: string }[] = [];
      let arrived!: () => void;
      const gotOne = new Promise<void>((r) => (arrived = r));
      const receiver = createServer((req: IncomingMessage, res) => {
        let body = "";
        req.on("data", (c) => (body += c)).on("end", () => {
          received.push({ body, signature: req.headers["x-deployer-signature"] as string | undefined });
          res.end("ok");
          arrived();
        });
      });
      await new Promise<void>((r) => receiver.listen(0, "127.0.0.1", r));
      try {
        const url = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hook`;
        t = await startTestServer({ webhook: { url, secret, retryDelaysMs: [10] } });
        t.engine.setDrift("s1", DRIFTED);
        const job = (await t.http().post("/v1/stacks/s1/drift-checks").send({})).body;
        await t.done(job.id);
        await gotOne;
        expect(received).to.have.length(1);
        expect(verifyWebhookSignature(received[0].body, received[0].signature, secret)).to.equal(true);
        expect(JSON.parse(received[0].body)).to.deep.include({ event: "drift.detected", stack: "s1", jobId: job.id });
      } finally {
        receiver.close();
      }
    });

    it("enqueues scheduled drift checks from deploy.driftSchedule", async () => {
      t = await startTestServer({ driftSchedule: true, editEnv: (name, text) => (name === "s1" ? text.replace("timeoutMinutes: 10", 'timeoutMinutes: 10\n  driftSchedule: "*/5 * * * *"') : text) });
      const created = await t.server.scheduler!.tick(Date.now() + 10 * 60_000);
      expect(created.map((j) => [j.stack, j.operation, j.source])).to.deep.equal([["s1", "drift", "schedule"]]);
      await t.done(created[0].id);
    });
  });

  describe("shutdown", () => {
    it("turns readiness false at once and refuses new operations with 503 and Retry-After, reads still served", async () => {
      t = await startTestServer();
      t.server.beginShutdown();
      const ready = await t.http().get("/readyz");
      expect(ready.status).to.equal(503);
      expect(errorOf(ready).details.shuttingDown).to.equal(true);
      for (const [path, body] of [
        ["/v1/stacks/s1/deployments", { version: "1.0.0" }],
        ["/v1/stacks/s1/drift-checks", {}],
      ] as const) {
        const res = await t.http().post(path).send(body);
        expect(res.status, path).to.equal(503);
        expect(errorOf(res).code).to.equal("engine_unavailable");
        expect(Number(res.headers["retry-after"])).to.be.greaterThan(0);
      }
      expect((await t.jobCount())).to.equal(0);
      expect((await t.http().get("/v1/stacks")).status).to.equal(200);
    });

    it("interrupts a running job gracefully within the grace period and closes open event streams", async () => {
      t = await startTestServer();
      t.engine.hold();
      const job = (await t.http().post("/v1/stacks/s1/deployments").send({ version: "1.0.0" })).body;
      await t.engine.nextCall({ stack: "s1" });
      const { openSse } = await import("./support/sse");
      const stream = await openSse(`${t.url}/v1/jobs/${job.id}/events`, t.auth());
      const started = Date.now();
      const interrupted = await t.server.stop({ graceMs: 3_000 });
      expect(Date.now() - started).to.be.lessThan(3_000);
      expect(interrupted.map((j) => [j.id, j.status])).to.deep.equal([[job.id, "interrupted"]]);
      await stream.ended;
    });
  });
});
