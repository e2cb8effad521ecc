/**
 * The audit trail: every mutation and every denied request recorded once by the router (who, what,
 * stack, job, request id, address, result, time), also as a log line; GET /v1/audit for admins with
 * time and stack filters and a cursor; append-only in the store; retention.
 */
import { expect } from "chai";
import Database from "better-sqlite3";
import { mkdtempSync, rmSync } from "fs";
import { tmpdir } from "os";
import * as path from "path";
import { createLogger } from "../../api/logging";
import { openStore, SqliteStore, storeFile, type AuditEntry } from "../../automation/store";
import { errorOf, startTestServer, type TestServer } from "./support/server";
import { osUser } from "../../automation/jobs/lease";
import { cli } from "../automation/support/cli";
import { TestEngine, testDeps, testEnvDir } from "../automation/support/test-engine";

const DAY = 24 * 60 * 60 * 1000;

describe("api: audit trail", function () {
  this.timeout(30_000);
  let t: TestServer;
  let lines: string[];

  beforeEach(async () => {
    lines = [];
    t = await startTestServer({
      logger: createLogger({ level: "info", destination: { write: (s: string) => void lines.push(s) } }),
      principals: [
        { name: "dev-viewer", roles: { s1: ["viewer"] } },
        { name: "s1-admin", roles: { s1: ["admin"] } },
      ],
    });
  });

  afterEach(async () => {
    await t?.close();
  });

  /** Every record, oldest first. */
  const records = async (): Promise<AuditEntry[]> => (await t.server.store.listAudit({ limit: 500 })).reverse();

  it("records an allowed mutation: actor, route, stack, the job it created, request id, address, status and the validated body", async () => {
    const res = await t.http().post("/v1/stacks/s1/deployments").set("X-Request-Id", "req-audit-1").send({ version: "1.2.3", message: "ship it" });
    expect(res.status).to.equal(202);
    const [entry] = await records();
    expect(entry).to.deep.include({
      actor: "admin",
      action: "POST /v1/stacks/:stack/deployments",
      stack: "s1",
      jobId: res.body.id,
      requestId: "req-audit-1",
      result: "allowed",
      status: 202,
    });
    expect(entry.address).to.match(/127\.0\.0\.1/);
    expect(entry.time).to.match(/^\d{4}-\d{2}-\d{2}T/);
    expect(entry.details).to.deep.equal({ params: { stack: "s1" }, body: { version: "1.2.3", message: "ship it" } });
    await t.done(res.body.id);
  });

  it("records a failed mutation with its status and error, without the refused body", async () => {
    const res = await t.http().post("/v1/stacks/s1/deployments").send({ version: "latest", message: "x" });
    expect(res.status).to.equal(400);
    const [entry] = await records();
    expect(entry).to.deep.include({ actor: "admin", action: "POST /v1/stacks/:stack/deployments", stack: "s1", result: "failed", status: 400 });
    expect((entry.details as any).error).to.equal("invalid_request");
    expect((entry.details as any).body).to.equal(undefined);
  });

  it("records denials: 401 without an actor, 403, the 404 of a stack the caller may not read, 429; not ordinary reads", async () => {
    await t.http().get("/v1/stacks");
    await t.http().get("/v1/stacks/nope");
    await t.anonymous().get("/v1/stacks/s1").set("Authorization", "Bearer dpl_guess");
    await t.as("dev-viewer").post("/v1/stacks/s1/drift-checks").send({});
    await t.as("dev-viewer").get("/v1/stacks/s2");
    await t.as("dev-viewer").get("/v1/audit");
    await t.server.ctx.audit.flush(); // the refused anonymous request's window
    const got = (await records()).map((e) => [e.actor ?? null, e.action, e.stack ?? null, e.result, e.status]);
    expect(got).to.deep.equal([
      ["dev-viewer", "POST /v1/stacks/:stack/drift-checks", "s1", "denied", 403],
      ["dev-viewer", "GET /v1/stacks/:stack", "s2", "denied", 404],
      ["dev-viewer", "GET /v1/audit", null, "denied", 403],
      // written when its address's window closes, as one record with a count
      [null, "GET /v1/stacks/:stack", "s1", "denied", 401],
    ]);
    expect((await records()).at(-1)!.details).to.deep.include({ aggregated: true, count: 1 });
    expect(JSON.stringify((await records()))).to.not.contain("dpl_guess");
  });

  it("records a rate-limited request as denied 429", async () => {
    await t.close();
    t = await startTestServer({ rateLimits: { mutationsPerWindow: 1 } });
    await t.http().post("/v1/stacks/s1/refreshes").send({});
    const limited = await t.http().post("/v1/stacks/s1/refreshes").send({});
    expect(limited.status).to.equal(429);
    expect((await records()).map((e) => [e.result, e.status])).to.deep.equal([
      ["allowed", 202],
      ["denied", 429],
    ]);
  });

  it("records a cancel on the job's stack, and a forced cancel refused to a non-admin", async () => {
    t.engine.hold();
    const job = (await t.http().post("/v1/stacks/s1/deployments").send({ version: "1.0.0" })).body;
    await t.engine.nextCall({ stack: "s1" });
    const canceled = await t.http().post(`/v1/jobs/${job.id}/cancel`).send({});
    expect(canceled.status).to.equal(202);
    await t.done(job.id);
    const cancel = (await records()).find((e) => e.action === "POST /v1/jobs/:id/cancel")!;
    expect(cancel).to.deep.include({ actor: "admin", stack: "s1", jobId: job.id, result: "allowed", status: 202 });
  });

  it("writes each record to the structured log as well", async () => {
    const res = await t.http().post("/v1/stacks/s1/refreshes").send({});
    const logged = lines.map((l) => JSON.parse(l)).filter((l) => l.msg === "audit");
    expect(logged).to.have.length(1);
    expect(logged[0].audit).to.deep.include({ actor: "admin", action: "POST /v1/stacks/:stack/refreshes", jobId: res.body.id, result: "allowed" });
    await t.done(res.body.id);
  });

  describe("GET /v1/audit", () => {
    it("pages newest first with a cursor, and filters by stack and time", async () => {
      for (const stack of ["s1", "s2", "s1"]) await t.http().post(`/v1/stacks/${stack}/drift-checks`).send({ bad: 1 });
      const all = (await t.http().get("/v1/audit")).body;
      expect(all.entries).to.have.length(3);
      expect(all.entries.map((e: { stack: string }) => e.stack)).to.deep.equal(["s1", "s2", "s1"]);
      expect(all.nextCursor).to.equal(null);

      const first = (await t.http().get("/v1/audit?limit=2")).body;
      expect(first.entries).to.have.length(2);
      const second = (await t.http().get(`/v1/audit?limit=2&before=${first.nextCursor}`)).body;
      expect([...first.entries, ...second.entries].map((e: { id: string }) => e.id)).to.deep.equal(all.entries.map((e: { id: string }) => e.id));

      expect((await t.http().get("/v1/audit?stack=s2")).body.entries.map((e: { stack: string }) => e.stack)).to.deep.equal(["s2"]);
      const newest = all.entries[0].time;
      expect((await t.http().get(`/v1/audit?from=${encodeURIComponent(newest)}`)).body.entries.map((e: { id: string }) => e.id)).to.include(all.entries[0].id);
      expect((await t.http().get(`/v1/audit?to=2000-01-01T00:00:00Z`)).body.entries).to.deep.equal([]);
      expect((await t.http().get(`/v1/audit?from=2000-01-01`)).body.entries.length).to.be.at.least(3);
    });

    it("shows an admin of some stacks only their records", async () => {
      await t.http().post("/v1/stacks/s1/refreshes").send({ bad: 1 });
      await t.http().post("/v1/stacks/s2/refreshes").send({ bad: 1 });
      const seen = (await t.as("s1-admin").get("/v1/audit")).body.entries.map((e: { stack: string | null }) => e.stack);
      expect(seen).to.deep.equal(["s1"]);
      expect((await t.as("s1-admin").get("/v1/audit?stack=s2")).body.entries).to.deep.equal([]);
    });

    it("refuses bad filters with 400 naming the field", async () => {
      for (const [query, field] of [
        ["from=yesterday", "from"],
        ["to=2024-13-45T00:00:00Z", "to"],
        ["limit=0", "limit"],
        ["before=job_00000000000000000000000000", "before"],
        ["stack=../x", "stack"],
        ["from=2024-02-01&to=2024-01-01", "to"],
        ["actor=admin", "actor"],
      ]) {
        const res = await t.http().get(`/v1/audit?${query}`);
        expect(res.status, query).to.equal(400);
        expect(errorOf(res).details.field, query).to.equal(field);
      }
    });
  });
});

