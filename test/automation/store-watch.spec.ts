/**
 * `Store.watch` on PostgreSQL (LISTEN/NOTIFY): two stores on one database stand for two replicas; a
 * change committed through one is seen by the other's watcher, in commit order, and only once it
 * commits. Also: unsubscribing, a listener that throws, the LISTEN connection's life (opened on the
 * first watch, closed on the last unsubscribe) and its reconnection after the server drops it.
 */
import { expect } from "chai";
import { Client } from "pg";
import { openPostgresStore, type PostgresStore, type StoreChange } from "../../automation/store";
import { LISTEN_APPLICATION_NAME, notifyChange } from "../../automation/store/postgres/changes";
import { Db } from "../../automation/store/postgres/db";
import { createTestDatabase, requirePostgresOrSkip, type TestDatabase } from "../support/postgres";

const JOB = { stack: "dev", operation: "up", requestedBy: "alice", source: "api", engine: "offline" } as const;

/** A watcher that records what it is told, and waits for what it has not been told yet. */
async function record(store: PostgresStore) {
  const seen: StoreChange[] = [];
  const waiters: { match: (c: StoreChange) => boolean; resolve: (c: StoreChange) => void }[] = [];
  const unsubscribe = await store.watch((change) => {
    seen.push(change);
    for (let i = waiters.length - 1; i >= 0; i--) if (waiters[i].match(change)) waiters.splice(i, 1)[0].resolve(change);
  });
  return {
    seen,
    unsubscribe,
    next(match: (c: StoreChange) => boolean, timeoutMs = 5_000): Promise<StoreChange> {
      const already = seen.find(match);
      if (already) return Promise.resolve(already);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no matching change within ${timeoutMs} ms; seen ${JSON.stringify(seen)}`)), timeoutMs);
        waiters.push({ match, resolve: (c) => (clearTimeout(timer), resolve(c)) });
      });
    },
  };
}

const isLease = (stack: string) => (c: StoreChange) => c.kind === "lease" && c.stack === stack;

describe("Store.watch (PostgreSQL)", function () {
  let db: TestDatabase;
  let admin: Client;
  const opened: PostgresStore[] = [];
  const errors: { err: unknown; what: string }[] = [];

  async function open(): Promise<PostgresStore> {
    const store = await openPostgresStore(db.url, {
      watch: { onError: (err, what) => errors.push({ err, what }), reconnectMs: { initial: 20, max: 200 } },
    });
    opened.push(store);
    return store;
  }

  /** Pids of the database's LISTEN connections that have run their LISTEN. */
  async function listenPids(): Promise<number[]> {
    const { rows } = await admin.query<{ pid: number }>(
      "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND application_name = $1 AND query ILIKE 'LISTEN%' AND state = 'idle'",
      [LISTEN_APPLICATION_NAME],
    );
    return rows.map((r) => r.pid);
  }

  async function eventually<T>(fn: () => Promise<T | undefined>, what: string, timeoutMs = 5_000): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const v = await fn();
      if (v !== undefined) return v;
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  before(function () {
    requirePostgresOrSkip(this);
  });

  beforeEach(async function () {
    db = await createTestDatabase();
    admin = new Client({ connectionString: db.url });
    await admin.connect();
    errors.length = 0;
  });

  afterEach(async function () {
    await Promise.all(opened.splice(0).map((s) => s.close()));
    await admin.end();
    await db.drop();
  });

  it("a job's creation, status changes and events committed through one replica reach the other's watcher, in commit order", async function () {
    const [a, b] = [await open(), await open()];
    const w = await record(b);
    const job = await a.createJob(JOB);
    expect(await w.next((c) => c.kind === "job" && c.jobId === job.id)).to.deep.equal({ kind: "job", jobId: job.id, stack: "dev", status: "queued" });

    // Appends racing on one job: each commits in seq order (the job's row lock), and arrives so.
    await Promise.all(Array.from({ length: 20 }, (_, i) => a.appendEvent(job.id, { type: "log", data: { i } })));
    await w.next((c) => c.kind === "event" && c.seq === 20);
    const seqs = w.seen.filter((c) => c.kind === "event").map((c) => (c as { seq: number }).seq);
    expect(seqs).to.deep.equal(Array.from({ length: 20 }, (_, i) => i + 1));

    await a.updateJob(job.id, { status: "running", startedAt: new Date().toISOString() });
    await a.updateJob(job.id, { message: "no status change: no announcement" });
    await a.updateJob(job.id, { status: "succeeded", finishedAt: new Date().toISOString() });
    await w.next((c) => c.kind === "job" && c.status === "succeeded");
    const statuses = w.seen.filter((c) => c.kind === "job").map((c) => (c as { status: string }).status);
    expect(statuses).to.deep.equal(["queued", "running", "succeeded"]);
  });

  it("announces decisions, crash recovery and lease releases", async function () {
    const [a, b] = [await open(), await open()];
    const w = await record(b);
    const waiting = await a.createJob({ ...JOB, status: "awaiting_approval", approvalsRequired: 1 });
    await a.recordDecision(waiting.id, { by: "bob", decision: "approved" });
    await w.next((c) => c.kind === "job" && c.jobId === waiting.id && c.status === "queued");

    const running = await a.createJob({ ...JOB, stack: "prod", status: "running" });
    await a.markRunningAsInterrupted("restart");
    expect(await w.next((c) => c.kind === "job" && c.jobId === running.id && c.status === "interrupted")).to.include({ stack: "prod" });

    const lease = await a.acquireLease("dev", { owner: "o1", ttlMs: 60_000 });
    await a.releaseLease("dev", "o1", lease.token);
    await w.next(isLease("dev"));
    await a.acquireLease("prod", { owner: "o1", ttlMs: 60_000 });
    await a.forceReleaseLease("prod");
    await w.next(isLease("prod"));
    // Releasing what is not held changes nothing and announces nothing.
    await a.releaseLease("dev", "o1", lease.token);
    expect(await a.forceReleaseLease("prod")).to.equal(undefined);
    await a.setStackState("marker", { drifted: true }); // a write that is not announced
    const marker = await a.createJob({ ...JOB, stack: "marker" });
    await w.next((c) => c.kind === "job" && c.jobId === marker.id);
    expect(w.seen.filter((c) => c.kind === "lease")).to.have.length(2);
  });

  it("delivers nothing for a change that does not commit", async function () {
    const [a, b] = [await open(), await open()];
    const w = await record(b);
    const job = await a.createJob(JOB);
    // A notification queued in a transaction that rolls back is never delivered.
    const raw = new Db(db.url);
    try {
      const rolledBack = raw.transaction(async (tx) => {
        await notifyChange(tx, { kind: "lease", stack: "rolled-back" });
        throw new Error("roll back");
      });
      await rolledBack.then(
        () => expect.fail("the transaction committed"),
        (err: Error) => expect(err.message).to.equal("roll back"),
      );
    } finally {
      await raw.end();
    }
    // Refused changes: a compare-and-set that does not hold, an append to no job.
    await a.updateJob(job.id, { status: "running" }, { ifStatus: "awaiting_approval" }).catch(() => undefined);
    await a.appendEvent("job_nope", { type: "log" }).catch(() => undefined);
    await a.updateJob(job.id, { status: "canceled", finishedAt: new Date().toISOString() });
    await w.next((c) => c.kind === "job" && c.status === "canceled");
    expect(w.seen.map((c) => (c.kind === "job" ? c.status : c.kind))).to.deep.equal(["queued", "canceled"]);
  });

  it("one LISTEN connection per store, shared by its listeners; unsubscribing stops delivery, the last one closes it", async function () {
    const [a, b] = [await open(), await open()];
    expect(await listenPids()).to.deep.equal([]);
    const w1 = await record(b);
    const w2 = await record(b);
    let thrown = 0;
    const unThrowing = await b.watch(() => {
      thrown++;
      throw new Error("listener bug");
    });
    expect(await listenPids()).to.have.length(1);

    const first = await a.createJob(JOB);
    await w1.next((c) => c.kind === "job" && c.jobId === first.id);
    await w2.next((c) => c.kind === "job" && c.jobId === first.id);
    expect(thrown).to.equal(1);
    expect(errors.map((e) => e.what)).to.deep.equal(["listener"]);

    await w1.unsubscribe();
    await w1.unsubscribe(); // twice is harmless
    const second = await a.createJob(JOB);
    await w2.next((c) => c.kind === "job" && c.jobId === second.id);
    expect(w1.seen).to.have.length(1);

    await w2.unsubscribe();
    await unThrowing();
    await eventually(async () => ((await listenPids()).length === 0 ? true : undefined), "the LISTEN connection to close");

    // Watching again opens a new one.
    const w3 = await record(b);
    const third = await a.createJob(JOB);
    await w3.next((c) => c.kind === "job" && c.jobId === third.id);
    await b.close();
    await eventually(async () => ((await listenPids()).length === 0 ? true : undefined), "close() to end the LISTEN connection");
  });

  it("reconnects when the LISTEN connection is terminated, and keeps delivering", async function () {
    const [a, b] = [await open(), await open()];
    const w = await record(b);
    const [pid] = await listenPids();
    await admin.query("SELECT pg_terminate_backend($1)", [pid]);
    const newPid = await eventually(async () => (await listenPids()).find((p) => p !== pid), "a new LISTEN connection");
    expect(newPid).to.not.equal(pid);
    expect(errors.some((e) => e.what === "connection")).to.equal(true);

    const job = await a.createJob(JOB);
    await a.appendEvent(job.id, { type: "log" });
    await w.next((c) => c.kind === "event" && c.jobId === job.id && c.seq === 1);
    // A watch taken after the reconnection shares the same connection.
    await record(b);
    expect(await listenPids()).to.deep.equal([newPid]);
  });
});
