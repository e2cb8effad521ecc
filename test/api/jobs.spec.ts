/** Jobs over HTTP against the real server (port 0) with a controllable engine: lifecycle, ordering, cap, cancel, timeouts, idempotency. */
import { expect } from "chai";
import type { Job } from "../../automation/store";
import { errorOf, startTestServer, type TestServer } from "./support/server";

describe("api: jobs", function () {
  this.timeout(30_000);
  let t: TestServer;

  afterEach(async () => {
    await t?.close();
  });

  describe("lifecycle", () => {
    beforeEach(async () => {
      t = await startTestServer();
    });

    it("refuses a deployment message or rollback reason with control characters, naming the field, and queues nothing", async () => {
      for (const [path, body, field] of [
        ["deployments", { version: "1.2.3", message: "line\u0000" }, "message"],
        ["rollbacks", { reason: "bad\u001b[2J" }, "reason"],
      ] as const) {
        const res = await t.http().post(`/v1/stacks/s1/${path}`).send(body);
        expect(res.status, path).to.equal(400);
        expect(res.body.error.details).to.include({ field });
        expect(res.body.error.message).to.match(/control characters/);
      }
      const ok = await t.http().post("/v1/stacks/s1/deployments").send({ version: "1.2.3", message: "two\nlines\tand a tab" });
      expect(ok.status).to.equal(202);
      expect(await t.jobCount()).to.equal(1);
      await t.done(ok.body.id);
    });

    it("answers a deployment with 202, a Location and the queued job, then runs it to succeeded", async () => {
      const res = await t.http().post("/v1/stacks/s1/deployments").send({ version: "1.2.3", message: "first" });
      expect(res.status).to.equal(202);
      const job = res.body;
      expect(res.headers.location).to.equal(`/v1/jobs/${job.id}`);
      expect(job).to.include({ stack: "s1", operation: "up", status: "queued", version: "1.2.3", requestedBy: "admin", source: "api", engine: "offline", message: "first" });
      expect(job.id).to.match(/^job_[0-9a-z]{26}$/);
      expect(job).to.have.property("queuePosition", 1);
      expect(job).to.have.deep.property("approvals", []);
      expect(job).to.not.have.any.keys("requestHash", "idempotencyKey", "params", "config");

      await t.done(job.id);
      const got = await t.http().get(res.headers.location);
      expect(got.status).to.equal(200);
      expect(got.body).to.include({ id: job.id, status: "succeeded", queuePosition: null });
      expect(got.body.startedAt).to.be.a("string");
      expect(got.body.finishedAt).to.be.a("string");
      expect(got.body.changes).to.deep.equal({ create: 0, update: 0, delete: 0, replace: 0, same: 1 });

      const deployments = await t.http().get("/v1/stacks/s1/deployments");
      expect(deployments.body.deployments.map((d: Job) => d.id)).to.deep.equal([job.id]);
      const stack = await t.http().get("/v1/stacks/s1");
      expect(stack.body.lastDeployment).to.include({ id: job.id, version: "1.2.3" });
    });

    it("gives a finished job an ETag and answers If-None-Match with it 304 and no body; a running job has none", async () => {
      t.engine.hold();
      const res = await t.http().post("/v1/stacks/s1/deployments").send({ version: "1.2.3" });
      await t.engine.nextCall({ stack: "s1" });
      const running = await t.http().get(`/v1/jobs/${res.body.id}`);
      expect(running.headers).to.not.have.property("etag");
      t.engine.unhold();
      await t.done(res.body.id);

      const first = await t.http().get(`/v1/jobs/${res.body.id}`);
      expect(first.status).to.equal(200);
      expect(first.body.status).to.equal("succeeded");
      const etag = first.headers.etag;
      expect(etag).to.match(/^"[A-Za-z0-9_-]+"$/);
      const again = await t.http().get(`/v1/jobs/${res.body.id}`).set("If-None-Match", etag);
      expect(again.status).to.equal(304);
      expect(again.text ?? "").to.equal("");
      expect(again.headers.etag).to.equal(etag);
      expect((await t.http().get(`/v1/jobs/${res.body.id}`).set("If-None-Match", `"other", W/${etag}`)).status).to.equal(304);
      const stale = await t.http().get(`/v1/jobs/${res.body.id}`).set("If-None-Match", '"other"');
      expect(stale.status).to.equal(200);
      expect(stale.body).to.deep.equal(first.body);
    });

    it("serves a finished job as it is now: a rollback that marks it rolled back gives a new body and ETag", async () => {
      await t.done((await t.http().post("/v1/stacks/s1/deployments").send({ version: "1.0.0" })).body.id);
      const second = (await t.http().post("/v1/stacks/s1/deployments").send({ version: "1.1.0" })).body.id;
      await t.done(second);
      const before = await t.http().get(`/v1/jobs/${second}`);
      expect(before.body).to.not.have.property("rolledBackBy");

      const rollback = (await t.http().post("/v1/stacks/s1/rollbacks").send({ reason: "bad release" })).body.id;
      await t.done(rollback);

      const after = await t.http().get(`/v1/jobs/${second}`).set("If-None-Match", before.headers.etag);
      expect(after.status).to.equal(200);
      expect(after.body.rolledBackBy).to.equal(rollback);
      expect(after.headers.etag).to.not.equal(before.headers.etag);
    });

    it("runs previews, drift checks, refreshes and destroys as jobs", async () => {
      const posts: [string, object, string][] = [
        ["previews", {}, "preview"],
        ["drift-checks", {}, "drift"],
        ["refreshes", {}, "refresh"],
        ["destroys", { confirm: "s1" }, "destroy"],
      ];
      for (const [route, body, operation] of posts) {
        const res = await t.http().post(`/v1/stacks/s1/${route}`).send(body);
        expect(res.status, route).to.equal(202);
        expect(res.body.operation).to.equal(operation);
        const done = await t.done(res.body.id);
        expect(done.status, `${route}: ${done.error?.message}`).to.equal("succeeded");
      }
    });

    it("queues a rollback to the previous deployment, linked to the one it replaces", async () => {
      const first = await t.http().post("/v1/stacks/s1/deployments").send({ version: "1.0.0" });
      await t.done(first.body.id);
      const second = await t.http().post("/v1/stacks/s1/deployments").send({ version: "2.0.0" });
      await t.done(second.body.id);
      const res = await t.http().post("/v1/stacks/s1/rollbacks").send({ reason: "bad release" });
      expect(res.status).to.equal(202);
      expect(res.body).to.include({ operation: "rollback", reason: "bad release" });
      await t.done(res.body.id);
      // The test engine has no task definition for the fast path; the real offline engine's rollback runs in offline.spec.ts.
      const job = (await t.http().get(`/v1/jobs/${res.body.id}`)).body;
      expect(job).to.include({ version: "1.0.0", rollbackOf: second.body.id, rollbackTo: first.body.id });
    });

    it("defaults a preview's version to the environment's app.version", async () => {
      const res = await t.http().post("/v1/stacks/s1/previews").send({});
      expect(res.status).to.equal(202);
      expect(res.body.version).to.equal("1.0.0");
    });

    it("reports the queue position of waiting jobs", async () => {
      t.engine.hold();
      const ids: string[] = [];
      for (let i = 0; i < 3; i++) ids.push((await t.http().post("/v1/stacks/s1/previews").send({})).body.id);
      await t.engine.nextCall({ stack: "s1" });
      expect((await t.http().get(`/v1/jobs/${ids[0]}`)).body).to.include({ status: "running", queuePosition: null });
      expect((await t.http().get(`/v1/jobs/${ids[1]}`)).body).to.include({ status: "queued", queuePosition: 1 });
      expect((await t.http().get(`/v1/jobs/${ids[2]}`)).body).to.include({ status: "queued", queuePosition: 2 });
      const stack = await t.http().get("/v1/stacks/s1");
      expect(stack.body).to.include({ runningJobId: ids[0], queued: 2 });
      t.engine.unhold();
      await Promise.all(ids.map((id) => t.done(id)));
    });

    it("lists jobs newest first with filters and a cursor", async () => {
      const ids: string[] = [];
      for (const stack of ["s1", "s2", "s1"]) {
        const res = await t.http().post(`/v1/stacks/${stack}/drift-checks`).send({});
        ids.push(res.body.id);
        await t.done(res.body.id);
      }
      const page1 = await t.http().get("/v1/jobs?limit=2");
      expect(page1.body.jobs.map((j: Job) => j.id)).to.deep.equal([ids[2], ids[1]]);
      expect(page1.body.nextCursor).to.equal(ids[1]);
      const page2 = await t.http().get(`/v1/jobs?limit=2&before=${page1.body.nextCursor}`);
      expect(page2.body.jobs.map((j: Job) => j.id)).to.deep.equal([ids[0]]);
      expect(page2.body.nextCursor).to.equal(null);
      const s1 = await t.http().get("/v1/jobs?stack=s1&status=succeeded,failed&operation=drift");
      expect(s1.body.jobs.map((j: Job) => j.id)).to.deep.equal([ids[2], ids[0]]);
      const none = await t.http().get("/v1/jobs?status=queued");
      expect(none.body).to.deep.equal({ jobs: [], nextCursor: null });
    });

    it("serves a job's log as plain text, one line per event", async () => {
      const res = await t.http().post("/v1/stacks/s1/deployments").send({ version: "1.0.0" });
      await t.done(res.body.id);
      const log = await t.http().get(`/v1/jobs/${res.body.id}/log`);
      expect(log.status).to.equal(200);
      expect(log.headers["content-type"]).to.match(/^text\/plain/);
      const lines = log.text.trim().split("\n");
      expect(lines[0]).to.match(/^\d{4}-\d\d-\d\dT\S+ » /);
      expect(log.text).to.contain("up on s1 started (offline engine)");
      expect(lines[lines.length - 1]).to.match(/ up succeeded$/);
    });
  });

  describe("ordering and the concurrency cap", () => {
    it("runs 20 deployments posted at once to one stack one at a time, in order, all succeeded", async () => {
      t = await startTestServer({ maxConcurrent: 4 });
      t.engine.delayMs = 2;
      const responses = await Promise.all(Array.from({ length: 20 }, (_, i) => t.http().post("/v1/stacks/s1/deployments").send({ version: `1.0.${i}` })));
      expect(responses.map((r) => r.status)).to.deep.equal(Array(20).fill(202));
      const jobs = await Promise.all(responses.map((r) => t.done(r.body.id)));
      expect(jobs.map((j) => j.status)).to.deep.equal(Array(20).fill("succeeded"));
      // Creation order (ids sort by it) is run order, and each starts after the previous one finished.
      const byId = [...jobs].sort((a, b) => (a.id < b.id ? -1 : 1));
      for (let i = 1; i < byId.length; i++) expect(byId[i].startedAt! >= byId[i - 1].finishedAt!, `job ${i}`).to.equal(true);
      expect(t.engine.maxActivePerStack).to.equal(1);
      const deployments = await t.http().get("/v1/stacks/s1/deployments");
      expect(deployments.body.deployments).to.have.length(20);
    });

    it("keeps 50 concurrent requests across 5 stacks under the cap, one per stack, FIFO per stack", async () => {
      const stacks = ["a1", "a2", "a3", "a4", "a5"];
      t = await startTestServer({ stacks, maxConcurrent: 3 });
      t.engine.delayMs = 3;
      const requests = Array.from({ length: 50 }, (_, i) => {
        const stack = stacks[i % 5];
        return i % 2 === 0 ? t.http().post(`/v1/stacks/${stack}/deployments`).send({ version: `2.0.${i}` }) : t.http().post(`/v1/stacks/${stack}/drift-checks`).send({});
      });
      const responses = await Promise.all(requests);
      expect(responses.every((r) => r.status === 202)).to.equal(true);
      const jobs = await Promise.all(responses.map((r) => t.done(r.body.id)));
      expect(jobs.every((j) => j.status === "succeeded")).to.equal(true);
      expect(t.engine.maxActive).to.be.at.most(3);
      expect(t.engine.maxActivePerStack).to.equal(1);
      for (const stack of stacks) {
        const mine = jobs.filter((j) => j.stack === stack).sort((a, b) => (a.id < b.id ? -1 : 1));
        for (let i = 1; i < mine.length; i++) expect(mine[i].startedAt! >= mine[i - 1].finishedAt!, `${stack} job ${i}`).to.equal(true);
      }
    });
  });

  describe("cancel", () => {
    beforeEach(async () => {
      t = await startTestServer();
    });

    it("cancels a queued job at once: 200, canceled, and it never reaches the engine", async () => {
      t.engine.hold();
      const running = (await t.http().post("/v1/stacks/s1/deployments").send({ version: "1.0.0" })).body;
      const queued = (await t.http().post("/v1/stacks/s1/deployments").send({ version: "1.0.1" })).body;
      await t.engine.nextCall({ stack: "s1" });
      const res = await t.http().post(`/v1/jobs/${queued.id}/cancel`).send({});
      expect(res.status).to.equal(200);
      expect(res.body).to.include({ id: queued.id, status: "canceled" });
      t.engine.unhold();
      expect((await t.done(running.id)).status).to.equal("succeeded");
      expect(t.engine.calls.filter((c) => c.op === "up")).to.have.length(1);
      expect((await t.http().get(`/v1/jobs/${queued.id}`)).body.status).to.equal("canceled");
    });

    it("interrupts a running job gracefully: 202, then canceled when the engine stops", async () => {
      t.engine.hold();
      const job = (await t.http().post("/v1/stacks/s1/deployments").send({ version: "1.0.0" })).body;
      await t.engine.nextCall({ stack: "s1" });
      const res = await t.http().post(`/v1/jobs/${job.id}/cancel`).send({});
      expect(res.status).to.equal(202);
      expect(res.headers.location).to.equal(`/v1/jobs/${job.id}`);
      const done = await t.done(job.id);
      expect(done.status).to.equal("canceled");
      expect(t.engine.cancels).to.deep.equal(["s1"]);
    });

    it("refuses force before a graceful cancel, then kills an engine that ignores the interrupt", async () => {
      t.engine.hold();
      t.engine.ignoreAbort = true;
      const job = (await t.http().post("/v1/stacks/s1/deployments").send({ version: "1.0.0" })).body;
      await t.engine.nextCall({ stack: "s1" });
      const early = await t.http().post(`/v1/jobs/${job.id}/cancel`).send({ force: true });
      expect(early.status).to.equal(409);
      expect(errorOf(early).code).to.equal("conflict");
      expect((await t.http().post(`/v1/jobs/${job.id}/cancel`).send({})).status).to.equal(202);
      const forced = await t.http().post(`/v1/jobs/${job.id}/cancel`).send({ force: true });
      expect(forced.status).to.be.oneOf([200, 202]);
      expect((await t.done(job.id)).status).to.equal("canceled");
      expect(t.engine.kills).to.deep.equal(["s1"]);
    });

    it("answers 409 for a finished job and 404 for an unknown one", async () => {
      const job = (await t.http().post("/v1/stacks/s1/drift-checks").send({})).body;
      await t.done(job.id);
      const finished = await t.http().post(`/v1/jobs/${job.id}/cancel`).send({});
      expect(finished.status).to.equal(409);
      expect(errorOf(finished).code).to.equal("conflict");
      const unknown = await t.http().post("/v1/jobs/job_00000000000000000000000000/cancel").send({});
      expect(unknown.status).to.equal(404);
    });
  });

  describe("timeouts", () => {
    it("ends a job that outlives its timeout as timed_out", async () => {
      t = await startTestServer();
      t.timeoutMs = 150;
      t.engine.hold();
      const job = (await t.http().post("/v1/stacks/s1/deployments").send({ version: "1.0.0" })).body;
      const done = await t.done(job.id);
      expect(done.status).to.equal("timed_out");
      const got = await t.http().get(`/v1/jobs/${job.id}`);
      expect(got.body.error.code).to.equal("timed_out");
      expect(got.body.error.message).to.match(/exceeded its timeout/);
    });
  });

  describe("queue caps", () => {
    afterEach(async () => {
      t.engine.unhold();
    });

    it("refuses a job beyond the cap per stack with 429 naming the cap, queuing nothing; other stacks go on", async () => {
      t = await startTestServer({ maxQueuedPerStack: 2 });
      t.engine.hold();
      const first = await t.http().post("/v1/stacks/s1/drift-checks").send({});
      await t.engine.nextCall({ stack: "s1" });
      for (let i = 0; i < 2; i++) expect((await t.http().post("/v1/stacks/s1/drift-checks").send({})).status).to.equal(202);
      const before = await t.jobCount();
      const refused = await t.http().post("/v1/stacks/s1/drift-checks").send({});
      expect(refused.status).to.equal(429);
      expect(errorOf(refused).code).to.equal("rate_limited");
      expect(errorOf(refused).message).to.include("cap per stack (2)");
      expect(refused.headers["retry-after"]).to.equal("30");
      expect((await t.jobCount())).to.equal(before);
      expect((await t.http().post("/v1/stacks/s2/drift-checks").send({})).status).to.equal(202);
      expect(first.status).to.equal(202);
    });

    it("refuses a job beyond the cap per principal over all stacks with 429", async () => {
      t = await startTestServer({ maxQueuedPerPrincipal: 2, maxConcurrent: 1 });
      t.engine.hold();
      await t.http().post("/v1/stacks/s1/drift-checks").send({});
      await t.engine.nextCall({ stack: "s1" }); // running: the one slot is taken
      expect((await t.http().post("/v1/stacks/s1/drift-checks").send({})).status).to.equal(202);
      expect((await t.http().post("/v1/stacks/s2/refreshes").send({})).status).to.equal(202);
      const refused = await t.http().post("/v1/stacks/s2/drift-checks").send({});
      expect(refused.status).to.equal(429);
      expect(errorOf(refused).message).to.include("admin has 2 jobs queued, the cap per principal (2)");
    });
  });

  describe("idempotency", () => {
    beforeEach(async () => {
      t = await startTestServer();
    });

    it("returns the same job for the same key and body", async () => {
      const first = await t.http().post("/v1/stacks/s1/deployments").set("Idempotency-Key", "deploy-42").send({ version: "4.2.0" });
      const again = await t.http().post("/v1/stacks/s1/deployments").set("Idempotency-Key", "deploy-42").send({ version: "4.2.0" });
      expect(first.status).to.equal(202);
      expect(again.status).to.equal(202);
      expect(again.body.id).to.equal(first.body.id);
      expect(again.headers["idempotent-replayed"]).to.equal("true");
      expect(again.headers.location).to.equal(first.headers.location);
      expect((await t.jobCount())).to.equal(1);
    });

    it("treats a reordered body as the same request", async () => {
      const first = await t.http().post("/v1/stacks/s1/deployments").set("Idempotency-Key", "k-order").send({ version: "1.0.0", message: "m" });
      const again = await t.http().post("/v1/stacks/s1/deployments").set("Idempotency-Key", "k-order").send({ message: "m", version: "1.0.0" });
      expect(again.body.id).to.equal(first.body.id);
    });

    it("answers 409 when the key is reused on the stack with another body or another operation", async () => {
      const first = await t.http().post("/v1/stacks/s1/deployments").set("Idempotency-Key", "k1").send({ version: "1.0.0" });
      expect(first.status).to.equal(202);
      for (const [path, body] of [
        ["/v1/stacks/s1/deployments", { version: "1.0.1" }],
        ["/v1/stacks/s1/previews", { version: "1.0.0" }],
      ] as const) {
        const res = await t.http().post(path).set("Idempotency-Key", "k1").send(body);
        expect(res.status, path).to.equal(409);
        expect(errorOf(res).code).to.equal("conflict");
      }
      expect((await t.jobCount())).to.equal(1);
    });

    it("refuses a key that is too long or not printable", async () => {
      const res = await t.http().post("/v1/stacks/s1/deployments").set("Idempotency-Key", "x".repeat(201)).send({ version: "1.0.0" });
      expect(res.status).to.equal(400);
      expect(errorOf(res).details.field).to.equal("Idempotency-Key");
      expect((await t.jobCount())).to.equal(0);
    });
  });
});