describe("cli: audit trail", () => {
  it("records each CLI run with the OS user as the actor", async function () {
    this.timeout(30_000);
    const dir = mkdtempSync(path.join(tmpdir(), "deployer-cli-audit-"));
    const envDir = testEnvDir(["s1"]);
    try {
      const engine = new TestEngine();
      const run = await cli(["drift", "--stack", "s1", "--env-dir", envDir], { env: { DEPLOYER_DATA_DIR: dir }, deps: (store) => testDeps(store, engine) });
      expect(run.code, run.stderr).to.equal(0);
      const store = openStore(dir);
      try {
        const [entry] = await store.listAudit();
        const [job] = await store.listJobs();
        expect(entry).to.deep.include({ actor: osUser(), action: "cli drift", stack: "s1", jobId: job.id, result: "allowed" });
        expect(entry.details).to.deep.include({ source: "cli", status: "succeeded" });
      } finally {
        await store.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
      rmSync(envDir, { recursive: true, force: true });
    }
  });
});

describe("store: audit table", () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), "deployer-audit-"));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it("offers no way to change or delete a record but retention, and refuses both in SQL too", async () => {
    const store = openStore(dir);
    const entry = await store.appendAudit({ actor: "a", action: "POST /x", result: "allowed", status: 200 });
    const names = Object.keys(store).filter((n) => /audit/i.test(n));
    expect(names.sort()).to.deep.equal(["appendAudit", "listAudit", "pruneAudit"]);
    const sqlite = Object.getOwnPropertyNames(SqliteStore.prototype).filter((n) => /audit/i.test(n));
    expect(sqlite.sort()).to.deep.equal(["appendAudit", "listAudit", "pruneAudit"]);
    await store.close();
    const db = new Database(storeFile(dir));
    try {
      expect(() => db.prepare("UPDATE audit SET actor = 'b' WHERE id = ?").run(entry.id)).to.throw(/append-only/);
      expect(() => db.prepare("DELETE FROM audit WHERE id = ?").run(entry.id)).to.throw(/younger than a day/);
      expect(db.prepare("SELECT actor FROM audit WHERE id = ?").get(entry.id)).to.deep.equal({ actor: "a" });
    } finally {
      db.close();
    }
  });

  it("deletes records older than the retention, and only those", async () => {
    const old = openStore(dir, { now: () => Date.now() - 100 * DAY });
    await old.appendAudit({ action: "POST /old", result: "denied", status: 401 });
    await old.close();
    const store = openStore(dir);
    try {
      await store.appendAudit({ action: "POST /new", result: "allowed", status: 202 });
      const refused = await store.pruneAudit(DAY / 2).then(() => undefined, (err: unknown) => err);
      expect(refused).to.be.instanceOf(Error).with.property("message").that.matches(/at least a day/);
      expect(await store.pruneAudit(90 * DAY)).to.equal(1);
      expect((await store.listAudit()).map((e) => e.action)).to.deep.equal(["POST /new"]);
    } finally {
      await store.close();
    }
  });

  it("is pruned when the service starts (DEPLOYER_AUDIT_RETENTION_DAYS)", async () => {
    const old = openStore(dir, { now: () => Date.now() - 40 * DAY });
    await old.appendAudit({ action: "POST /old", result: "allowed", status: 202 });
    await old.close();
    const t = await startTestServer({ dataDir: dir, auditRetentionDays: 30 });
    try {
      expect((await t.server.store.listAudit()).map((e) => e.action)).to.deep.equal([]);
    } finally {
      await t.close();
    }
  });
});
