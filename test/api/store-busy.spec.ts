/**
 * The service while another process holds the database's write lock (a CLI mid-transaction, a backup,
 * `sqlite3` with BEGIN IMMEDIATE): a write is refused at once as 503 store_busy with Retry-After,
 * changing nothing, instead of holding the event loop for the lock; reads go on (WAL); and once the
 * lock is gone the same request, with its Idempotency-Key, goes through once.
 */
import { expect } from "chai";
import Database from "better-sqlite3";
import { SERVICE_BUSY_TIMEOUT_MS } from "../../api/server";
import { storeFile, syncStoreOf } from "../../automation/store";
import { errorOf, startTestServer, type TestServer } from "./support/server";

describe("api: the database locked by another process", function () {
  this.timeout(30_000);
  let t: TestServer;
  let other: Database.Database;

  beforeEach(async () => {
    t = await startTestServer({ stacks: ["s1"] });
    other = new Database(storeFile(t.dataDir));
  });
  afterEach(async () => {
    if (other.inTransaction) other.exec("ROLLBACK");
    other.close();
    await t.close();
  });

  it("answers a mutation 503 store_busy with Retry-After, creating nothing; reads answer; after the lock the retry runs once", async () => {
    const before = await t.jobCount();
    other.exec("BEGIN IMMEDIATE");
    const refused = await t.http().post("/v1/stacks/s1/deployments").set("Idempotency-Key", "release-7").send({ version: "1.0.0" });
    expect(refused.status, refused.text).to.equal(503);
    expect(errorOf(refused).code).to.equal("store_busy");
    expect(errorOf(refused).message).to.match(/database is busy.*nothing was changed/);
    expect(refused.headers["retry-after"]).to.equal("1");
    // Reads do not wait for a writer.
    expect((await t.http().get("/v1/stacks/s1")).status).to.equal(200);
    expect((await t.anonymous().get("/healthz")).status).to.equal(200);
    other.exec("COMMIT");
    expect((await t.jobCount()), "nothing was created").to.equal(before);

    const accepted = await t.http().post("/v1/stacks/s1/deployments").set("Idempotency-Key", "release-7").send({ version: "1.0.0" });
    expect(accepted.status, accepted.text).to.equal(202);
    const again = await t.http().post("/v1/stacks/s1/deployments").set("Idempotency-Key", "release-7").send({ version: "1.0.0" });
    expect(again.body.id).to.equal(accepted.body.id);
    expect((await t.done(accepted.body.id)).status).to.equal("succeeded");
  });

  it("keeps the audit records the lock refused and writes them, in order, once it is gone", async () => {
    other.exec("BEGIN IMMEDIATE");
    const refused = await t.http().post("/v1/stacks/s1/deployments").send({ version: "1.0.0" });
    expect(refused.status).to.equal(503);
    other.exec("COMMIT");
    // Written by the trail's retry (backing off from 50 ms): no event announces it, so look until it is there.
    const deadline = Date.now() + 10_000;
    let records: { status?: number; requestId?: string; details?: { requestedAt?: string } }[] = [];
    while (!records.some((r) => r.requestId === errorOf(refused).requestId) && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 25));
      records = (await t.http().get("/v1/audit").query({ stack: "s1" })).body.entries;
    }
    const record = records.find((r) => r.requestId === errorOf(refused).requestId);
    expect(record, "the refused request's audit record").to.not.equal(undefined);
    expect(record?.status).to.equal(503);
    expect(record?.details?.requestedAt).to.be.a("string");
  });

  it("opens its store with the short busy timeout (the CLI keeps the default 5 s)", () => {
    // The service's own connection: what a write waits for another process's lock, holding the loop.
    const db = (syncStoreOf(t.server.store) as unknown as { db: Database.Database }).db;
    expect(db.pragma("busy_timeout", { simple: true })).to.equal(SERVICE_BUSY_TIMEOUT_MS);
  });
});
