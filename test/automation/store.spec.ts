/**
 * The store's contract, run once per implementation (SQLite through asyncStore, PostgreSQL), then what
 * only one of them has: SQLite's file, its data directory rules and its cross-process lock;
 * PostgreSQL's migrations across replicas, row locks across pools, its audit trigger and its
 * unavailability. The PostgreSQL runs use a throwaway cluster (test/support/postgres.ts): skipped
 * locally without PostgreSQL, failed in CI.
 */
import { expect } from "chai";
import Database from "better-sqlite3";
import { spawn } from "child_process";
import * as fs from "fs";
import * as net from "net";
import * as os from "os";
import * as path from "path";
import { Client } from "pg";
import { ConfigError, ConflictError, isStoreUnavailable, NotFoundError, StoreUnavailableError } from "../../automation/errors";
import {
  asyncStore,
  ELIDED_EVENT_TYPE,
  MAX_DECISION_COMMENT,
  MAX_LIST_LIMIT,
  newJobId,
  openPostgresStore,
  openStore,
  PG_SCHEMA_VERSION,
  SCHEMA_VERSION,
  SqliteStore,
  storeFile,
  type Job,
  type JobPatch,
  type NewJob,
  type Store,
} from "../../automation/store";
import { createTestDatabase, requirePostgresOrSkip, type TestDatabase } from "../support/postgres";

const T0 = Date.parse("2025-03-01T12:00:00.000Z");
const MINUTE = 60_000;
const DAY = 24 * 60 * MINUTE;

type Kind = "sqlite" | "postgres";
interface OpenOptions {
  readonly maxEventsPerJob?: number;
  readonly now?: () => number;
}

type Refusal = Error & { details?: unknown };

/** The error `fn` rejects (or throws) with; fails when it succeeds. */
async function rejection(fn: () => Promise<unknown>): Promise<Refusal> {
  try {
    await fn();
  } catch (err) {
    return err as Refusal;
  }
  throw new Error("expected a rejection, but it succeeded");
}

function job(overrides: Partial<NewJob> = {}): NewJob {
  return { stack: "dev", operation: "up", requestedBy: "alice", source: "api", engine: "offline", ...overrides };
}

/** What a suite needs of one implementation: stores on one backing (a file, a database) that the test's clock drives. */
function harness(kind: Kind) {
  const h = {
    dir: "",
    clock: T0,
    db: undefined as TestDatabase | undefined,
    opened: [] as Store[],
    async open(options: OpenOptions = {}): Promise<Store> {
      const now = options.now ?? (() => h.clock);
      const store =
        kind === "sqlite"
          ? asyncStore(SqliteStore.open(storeFile(h.dir), { now, ...(options.maxEventsPerJob ? { maxEventsPerJob: options.maxEventsPerJob } : {}) }))
          : await openPostgresStore((h.db as TestDatabase).url, {
              now,
              outcomesDir: path.join(h.dir, "outcomes"),
              ...(options.maxEventsPerJob ? { maxEventsPerJob: options.maxEventsPerJob } : {}),
            });
      h.opened.push(store);
      return store;
    },
    /** The job's row as stored, as JSON text (what a look at the database would show). */
    async rawJobRow(id: string): Promise<string> {
      if (kind === "sqlite") {
        const raw = new Database(storeFile(h.dir), { readonly: true });
        try {
          return JSON.stringify(raw.prepare("SELECT * FROM jobs WHERE id = ?").get(id));
        } finally {
          raw.close();
        }
      }
      return sql(h.db as TestDatabase, async (c) => (await c.query("SELECT row_to_json(jobs)::text AS j FROM jobs WHERE id = $1", [id])).rows[0].j as string);
    },
    /** Runs one statement on the database the way a person with access would, outside the store. */
    async rawExec(statement: string, params: unknown[] = []): Promise<void> {
      if (kind === "sqlite") {
        const raw = new Database(storeFile(h.dir));
        try {
          raw.prepare(statement).run(...params);
        } finally {
          raw.close();
        }
        return;
      }
      await sql(h.db as TestDatabase, (c) => c.query(statement.replace(/\?/g, (() => { let i = 0; return () => `$${++i}`; })()), params));
    },
  };
  return h;
}

async function sql<T>(db: TestDatabase, fn: (client: Client) => Promise<T>): Promise<T> {
  const client = new Client({ connectionString: db.url });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

function setUp(kind: Kind, h: ReturnType<typeof harness>): void {
  before(function () {
    if (kind === "postgres") requirePostgresOrSkip(this);
  });
  beforeEach(async () => {
    h.dir = fs.mkdtempSync(path.join(os.tmpdir(), "deployer-store-"));
    h.clock = T0;
    if (kind === "postgres") h.db = await createTestDatabase();
  });
  afterEach(async () => {
    for (const s of h.opened.splice(0)) {
      try {
        await s.close();
      } catch {
        // already closed by the test
      }
    }
    await h.db?.drop();
    h.db = undefined;
    fs.rmSync(h.dir, { recursive: true, force: true });
  });
}

describe("store ids", () => {
  it("makes ids that strictly increase, also within one millisecond and when the clock steps back", () => {
    const ids = [newJobId(T0), newJobId(T0), newJobId(T0 - 5000), newJobId(T0 + 1), newJobId(T0 + 1)];
    expect(new Set(ids).size).to.equal(ids.length);
    expect([...ids].sort()).to.deep.equal(ids);
  });
});

for (const kind of ["sqlite", "postgres"] as const) {
  describe(`store contract (${kind})`, () => {
    const h = harness(kind);
    setUp(kind, h);
    const open = (options?: OpenOptions) => h.open(options);

    /** Creates a job that ran and succeeded, finishing `finishedAfterMs` after the clock's current time. */
    async function succeeded(store: Store, overrides: Partial<NewJob> = {}, finishedAfterMs = 1000): Promise<Job> {
      const created = await store.createJob(job(overrides));
      h.clock += finishedAfterMs;
      return store.updateJob(created.id, { status: "succeeded", finishedAt: new Date(h.clock).toISOString() });
    }

    describe("jobs", () => {
      it("creates a queued job with a job_ id, createdAt from the clock and defaults", async () => {
        const store = await open();
        const created = await store.createJob(job({ version: "1.4.2", target: ["urn:a"] }));
        expect(created.id).to.match(/^job_[0-9a-z]{26}$/);
        expect(created).to.include({
          stack: "dev",
          operation: "up",
          status: "queued",
          version: "1.4.2",
          requestedBy: "alice",
          source: "api",
          engine: "offline",
          approvalsRequired: 0,
          lastEventSeq: 0,
          createdAt: "2025-03-01T12:00:00.000Z",
        });
        expect(created.target).to.deep.equal(["urn:a"]);
        expect(created).not.to.have.property("startedAt");
        expect(await store.getJob(created.id)).to.deep.equal(created);
        expect(await store.jobStack(created.id)).to.equal("dev");
        expect(await store.jobStack("job_nope")).to.equal(undefined);
      });

      it("returns undefined for an unknown job", async () => {
        expect(await (await open()).getJob("job_nope")).to.equal(undefined);
      });

      it("keeps every field's JSON as given (params, config, approval request)", async () => {
        const store = await open();
        const params = { version: "1.0.0", target: ["urn:a", "urn:b"], message: "ship it", reason: "why" };
        const approvalRequest = {
          changes: { create: 1, update: 0, delete: 0, replace: 0, same: 3 },
          steps: [{ urn: "urn:a", type: "aws:s3/bucket:Bucket", op: "create" as const, changedProperties: ["tags"] }],
          binding: { environment: "e".repeat(64), imageDigest: "sha256:" + "a".repeat(64) },
          requestedAt: "2025-03-01T12:00:00.000Z",
          expiresAt: "2025-03-02T12:00:00.000Z",
          expiresHours: 24,
        };
        const created = await store.createJob(job({ params, config: { "app:version": "1.0.0", "aws:region": "eu-west-1" }, approvalsRequired: 1, status: "awaiting_approval" }));
        const updated = await store.updateJob(created.id, { approvalRequest, drift: [{ urn: "urn:a", type: "t", kind: "update", properties: [] } as never] });
        expect(updated.params).to.deep.equal(params);
        expect(updated.config).to.deep.equal({ "app:version": "1.0.0", "aws:region": "eu-west-1" });
        expect(updated.approvalRequest).to.deep.equal(approvalRequest);
        expect(updated.decisions).to.deep.equal([]);
        expect(await store.getJob(created.id)).to.deep.equal(updated);
      });

      it("updates a job, keeps fields the patch leaves out and clears fields patched with null", async () => {
        const store = await open();
        const created = await store.createJob(job({ message: "first", reason: "because" }));
        const changes = { create: 2, update: 1, delete: 0, replace: 0, same: 7 };
        const updated = await store.updateJob(created.id, {
          status: "succeeded",
          startedAt: "2025-03-01T12:00:01.000Z",
          finishedAt: "2025-03-01T12:00:09.000Z",
          changes,
          steps: [{ urn: "urn:x", type: "aws:s3/bucket:Bucket", op: "create", changedProperties: [] }],
          error: { code: "operation_failed", message: "boom" },
          message: null,
        });
        expect(updated.status).to.equal("succeeded");
        expect(updated.changes).to.deep.equal(changes);
        expect(updated.steps).to.have.length(1);
        expect(updated.reason).to.equal("because");
        expect(updated).not.to.have.property("message");
        expect(await store.updateJob(created.id, { error: null })).not.to.have.property("error");
      });

      it("throws NotFoundError when updating an unknown job", async () => {
        const store = await open();
        expect(await rejection(() => store.updateJob("job_nope", { status: "running" }))).to.be.instanceOf(NotFoundError);
      });

      it("refuses an update whose ifStatus no longer holds, and applies it when it does", async () => {
        const store = await open();
        const created = await store.createJob(job());
        await store.updateJob(created.id, { status: "canceled" });
        const err = await rejection(() => store.updateJob(created.id, { status: "running" }, { ifStatus: "queued" }));
        expect(err).to.be.instanceOf(ConflictError);
        expect(err.details).to.deep.equal({ jobId: created.id, status: "canceled" });
        expect((await store.getJob(created.id))?.status).to.equal("canceled");
        const other = await store.createJob(job());
        expect((await store.updateJob(other.id, { status: "running" }, { ifStatus: ["queued", "awaiting_approval"] })).status).to.equal("running");
      });

      it("refuses read-only fields and unknown values in a patch, as rejected promises", async () => {
        const store = await open();
        const created = await store.createJob(job());
        expect(await rejection(() => store.updateJob(created.id, { stack: "prod" } as never))).to.be.instanceOf(ConfigError);
        expect(await rejection(() => store.updateJob(created.id, { status: "done" } as never))).to.be.instanceOf(ConfigError);
        expect(await rejection(() => store.updateJob(created.id, { status: null } as never))).to.be.instanceOf(ConfigError);
        expect(await rejection(() => store.createJob(job({ operation: "deploy" } as never)))).to.be.instanceOf(ConfigError);
        expect(await rejection(() => store.createJob({ ...job(), id: "job_x" } as never))).to.be.instanceOf(ConfigError);
        // PostgreSQL's text cannot hold NUL: both stores refuse it in a text field, naming the field.
        const nul = await rejection(() => store.createJob(job({ message: "a\u0000b" })));
        expect(nul).to.be.instanceOf(ConfigError).with.property("message", "job message must not contain a NUL character");
        expect(await rejection(() => store.updateJob(created.id, { reason: "x\u0000" }))).to.be.instanceOf(ConfigError);
        expect((await store.getJob(created.id))?.reason).to.equal(undefined);
        // Refusals come as rejections, never as a throw before the promise.
        const pending = store.listJobs({ limit: 0 });
        expect(pending).to.be.instanceOf(Promise);
        expect(await rejection(() => pending)).to.be.instanceOf(ConfigError);
        expect(await rejection(() => store.acquireLease("dev", { owner: "", ttlMs: MINUTE }))).to.be.instanceOf(ConfigError);
        expect(await rejection(() => store.acquireLease("dev", { owner: "a", ttlMs: 0 }))).to.be.instanceOf(ConfigError);
      });

      it("lists jobs newest first, filtered by stack, one or many statuses and operation", async () => {
        const store = await open();
        const a = await store.createJob(job({ stack: "dev", operation: "up" }));
        const b = await store.createJob(job({ stack: "prod", operation: "preview" }));
        const c = await store.createJob(job({ stack: "dev", operation: "drift" }));
        await store.updateJob(c.id, { status: "running" });
        const d = await store.createJob(job({ stack: "dev", operation: "up" }));
        await store.updateJob(d.id, { status: "failed" });

        const ids = async (q: Parameters<Store["listJobs"]>[0]) => (await store.listJobs(q)).map((j) => j.id);
        expect(await ids({})).to.deep.equal([d.id, c.id, b.id, a.id]);
        expect(await ids({ stack: "dev" })).to.deep.equal([d.id, c.id, a.id]);
        expect(await ids({ stack: ["prod", "qa"] })).to.deep.equal([b.id]);
        expect(await ids({ status: "queued" })).to.deep.equal([b.id, a.id]);
        expect(await ids({ status: ["running", "failed"] })).to.deep.equal([d.id, c.id]);
        expect(await ids({ stack: "dev", operation: "up" })).to.deep.equal([d.id, a.id]);
        expect(await ids({ operation: ["drift", "preview"] })).to.deep.equal([c.id, b.id]);
        expect(await store.listJobs({ status: [] })).to.deep.equal([]);
        expect(await store.listJobs({ stack: [] })).to.deep.equal([]);
      });

      it("pages with the before cursor, without gaps or repeats, even for jobs created in one millisecond", async () => {
        const store = await open();
        const ids: string[] = [];
        for (let i = 0; i < 7; i++) ids.push((await store.createJob(job())).id);
        const seen: string[] = [];
        let before: string | undefined;
        for (;;) {
          const page = await store.listJobs({ limit: 3, before });
          if (page.length === 0) break;
          seen.push(...page.map((j) => j.id));
          before = page[page.length - 1].id;
        }
        expect(seen).to.deep.equal([...ids].reverse());
      });

      it("lists 50 jobs by default and never more than 500", async function () {
        this.slow(5000);
        const store = await open();
        for (let i = 0; i < MAX_LIST_LIMIT + 5; i++) await store.createJob(job());
        expect(await store.listJobs()).to.have.length(50);
        expect(await store.listJobs({ limit: 10_000 })).to.have.length(MAX_LIST_LIMIT);
        expect(await rejection(() => store.listJobs({ limit: 0 }))).to.be.instanceOf(ConfigError);
      });

      it("finds a job by idempotency key and refuses a second job with the same key", async () => {
        const store = await open();
        const first = await store.createJob(job({ idempotencyKey: "k-1", requestHash: "h1" }));
        expect((await store.findByIdempotencyKey("k-1"))?.id).to.equal(first.id);
        expect(await store.findByIdempotencyKey("k-2")).to.equal(undefined);
        const err = await rejection(() => store.createJob(job({ idempotencyKey: "k-1", requestHash: "h2" })));
        expect(err).to.be.instanceOf(ConflictError);
        expect(err.details).to.deep.equal({ jobId: first.id });
        expect(await store.listJobs()).to.have.length(1);
      });

      it("stamps what can change of a finished job: status, finish, rolledBackBy, last event", async () => {
        const store = await open();
        const created = await store.createJob(job());
        expect(await store.jobStamp(created.id)).to.equal("queued|||0");
        const done = await succeeded(store);
        await store.appendEvent(done.id, { type: "line" });
        expect(await store.jobStamp(done.id)).to.equal(`succeeded|${done.finishedAt}||1`);
        await store.updateJob(done.id, { rolledBackBy: "job_r" });
        expect(await store.jobStamp(done.id)).to.equal(`succeeded|${done.finishedAt}|job_r|1`);
        expect(await store.jobStamp("job_nope")).to.equal(undefined);
      });
    });

    describe("queue", () => {
      it("returns queued jobs oldest first, for all stacks or one, with a limit", async () => {
        const store = await open();
        const a = await store.createJob(job({ stack: "dev" }));
        const b = await store.createJob(job({ stack: "prod" }));
        const c = await store.createJob(job({ stack: "dev" }));
        const d = await store.createJob(job({ stack: "dev", status: "awaiting_approval", approvalsRequired: 2 }));
        await store.updateJob(a.id, { status: "running" });
        expect((await store.queuedJobs()).map((j) => j.id)).to.deep.equal([b.id, c.id]);
        expect((await store.queuedJobs({ stack: "dev" })).map((j) => j.id)).to.deep.equal([c.id]);
        expect((await store.queuedJobs({ limit: 1 })).map((j) => j.id)).to.deep.equal([b.id]);
        expect((await store.getJob(d.id))?.approvalsRequired).to.equal(2);
      });

      it("counts the queue per stack and requester, lists queued stacks oldest first and places a job in its stack's queue", async () => {
        const store = await open();
        const p1 = await store.createJob(job({ stack: "prod", requestedBy: "bob" }));
        const d1 = await store.createJob(job({ stack: "dev" }));
        const d2 = await store.createJob(job({ stack: "dev", requestedBy: "bob" }));
        const d3 = await store.createJob(job({ stack: "dev" }));
        const running = await store.createJob(job({ stack: "qa", status: "running" }));
        expect(await store.countQueued()).to.equal(4);
        expect(await store.countQueued({ stack: "dev" })).to.equal(3);
        expect(await store.countQueued({ requestedBy: "bob" })).to.equal(2);
        expect(await store.countQueued({ stack: "dev", requestedBy: "bob" })).to.equal(1);
        expect(await store.queuedStacks()).to.deep.equal([
          { stack: "prod", queued: 1, oldestJobId: p1.id },
          { stack: "dev", queued: 3, oldestJobId: d1.id },
        ]);
        expect(await store.queuePosition(d1.id)).to.equal(1);
        expect(await store.queuePosition(d3.id)).to.equal(3);
        expect(await store.queuePosition(p1.id)).to.equal(1);
        await store.updateJob(d1.id, { status: "canceled" });
        expect(await store.queuePosition(d1.id)).to.equal(undefined);
        expect(await store.queuePosition(d2.id)).to.equal(1);
        expect(await store.queuePosition(running.id)).to.equal(undefined);
        expect(await store.queuePosition("job_nope")).to.equal(undefined);
      });
      it("reads each queued stack's lease, block and next jobs at once, the oldest first, for all stacks or one", async () => {
        const store = await open();
        const devUp = await store.createJob(job({ stack: "dev", operation: "up" }));
        const prodPreview = await store.createJob(job({ stack: "prod", operation: "preview" }));
        const devDrift = await store.createJob(job({ stack: "dev", operation: "drift" }));
        await store.createJob(job({ stack: "dev", operation: "preview" }));
        const qaRefresh = await store.createJob(job({ stack: "qa", operation: "refresh" }));
        const gated = await store.createJob(job({ stack: "qa", operation: "up", status: "awaiting_approval", approvalsRequired: 1 }));
        await store.recordDecision(gated.id, { by: "erin", decision: "approved" });
        await store.createJob(job({ stack: "done", status: "running" }));
        await store.createJob(job({ stack: "dev", operation: "refresh", status: "running" }));
        await store.createJob(job({ stack: "prod", operation: "up", status: "awaiting_approval", approvalsRequired: 1 }));
        await store.acquireLease("dev", { owner: "cli:alice@host:42", ttlMs: MINUTE });
        await store.acquireLease("prod", { owner: "svc:b", ttlMs: MINUTE });
        await store.releaseLease("prod", "svc:b", (await store.getLease("prod"))!.token);
        await store.acquireLease("qa", { owner: "svc:c", ttlMs: MINUTE });
        await store.setStackState("dev", { blockedReason: "job x interrupted" });
        h.clock += 30_000;

        const all = await store.dispatchableStacks();

        expect(all.map((s) => s.stack)).to.deep.equal(["dev", "prod", "qa"]);
        const [dev, prod, qa] = all;
        expect(dev).to.deep.include({ stack: "dev", blocked: true, lease: { owner: "cli:alice@host:42", expiresAt: new Date(T0 + MINUTE).toISOString() }, running: true, awaitingApproval: false });
        expect(dev.next).to.deep.equal({ id: devUp.id, stack: "dev", operation: "up" });
        expect(dev.nextNonMutating).to.deep.equal({ id: devDrift.id, stack: "dev", operation: "drift" });
        // A released lease is no lease; a non-mutating next job is both.
        const preview = { id: prodPreview.id, stack: "prod", operation: "preview" };
        expect(prod).to.deep.equal({ stack: "prod", blocked: false, next: preview, nextNonMutating: preview, running: false, awaitingApproval: true });
        // The approved job is queued again, behind the refresh; the stack has no non-mutating job.
        expect(qa).to.deep.equal({ stack: "qa", blocked: false, lease: { owner: "svc:c", expiresAt: new Date(T0 + MINUTE).toISOString() }, next: { id: qaRefresh.id, stack: "qa", operation: "refresh" }, running: false, awaitingApproval: false });
        expect(await store.dispatchableStacks({ stack: "qa" })).to.deep.equal([qa]);
        expect(await store.dispatchableStacks({ stack: "done" })).to.deep.equal([]);
        // A lapsed lease is no lease either.
        h.clock += MINUTE;
        expect((await store.dispatchableStacks({ stack: "dev" }))[0].lease).to.equal(undefined);
      });
    });

    describe("approvals", () => {
      it("records decisions oldest first, one per principal, and queues the job at the last approval needed", async () => {
        const store = await open();
        const created = await store.createJob(job({ status: "awaiting_approval", approvalsRequired: 2 }));
        const first = await store.recordDecision(created.id, { by: "erin", decision: "approved", comment: "x".repeat(MAX_DECISION_COMMENT) });
        expect(first.status).to.equal("awaiting_approval");
        expect(first.decisions).to.deep.equal([{ by: "erin", decision: "approved", comment: "x".repeat(MAX_DECISION_COMMENT), at: "2025-03-01T12:00:00.000Z" }]);
        const again = await rejection(() => store.recordDecision(created.id, { by: "erin", decision: "rejected" }));
        expect(again).to.be.instanceOf(ConflictError);
        expect(again.details).to.deep.equal({ jobId: created.id, by: "erin", decision: "approved" });
        expect(await rejection(() => store.recordDecision(created.id, { by: "frank", decision: "approved", comment: "x".repeat(MAX_DECISION_COMMENT + 1) }))).to.be.instanceOf(ConfigError);
        expect(await rejection(() => store.recordDecision(created.id, { by: "", decision: "approved" }))).to.be.instanceOf(ConfigError);
        expect(await rejection(() => store.recordDecision(created.id, { by: "frank", decision: "maybe" as never }))).to.be.instanceOf(ConfigError);
        h.clock += 1000;
        const queued = await store.recordDecision(created.id, { by: "frank", decision: "approved" });
        expect(queued.status).to.equal("queued");
        expect(queued.decisions?.map((d) => [d.by, d.at])).to.deep.equal([
          ["erin", "2025-03-01T12:00:00.000Z"],
          ["frank", "2025-03-01T12:00:01.000Z"],
        ]);
        expect(await store.listDecisions(created.id)).to.deep.equal(queued.decisions);
        expect((await store.queuedJobs()).map((j) => j.id)).to.deep.equal([created.id]);
        const late = await rejection(() => store.recordDecision(created.id, { by: "gina", decision: "approved" }));
        expect(late).to.be.instanceOf(ConflictError);
        expect(late.details).to.deep.equal({ jobId: created.id, status: "queued" });
        expect(await rejection(() => store.recordDecision("job_nope", { by: "gina", decision: "approved" }))).to.be.instanceOf(NotFoundError);
      });

      it("ends the job rejected at the first rejection, naming who and why", async () => {
        const store = await open();
        const created = await store.createJob(job({ status: "awaiting_approval", approvalsRequired: 2 }));
        await store.recordDecision(created.id, { by: "erin", decision: "approved" });
        h.clock += 5000;
        const rejected = await store.recordDecision(created.id, { by: "frank", decision: "rejected", comment: "not today" });
        expect(rejected).to.deep.include({
          status: "rejected",
          finishedAt: "2025-03-01T12:00:05.000Z",
          error: { code: "rejected", message: "rejected by frank: not today" },
        });
        expect(rejected.decisions).to.have.length(2);
        expect(await store.listDecisions("job_nope")).to.deep.equal([]);
        expect((await store.listJobs({ status: "rejected" }))[0].decisions).to.deep.equal(rejected.decisions);
      });
    });

    describe("deployments", () => {
      it("lists succeeded up and rollback jobs of the stack, newest to take effect first", async () => {
        const store = await open();
        const d1 = await succeeded(store, { version: "1.0.0" });
        await succeeded(store, { operation: "preview" });
        await succeeded(store, { stack: "prod" });
        const failed = await store.createJob(job({ version: "1.1.0" }));
        await store.updateJob(failed.id, { status: "failed" });
        // d2 is created before d3 but finishes after it (it waited for approval).
        const d2 = await store.createJob(job({ version: "2.0.0" }));
        const d3 = await succeeded(store, { operation: "rollback", version: "1.0.0", rollbackTo: d1.id });
        h.clock += 1000;
        await store.updateJob(d2.id, { status: "succeeded", finishedAt: new Date(h.clock).toISOString() });

        expect((await store.deployments("dev")).map((j) => j.id)).to.deep.equal([d2.id, d3.id, d1.id]);
        expect((await store.deployments("dev", { limit: 1 })).map((j) => j.id)).to.deep.equal([d2.id]);
        expect((await store.deployments("dev", { version: "1.0.0" })).map((j) => j.id)).to.deep.equal([d3.id, d1.id]);
        expect((await store.deployments("dev", { version: "1.1.0" })).map((j) => j.id)).to.deep.equal([]);
        expect((await store.listJobs({ stack: "dev", version: "1.1.0" })).map((j) => j.id)).to.deep.equal([failed.id]);
        expect((await store.listJobs({ operation: "rollback", version: "1.0.0" })).map((j) => j.id)).to.deep.equal([d3.id]);
      });

      it("puts a succeeded deployment with no finish time after those that have one", async () => {
        const store = await open();
        const d1 = await succeeded(store, { version: "1.0.0" });
        const unfinished = await store.createJob(job({ status: "succeeded", version: "0.9.0" }));
        expect((await store.deployments("dev")).map((j) => j.id)).to.deep.equal([d1.id, unfinished.id]);
        expect((await store.lastGoodDeployment("dev"))?.id).to.equal(d1.id);
      });

      it("finds the last good deployment, skipping deployments that were rolled back", async () => {
        const store = await open();
        const d1 = await succeeded(store, { version: "1.0.0" });
        const d2 = await succeeded(store, { version: "2.0.0" });
        expect((await store.lastGoodDeployment("dev"))?.id).to.equal(d2.id);
        expect(await store.lastGoodDeployment("prod")).to.equal(undefined);

        const r3 = await succeeded(store, { operation: "rollback", version: "1.0.0", rollbackOf: d2.id, rollbackTo: d1.id });
        await store.updateJob(d2.id, { rolledBackBy: r3.id });
        expect((await store.lastGoodDeployment("dev"))?.id).to.equal(r3.id);
        expect((await store.lastGoodDeployment("dev", { beforeJobId: r3.id }))?.id).to.equal(d1.id);
        expect((await store.lastGoodDeployment("dev", { beforeJobId: r3.id, includeRolledBack: true }))?.id).to.equal(d2.id);
      });

      it("finds the last good deployment before a job, or excluding one", async () => {
        const store = await open();
        const d1 = await succeeded(store, { version: "1.0.0" });
        const d2 = await succeeded(store, { version: "2.0.0" });
        const running = await store.createJob(job({ version: "3.0.0", status: "running" }));
        expect((await store.lastGoodDeployment("dev", { beforeJobId: d2.id }))?.id).to.equal(d1.id);
        expect((await store.lastGoodDeployment("dev", { excludeJobId: d2.id }))?.id).to.equal(d1.id);
        expect((await store.lastGoodDeployment("dev", { beforeJobId: running.id }))?.id).to.equal(d2.id);
        expect(await store.lastGoodDeployment("dev", { beforeJobId: d1.id })).to.equal(undefined);
        expect(await rejection(() => store.lastGoodDeployment("dev", { beforeJobId: "job_nope" }))).to.be.instanceOf(NotFoundError);
      });

      it("orders deployments that finished in the same millisecond by id", async () => {
        const store = await open();
        const a = await store.createJob(job({ version: "1" }));
        const b = await store.createJob(job({ version: "2" }));
        const at = new Date(h.clock + 1000).toISOString();
        await store.updateJob(b.id, { status: "succeeded", finishedAt: at });
        await store.updateJob(a.id, { status: "succeeded", finishedAt: at });
        expect((await store.deployments("dev")).map((j) => j.id)).to.deep.equal([b.id, a.id]);
        expect((await store.lastGoodDeployment("dev", { beforeJobId: b.id }))?.id).to.equal(a.id);
      });
    });

    describe("secret outputs", () => {
      it("never stores a secret output's value in clear, on create or on update", async () => {
        const store = await open();
        const created = await store.createJob(
          job({ outputs: { dbPassword: { value: "hunter2-create", secret: true }, url: { value: "http://x", secret: false } } }),
        );
        expect(JSON.stringify(created)).not.to.include("hunter2");
        await store.updateJob(created.id, {
          outputs: {
            dbPassword: { value: "hunter2-update", secret: true },
            url: { value: "http://lb.example", secret: false },
          },
        });
        expect((await store.getJob(created.id))?.outputs).to.deep.equal({
          dbPassword: { value: "[secret]", secret: true },
          url: { value: "http://lb.example", secret: false },
        });
        const raw = await h.rawJobRow(created.id);
        expect(raw).not.to.include("hunter2");
        expect(raw).to.include("[secret]");
      });
    });

    describe("job events", () => {
      it("numbers events from 1 in order and moves the job's lastEventSeq", async () => {
        const store = await open();
        const created = await store.createJob(job());
        const first = await store.appendEvent(created.id, { type: "started", data: { operation: "up" } });
        h.clock += 10;
        const second = await store.appendEvent(created.id, { type: "step", data: { urn: "urn:a", op: "create" } });
        await store.appendEvent(created.id, { type: "bare" });
        expect(first).to.deep.equal({ seq: 1, time: "2025-03-01T12:00:00.000Z" });
        expect(second.seq).to.equal(2);
        expect((await store.getJob(created.id))?.lastEventSeq).to.equal(3);
        expect(await store.listEvents(created.id)).to.deep.equal([
          { seq: 1, time: "2025-03-01T12:00:00.000Z", type: "started", data: { operation: "up" } },
          { seq: 2, time: "2025-03-01T12:00:00.010Z", type: "step", data: { urn: "urn:a", op: "create" } },
          { seq: 3, time: "2025-03-01T12:00:00.010Z", type: "bare", data: null },
        ]);
      });

      it("keeps any JSON an event carries, control characters included", async () => {
        const store = await open();
        const created = await store.createJob(job());
        const data = { line: "a\u0000b\u001b[31mred\u001b[0m ✓ \ud83d\ude80", n: 1.5, list: [true, null, { deep: "x" }] };
        await store.appendEvent(created.id, { type: "line", data });
        await store.appendEvent(created.id, { type: "line", data: "plain" });
        expect((await store.listEvents(created.id)).map((e) => e.data)).to.deep.equal([data, "plain"]);
      });

      it("keeps each job's seq apart", async () => {
        const store = await open();
        const a = await store.createJob(job());
        const b = await store.createJob(job());
        await store.appendEvent(a.id, { type: "x" });
        await store.appendEvent(a.id, { type: "x" });
        expect((await store.appendEvent(b.id, { type: "x" })).seq).to.equal(1);
      });

      it("replays the events after a seq, with a limit", async () => {
        const store = await open();
        const created = await store.createJob(job());
        for (let i = 1; i <= 10; i++) await store.appendEvent(created.id, { type: "line", data: i });
        expect((await store.listEvents(created.id, { afterSeq: 7 })).map((e) => e.seq)).to.deep.equal([8, 9, 10]);
        expect((await store.listEvents(created.id, { afterSeq: 2, limit: 3 })).map((e) => e.data)).to.deep.equal([3, 4, 5]);
        expect(await store.listEvents(created.id, { afterSeq: 10 })).to.deep.equal([]);
      });

      it("drops the oldest events past the cap behind one elided marker, never reusing a seq", async () => {
        const store = await open({ maxEventsPerJob: 5 });
        const created = await store.createJob(job());
        for (let i = 1; i <= 5; i++) await store.appendEvent(created.id, { type: "line", data: i });
        expect(await store.listEvents(created.id)).to.have.length(5);

        expect((await store.appendEvent(created.id, { type: "line", data: 6 })).seq).to.equal(6);
        let events = await store.listEvents(created.id);
        expect(events.map((e) => [e.seq, e.type])).to.deep.equal([
          [2, ELIDED_EVENT_TYPE],
          [3, "line"],
          [4, "line"],
          [5, "line"],
          [6, "line"],
        ]);
        expect(events[0].data).to.deep.equal({ count: 2 });

        for (let i = 7; i <= 9; i++) await store.appendEvent(created.id, { type: "line", data: i });
        events = await store.listEvents(created.id);
        expect(events).to.have.length(5);
        expect(events.filter((e) => e.type === ELIDED_EVENT_TYPE)).to.have.length(1);
        expect(events.map((e) => e.seq)).to.deep.equal([5, 6, 7, 8, 9]);
        expect(events[0]).to.include({ type: ELIDED_EVENT_TYPE }).and.to.have.deep.property("data", { count: 5 });
        // A reader that had seen up to seq 3 learns lines are missing; one that saw 5 does not.
        expect((await store.listEvents(created.id, { afterSeq: 3 }))[0].type).to.equal(ELIDED_EVENT_TYPE);
        expect((await store.listEvents(created.id, { afterSeq: 5 }))[0]).to.include({ seq: 6, type: "line" });
        expect((await store.getJob(created.id))?.lastEventSeq).to.equal(9);
      });

      it("refuses events for an unknown job and the reserved marker type, and a cap below 2", async () => {
        const store = await open();
        const created = await store.createJob(job());
        expect(await rejection(() => store.appendEvent("job_nope", { type: "line" }))).to.be.instanceOf(NotFoundError);
        expect(await rejection(() => store.appendEvent(created.id, { type: ELIDED_EVENT_TYPE }))).to.be.instanceOf(ConfigError);
        expect(await rejection(() => store.appendEvent(created.id, { type: "" }))).to.be.instanceOf(ConfigError);
        expect(await rejection(() => open({ maxEventsPerJob: 1 }))).to.be.instanceOf(ConfigError);
      });
    });

    describe("leases", () => {
      it("refuses a second owner with the holder, since when, job and expiry in the message", async () => {
        const store = await open();
        await store.acquireLease("prod", { owner: "cli:alice@host:42", ttlMs: 5 * MINUTE, jobId: "job_a" });
        h.clock += 1000;
        const err = await rejection(() => store.acquireLease("prod", { owner: "service:api-1", ttlMs: MINUTE }));
        expect(err).to.be.instanceOf(ConflictError);
        expect(err.message).to.include("cli:alice@host:42");
        expect(err.message).to.include("2025-03-01T12:00:00.000Z");
        expect(err.message).to.include("job_a");
        expect(err.message).to.include("2025-03-01T12:05:00.000Z");
        expect(err.details).to.deep.equal({
          stack: "prod",
          holder: "cli:alice@host:42",
          jobId: "job_a",
          acquiredAt: "2025-03-01T12:00:00.000Z",
          expiresAt: "2025-03-01T12:05:00.000Z",
        });
      });

      it("lets the same owner acquire again, keeping the token and extending the expiry", async () => {
        const store = await open();
        const first = await store.acquireLease("dev", { owner: "service:api-1", ttlMs: MINUTE, jobId: "job_a" });
        h.clock += 30_000;
        const again = await store.acquireLease("dev", { owner: "service:api-1", ttlMs: MINUTE, jobId: "job_b" });
        expect(again.token).to.equal(first.token);
        expect(again.acquiredAt).to.equal(first.acquiredAt);
        expect(again.expiresAt).to.equal("2025-03-01T12:01:30.000Z");
        expect(again.jobId).to.equal("job_b");
        expect((await store.acquireLease("dev", { owner: "service:api-1", ttlMs: MINUTE })).jobId).to.equal("job_b");
      });

      it("lets another owner take an expired lease, with a higher token", async () => {
        const store = await open();
        const first = await store.acquireLease("dev", { owner: "cli:alice@host:1", ttlMs: MINUTE });
        h.clock += MINUTE - 1;
        expect(await rejection(() => store.acquireLease("dev", { owner: "service:api-1", ttlMs: MINUTE }))).to.be.instanceOf(ConflictError);
        expect((await store.getLease("dev"))?.owner).to.equal("cli:alice@host:1");
        h.clock += 1;
        expect(await store.getLease("dev")).to.equal(undefined);
        const taken = await store.acquireLease("dev", { owner: "service:api-1", ttlMs: MINUTE });
        expect(taken.owner).to.equal("service:api-1");
        expect(taken.token).to.be.greaterThan(first.token);
        expect(taken).not.to.have.property("jobId");
      });

      it("increases the fencing token on every acquisition, across release and force-release", async () => {
        const store = await open();
        const tokens: number[] = [];
        for (const owner of ["a", "a", "b", "c"]) {
          const lease = await store.acquireLease("dev", { owner, ttlMs: MINUTE });
          tokens.push(lease.token);
          await store.releaseLease("dev", owner, lease.token);
          expect(await store.getLease("dev")).to.equal(undefined);
        }
        const held = await store.acquireLease("dev", { owner: "d", ttlMs: MINUTE, jobId: "job_d" });
        tokens.push(held.token);
        expect(await store.forceReleaseLease("dev")).to.deep.equal(held);
        expect(await store.forceReleaseLease("dev")).to.equal(undefined);
        expect(await store.forceReleaseLease("never")).to.equal(undefined);
        tokens.push((await store.acquireLease("dev", { owner: "e", ttlMs: MINUTE })).token);
        expect(tokens).to.deep.equal([1, 2, 3, 4, 5, 6]);
        expect((await store.acquireLease("other", { owner: "a", ttlMs: MINUTE })).token).to.equal(1);
      });

      it("force-releases an expired but unreleased lease too", async () => {
        const store = await open();
        const lease = await store.acquireLease("dev", { owner: "a", ttlMs: MINUTE });
        h.clock += 2 * MINUTE;
        expect(await store.forceReleaseLease("dev")).to.deep.equal(lease);
      });

      it("renews our lease, and refuses a renew with a stale token once someone else took it", async () => {
        const store = await open();
        const mine = await store.acquireLease("dev", { owner: "cli:alice@host:1", ttlMs: MINUTE });
        h.clock += 50_000;
        expect((await store.renewLease("dev", mine.owner, mine.token, MINUTE)).expiresAt).to.equal("2025-03-01T12:01:50.000Z");
        h.clock += 2 * MINUTE; // expired, but nobody took it: still ours to renew
        expect((await store.renewLease("dev", mine.owner, mine.token, MINUTE)).owner).to.equal(mine.owner);
        h.clock += 2 * MINUTE;
        const theirs = await store.acquireLease("dev", { owner: "service:api-1", ttlMs: MINUTE, jobId: "job_s" });
        const err = await rejection(() => store.renewLease("dev", mine.owner, mine.token, MINUTE));
        expect(err).to.be.instanceOf(ConflictError);
        expect(err.message).to.match(/service:api-1/);
        expect(err.details).to.include({ holder: "service:api-1", jobId: "job_s" });
        // A released lease is not renewable either.
        await store.releaseLease("dev", theirs.owner, theirs.token);
        const released = await rejection(() => store.renewLease("dev", theirs.owner, theirs.token, MINUTE));
        expect(released).to.be.instanceOf(ConflictError);
        expect(released.details).to.deep.equal({ stack: "dev" });
        expect(await rejection(() => store.renewLease("nope", "a", 1, MINUTE))).to.be.instanceOf(ConflictError);
        expect(await rejection(() => store.renewLease("dev", theirs.owner, theirs.token, 0))).to.be.instanceOf(ConfigError);
      });

      it("ignores a release by anyone but the holder of the current token", async () => {
        const store = await open();
        const first = await store.acquireLease("dev", { owner: "a", ttlMs: MINUTE });
        h.clock += 2 * MINUTE;
        const second = await store.acquireLease("dev", { owner: "b", ttlMs: MINUTE });
        await store.releaseLease("dev", "a", first.token);
        await store.releaseLease("dev", "b", first.token);
        await store.releaseLease("nope", "b", first.token);
        expect(await store.getLease("dev")).to.deep.equal(second);
      });

      it("shares leases between two stores, like the CLI and the service (or two replicas)", async () => {
        const cli = await open();
        const service = await open();
        const lease = await cli.acquireLease("qa", { owner: "cli:bob@laptop:7", ttlMs: MINUTE, jobId: "job_c" });
        expect(await service.getLease("qa")).to.deep.equal(lease);
        const err = await rejection(() => service.acquireLease("qa", { owner: "service:api-1", ttlMs: MINUTE }));
        expect(err).to.be.instanceOf(ConflictError);
        expect(err.message).to.match(/cli:bob@laptop:7/);
        await cli.releaseLease("qa", lease.owner, lease.token);
        expect((await service.acquireLease("qa", { owner: "service:api-1", ttlMs: MINUTE })).token).to.equal(lease.token + 1);
      });
    });

    describe("crash recovery", () => {
      it("marks running jobs interrupted and blocks the stacks of interrupted mutations", async () => {
        const store = await open();
        const up = await store.createJob(job({ stack: "dev", operation: "up", status: "running" }));
        const preview = await store.createJob(job({ stack: "qa", operation: "preview", status: "running" }));
        const queued = await store.createJob(job({ stack: "dev" }));
        const done = await succeeded(store, { stack: "prod" });
        h.clock += 5000;

        const changed = await store.markRunningAsInterrupted("the service restarted");

        expect(changed.map((j) => j.id)).to.deep.equal([up.id, preview.id]);
        for (const id of [up.id, preview.id]) {
          expect(await store.getJob(id)).to.deep.include({
            status: "interrupted",
            finishedAt: new Date(h.clock).toISOString(),
            error: { code: "interrupted", message: "the service restarted" },
          });
        }
        expect(changed[0]).to.deep.equal(await store.getJob(up.id));
        expect((await store.getJob(queued.id))?.status).to.equal("queued");
        expect((await store.getJob(done.id))?.status).to.equal("succeeded");
        const dev = await store.getStackState("dev");
        expect(dev.blockedJobId).to.equal(up.id);
        expect(dev.blockedAt).to.equal(new Date(h.clock).toISOString());
        expect(dev.blockedReason).to.include("the service restarted");
        expect(await store.getStackState("qa")).to.deep.equal({ stack: "qa" });
        expect(await store.markRunningAsInterrupted("again")).to.deep.equal([]);
      });

      it("leaves a running job alone while another owner's live lease covers it", async () => {
        const store = await open();
        const cliJob = await store.createJob(job({ stack: "dev", source: "cli", status: "running" }));
        await store.acquireLease("dev", { owner: "cli:alice@host:1", ttlMs: MINUTE, jobId: cliJob.id });
        const ownJob = await store.createJob(job({ stack: "prod", status: "running" }));
        await store.acquireLease("prod", { owner: "service:api-1", ttlMs: MINUTE, jobId: ownJob.id });
        // A live lease of another owner for another job of the stack does not cover this one.
        const orphan = await store.createJob(job({ stack: "qa", status: "running" }));
        await store.acquireLease("qa", { owner: "cli:bob@host:2", ttlMs: MINUTE, jobId: "job_other" });

        const changed = await store.markRunningAsInterrupted("restart", { owner: "service:api-1" });

        expect(changed.map((j) => j.id)).to.deep.equal([ownJob.id, orphan.id]);
        expect((await store.getJob(cliJob.id))?.status).to.equal("running");
        h.clock += MINUTE;
        expect((await store.markRunningAsInterrupted("restart")).map((j) => j.id)).to.deep.equal([cliJob.id]);
      });

      it("applies a kept outcome before counting its job interrupted", async () => {
        const store = await open();
        const up = await store.createJob(job({ stack: "dev", status: "running" }));
        const other = await store.createJob(job({ stack: "qa", status: "running" }));
        const finishedAt = new Date(h.clock + 1000).toISOString();
        const file = await store.keepOutcome(up.id, { status: "succeeded", finishedAt, outputs: { pw: { value: "s3cret", secret: true } } });
        expect(file).to.be.a("string");
        expect(fs.existsSync(file as string)).to.equal(true);
        // A kept outcome for a job that has ended meanwhile is dropped, that ending kept.
        const ended = await store.createJob(job({ stack: "prod", status: "running" }));
        await store.keepOutcome(ended.id, { status: "succeeded" });
        await store.updateJob(ended.id, { status: "canceled" });

        const changed = await store.markRunningAsInterrupted("restart");

        expect(changed.map((j) => j.id)).to.deep.equal([other.id]);
        expect(await store.getJob(up.id)).to.deep.include({ status: "succeeded", finishedAt, outputs: { pw: { value: "[secret]", secret: true } } });
        expect((await store.getJob(ended.id))?.status).to.equal("canceled");
        expect(await store.getStackState("dev")).to.deep.equal({ stack: "dev" });
        expect(fs.existsSync(file as string)).to.equal(false);
        expect(await store.applyKeptOutcomes()).to.deep.equal([]);
      });
    });

    describe("stack state", () => {
      it("starts empty, sets flags, keeps the ones a patch leaves out and clears null ones", async () => {
        const store = await open();
        expect(await store.getStackState("dev")).to.deep.equal({ stack: "dev" });
        await store.setStackState("dev", { drifted: true, lastDriftAt: "2025-03-01T12:00:00.000Z" });
        expect(await store.setStackState("dev", { blockedReason: "job x interrupted" })).to.deep.equal({
          stack: "dev",
          drifted: true,
          lastDriftAt: "2025-03-01T12:00:00.000Z",
          blockedReason: "job x interrupted",
        });
        expect(await store.setStackState("dev", { blockedReason: null, drifted: false, lastDriftJobId: undefined })).to.deep.equal({
          stack: "dev",
          drifted: false,
          lastDriftAt: "2025-03-01T12:00:00.000Z",
        });
        expect(await store.getStackState("dev")).to.deep.equal({ stack: "dev", drifted: false, lastDriftAt: "2025-03-01T12:00:00.000Z" });
        expect(await rejection(() => store.setStackState("dev", { nope: 1 } as never))).to.be.instanceOf(ConfigError);
        expect(await store.setStackState("new", {})).to.deep.equal({ stack: "new" });
      });
    });

    describe("event retention", () => {
      it("deletes the events of jobs finished before the retention, keeping the jobs and every unfinished job's events", async () => {
        const store = await open();
        const old = await succeeded(store);
        await store.appendEvent(old.id, { type: "line", data: "old" });
        const waiting = await store.createJob(job({ status: "awaiting_approval", approvalsRequired: 1 }));
        await store.appendEvent(waiting.id, { type: "line", data: "waiting" });
        h.clock += 31 * DAY;
        const recent = await succeeded(store);
        await store.appendEvent(recent.id, { type: "line", data: "recent" });
        expect(await store.pruneEvents(30 * DAY)).to.equal(1);
        expect(await store.listEvents(old.id)).to.deep.equal([]);
        expect((await store.getJob(old.id))?.status).to.equal("succeeded");
        expect((await store.listEvents(waiting.id)).map((e) => e.data)).to.deep.equal(["waiting"]);
        expect((await store.listEvents(recent.id)).map((e) => e.data)).to.deep.equal(["recent"]);
      });
    });

    describe("audit trail", () => {
      it("appends records with the store's id and time, lists them newest first by window and stack, pages by id", async () => {
        const store = await open();
        const a = await store.appendAudit({ actor: "alice", action: "POST /v1/stacks/:stack/deployments", stack: "dev", jobId: "job_1", requestId: "r1", address: "10.0.0.1", result: "allowed", status: 202, details: { version: "1.0.0" } });
        h.clock += 1000;
        const b = await store.appendAudit({ action: "GET /v1/jobs", result: "denied", status: 401 });
        h.clock += 1000;
        const c = await store.appendAudit({ actor: "bob", action: "cli up", stack: "prod", result: "failed", details: { exit: 1 } });
        expect(a).to.deep.equal({
          id: a.id,
          time: "2025-03-01T12:00:00.000Z",
          actor: "alice",
          action: "POST /v1/stacks/:stack/deployments",
          stack: "dev",
          jobId: "job_1",
          requestId: "r1",
          address: "10.0.0.1",
          result: "allowed",
          status: 202,
          details: { version: "1.0.0" },
        });
        expect(a.id).to.match(/^aud_[0-9a-z]{26}$/);
        expect(b).to.deep.equal({ id: b.id, time: "2025-03-01T12:00:01.000Z", action: "GET /v1/jobs", result: "denied", status: 401 });
        const ids = async (q: Parameters<Store["listAudit"]>[0]) => (await store.listAudit(q)).map((e) => e.id);
        expect(await store.listAudit()).to.deep.equal([c, b, a]);
        expect(await ids({ from: "2025-03-01T12:00:01.000Z" })).to.deep.equal([c.id, b.id]);
        expect(await ids({ to: "2025-03-01T12:00:01.000Z" })).to.deep.equal([a.id]);
        expect(await ids({ stack: "dev" })).to.deep.equal([a.id]);
        expect(await ids({ stack: ["dev", "prod"] })).to.deep.equal([c.id, a.id]);
        expect(await ids({ stack: [] })).to.deep.equal([]);
        expect(await ids({ limit: 2 })).to.deep.equal([c.id, b.id]);
        expect(await ids({ limit: 2, before: b.id })).to.deep.equal([a.id]);
        expect(await rejection(() => store.listAudit({ limit: 0 }))).to.be.instanceOf(ConfigError);
        expect(await rejection(() => store.appendAudit({ action: "x", result: "ok" as never }))).to.be.instanceOf(ConfigError);
        expect(await rejection(() => store.appendAudit({ action: "", result: "allowed" }))).to.be.instanceOf(ConfigError);
      });

      it("cuts long fields, and keeps cut details as a truncation marker", async () => {
        const store = await open();
        const entry = await store.appendAudit({ actor: "a".repeat(500), action: "x".repeat(400), result: "allowed", details: { blob: "y".repeat(30_000) } });
        expect(entry.actor).to.equal("a".repeat(200) + "…");
        expect(entry.action).to.equal("x".repeat(300) + "…");
        expect((await store.listAudit())[0]).to.deep.include({ actor: entry.actor, action: entry.action, details: { truncated: true } });
      });

      it("deletes records older than the retention, and only those; never fewer than a day", async () => {
        h.clock = Date.now() - 100 * DAY;
        const store = await open();
        await store.appendAudit({ action: "POST /old", result: "denied", status: 401 });
        h.clock = Date.now();
        await store.appendAudit({ action: "POST /new", result: "allowed", status: 202 });
        expect(await rejection(() => store.pruneAudit(DAY / 2))).to.match(/at least a day/);
        expect(await store.pruneAudit(90 * DAY)).to.equal(1);
        expect((await store.listAudit()).map((e) => e.action)).to.deep.equal(["POST /new"]);
      });

      it("refuses an UPDATE and the DELETE of a recent record, even in SQL outside the store", async () => {
        const store = await open();
        h.clock = Date.now();
        const entry = await store.appendAudit({ actor: "a", action: "POST /x", result: "allowed", status: 200 });
        expect(await rejection(() => h.rawExec("UPDATE audit SET actor = 'b' WHERE id = ?", [entry.id]))).to.match(/append-only/);
        expect(await rejection(() => h.rawExec("DELETE FROM audit WHERE id = ?", [entry.id]))).to.match(/younger than a day/);
        expect((await store.listAudit())[0]).to.deep.equal(entry);
      });
    });

    describe("persistence", () => {
      it("keeps jobs, events, lease tokens and stack flags across closing and reopening", async () => {
        const first = await open();
        const created = await first.createJob(job({ version: "1.2.3", config: { "app:version": "1.2.3" } }));
        await first.appendEvent(created.id, { type: "line", data: "hello" });
        const lease = await first.acquireLease("dev", { owner: "a", ttlMs: MINUTE });
        await first.releaseLease("dev", "a", lease.token);
        await first.setStackState("dev", { drifted: true });
        await first.close();

        const second = await open();
        expect(await second.getJob(created.id)).to.deep.include({ version: "1.2.3", config: { "app:version": "1.2.3" }, lastEventSeq: 1 });
        expect((await second.listEvents(created.id)).map((e) => e.data)).to.deep.equal(["hello"]);
        expect((await second.appendEvent(created.id, { type: "line" })).seq).to.equal(2);
        expect((await second.acquireLease("dev", { owner: "b", ttlMs: MINUTE })).token).to.equal(lease.token + 1);
        expect((await second.getStackState("dev")).drifted).to.equal(true);
      });

      it("answers ping while open, and closes", async () => {
        const store = await open();
        await store.ping();
        await store.close();
        expect(await rejection(() => store.ping())).to.be.instanceOf(Error);
      });
    });
  });
}

describe("store (SQLite only)", () => {
  const h = harness("sqlite");
  setUp("sqlite", h);

  it("lets exactly one of several processes racing for a free lease win", async function () {
    this.slow(5000);
    await h.open(); // create the schema before the racers start
    // Each racer loads the store, says "ready", and tries once the parent says "go" to all of them.
    const script = `
      const { SqliteStore } = require(${JSON.stringify(path.resolve(__dirname, "../../automation/store"))});
      const store = SqliteStore.open(${JSON.stringify(storeFile(h.dir))});
      process.stdout.write("ready\\n");
      process.stdin.once("data", () => {
        try { store.acquireLease("race", { owner: "p" + process.pid, ttlMs: 60000 }); process.stdout.write("won"); }
        catch (e) { process.stdout.write(e.name); }
        store.close();
        process.exit(0);
      });`;
    const racers = Array.from({ length: 3 }, () => {
      const child = spawn(process.execPath, ["-r", path.resolve(__dirname, "../../automation/register.js"), "-e", script], {
        stdio: ["pipe", "pipe", "inherit"],
      });
      let out = "";
      const ready = new Promise<void>((resolve) => {
        child.stdout.on("data", (chunk) => {
          out += chunk;
          if (out.includes("ready\n")) resolve();
        });
      });
      const done = new Promise<string>((resolve, reject) => {
        child.on("error", reject);
        child.on("close", () => resolve(out.replace("ready\n", "")));
      });
      return { child, ready, done };
    });
    await Promise.all(racers.map((r) => r.ready));
    for (const r of racers) r.child.stdin.write("go\n");
    const results = await Promise.all(racers.map((r) => r.done));

    expect(results.filter((r) => r === "won")).to.have.length(1);
    expect(results.filter((r) => r === "ConflictError")).to.have.length(racers.length - 1);
  });

  it("stores secret outputs masked in the file itself", () => {
    const store = SqliteStore.open(storeFile(h.dir));
    const created = store.createJob(job({ outputs: { dbPassword: { value: "hunter2", secret: true } } }));
    store.close();
    const raw = new Database(storeFile(h.dir), { readonly: true });
    try {
      const row = raw.prepare("SELECT outputs FROM jobs WHERE id = ?").get(created.id) as { outputs: string };
      expect(JSON.parse(row.outputs).dbPassword).to.deep.equal({ value: "[secret]", secret: true });
    } finally {
      raw.close();
    }
  });

  it("records the schema version and refuses a database from a newer deployer", async () => {
    await (await h.open()).close();
    const raw = new Database(storeFile(h.dir));
    expect(raw.pragma("user_version", { simple: true })).to.equal(SCHEMA_VERSION);
    expect(raw.pragma("journal_mode", { simple: true })).to.equal("wal");
    raw.pragma(`user_version = ${SCHEMA_VERSION + 1}`);
    raw.close();
    expect(() => SqliteStore.open(storeFile(h.dir))).to.throw(/newer than this deployer knows/);
  });

  it("keeps no outcome for an in-memory database", async () => {
    const store = asyncStore(SqliteStore.open(":memory:"));
    try {
      expect(await store.keepOutcome(newJobId(), { status: "succeeded" })).to.equal(undefined);
    } finally {
      await store.close();
    }
  });

  it("openStore creates the data directory and deployer.db in it", async () => {
    const nested = path.join(h.dir, "a", "b");
    const store = openStore(nested);
    try {
      await store.ping();
      expect(fs.existsSync(path.join(nested, "deployer.db"))).to.equal(true);
    } finally {
      await store.close();
    }
  });

  it("openStore creates the data directory 0700 and the database files 0600", async () => {
    const nested = path.join(h.dir, "data");
    const store = openStore(nested);
    try {
      await store.createJob(job());
      expect(fs.statSync(nested).mode & 0o777).to.equal(0o700);
      for (const f of ["deployer.db", "deployer.db-wal", "deployer.db-shm"]) {
        expect(fs.statSync(path.join(nested, f)).mode & 0o777, f).to.equal(0o600);
      }
    } finally {
      await store.close();
    }
  });

  it("openStore makes an existing world-readable database private", async () => {
    await openStore(h.dir).close();
    fs.chmodSync(storeFile(h.dir), 0o644);
    await openStore(h.dir).close();
    expect(fs.statSync(storeFile(h.dir)).mode & 0o777).to.equal(0o600);
  });

  for (const [mode, who] of [[0o777, "everyone"], [0o770, "its group"]] as const) {
    it(`openStore refuses a data directory writable by ${who}, creating nothing in it`, () => {
      const dir = path.join(h.dir, "open");
      fs.mkdirSync(dir);
      fs.chmodSync(dir, mode);
      expect(() => openStore(dir)).to.throw(ConfigError, new RegExp(`${dir}.*writable by ${who}.*chmod 700`));
      expect(fs.readdirSync(dir)).to.deep.equal([]);
    });
  }
});

describe("PostgreSQL test harness", () => {
  const missing = { DEPLOYER_TEST_PG_BIN: "/nonexistent/bin" };
  it("skips a PostgreSQL suite locally, with one line, when there is no PostgreSQL", () => {
    const lines: string[] = [];
    let skipped = false;
    requirePostgresOrSkip({ skip: () => ((skipped = true), undefined as never) }, missing, (line) => lines.push(line));
    expect(skipped).to.equal(true);
    expect(lines).to.have.length(1);
    expect(lines[0]).to.match(/PostgreSQL is not installed.*DEPLOYER_TEST_DATABASE_URL/);
  });

  it("fails it in CI instead", () => {
    expect(() => requirePostgresOrSkip({ skip: () => undefined as never }, { ...missing, CI: "true" }, () => undefined)).to.throw(/CI runs every PostgreSQL suite/);
  });

  it("runs it against a given server without local binaries", () => {
    let skipped = false;
    requirePostgresOrSkip({ skip: () => ((skipped = true), undefined as never) }, { ...missing, CI: "true", DEPLOYER_TEST_DATABASE_URL: "postgresql://u@db.example/x" });
    expect(skipped).to.equal(false);
  });
});

describe("store (PostgreSQL only)", () => {
  const h = harness("postgres");
  setUp("postgres", h);
  const db = () => h.db as TestDatabase;

  it("follows SQLite's schema version step for step", () => {
    expect(PG_SCHEMA_VERSION).to.equal(SCHEMA_VERSION);
  });

  it("migrates once when several replicas open a new database at the same moment", async () => {
    const stores = await Promise.all(Array.from({ length: 5 }, () => h.open()));
    const versions = await sql(db(), async (c) => (await c.query("SELECT version FROM schema_migrations ORDER BY version")).rows.map((r) => r.version as number));
    expect(versions).to.deep.equal(Array.from({ length: PG_SCHEMA_VERSION }, (_, i) => i + 1));
    const created = await stores[0].createJob(job());
    expect((await stores[4].getJob(created.id))?.id).to.equal(created.id);
    await h.open(); // and a later open finds nothing to do
    expect(await sql(db(), async (c) => (await c.query("SELECT count(*)::int AS n FROM schema_migrations")).rows[0].n)).to.equal(PG_SCHEMA_VERSION);
  });

  it("keeps no outcome without an outcomes directory", async () => {
    const store = await openPostgresStore(db().url);
    h.opened.push(store);
    const created = await store.createJob(job({ status: "running" }));
    expect(await store.keepOutcome(created.id, { status: "succeeded" })).to.equal(undefined);
    expect(await store.applyKeptOutcomes()).to.deep.equal([]);
  });

  it("refuses a database from a newer deployer", async () => {
    await (await h.open()).close();
    await sql(db(), (c) => c.query("INSERT INTO schema_migrations (version, applied_at) VALUES ($1, 'later')", [PG_SCHEMA_VERSION + 1]));
    const err = await rejection(() => h.open());
    expect(err).to.be.instanceOf(ConfigError);
    expect(err.message).to.match(/newer than this deployer knows/);
  });

  it("gives a lease raced for by two replicas to exactly one, the token increasing from round to round", async function () {
    this.slow(5000);
    const replicas = [await h.open(), await h.open()];
    const tokens: number[] = [];
    for (let round = 0; round < 8; round++) {
      // Round 0 races the first INSERT of the stack's row; the others race the UPDATE of a released one.
      const attempts = Array.from({ length: 8 }, (_, i) => replicas[i % 2].acquireLease("race", { owner: `replica-${i % 2}:worker-${i}`, ttlMs: MINUTE, jobId: `job_${round}_${i}` }));
      const results = await Promise.allSettled(attempts);
      const won = results.filter((r): r is PromiseFulfilledResult<Awaited<(typeof attempts)[number]>> => r.status === "fulfilled");
      const lost = results.filter((r): r is PromiseRejectedResult => r.status === "rejected");
      expect(won, `round ${round}`).to.have.length(1);
      expect(lost.every((r) => r.reason instanceof ConflictError), String(lost.map((r) => r.reason))).to.equal(true);
      const lease = won[0].value;
      expect(await replicas[1 - (round % 2)].getLease("race")).to.deep.equal(lease);
      tokens.push(lease.token);
      await replicas[round % 2].releaseLease("race", lease.owner, lease.token);
    }
    expect(tokens).to.deep.equal(tokens.map((_, i) => i + 1));
  });

  it("lets exactly one of two replicas move a job out of queued (ifStatus)", async () => {
    const replicas = [await h.open(), await h.open()];
    for (let round = 0; round < 5; round++) {
      const queued = await replicas[0].createJob(job());
      const claims = Array.from({ length: 6 }, (_, i) =>
        replicas[i % 2].updateJob(queued.id, { status: i === 5 ? "canceled" : "running", startedAt: new Date(h.clock).toISOString(), message: `claimed by ${i}` }, { ifStatus: "queued" }),
      );
      const results = await Promise.allSettled(claims);
      const won = results.filter((r) => r.status === "fulfilled") as PromiseFulfilledResult<Job>[];
      expect(won).to.have.length(1);
      for (const r of results) {
        if (r.status === "rejected") {
          expect(r.reason).to.be.instanceOf(ConflictError);
          expect(r.reason.details).to.deep.equal({ jobId: queued.id, status: won[0].value.status });
        }
      }
      expect(await replicas[1].getJob(queued.id)).to.deep.equal(won[0].value);
    }
  });

  it("keeps every field that two replicas write at once to one job (a write that finds the row changed since its read reads again)", async () => {
    const replicas = [await h.open(), await h.open()];
    const patches: JobPatch[] = [
      { message: "m" },
      { reason: "r" },
      { version: "2.0.0" },
      { imageDigest: "sha256:" + "a".repeat(64) },
      { changes: { create: 1, update: 0, delete: 0, replace: 0, same: 2 } },
      { outputs: { url: { value: "https://x", secret: false } } },
      { config: { "app:version": "2.0.0" } },
      { rollbackTo: "job_x" },
    ];
    for (let round = 0; round < 5; round++) {
      const created = await replicas[0].createJob(job({ status: "running" }));
      // Events bump the row's seq meanwhile: not a change of its fields, and never lost either.
      await Promise.all([
        ...patches.map((patch, i) => replicas[i % 2].updateJob(created.id, patch)),
        ...Array.from({ length: 4 }, (_, i) => replicas[i % 2].appendEvent(created.id, { type: "line", data: i })),
      ]);
      const stored = await replicas[1].getJob(created.id);
      for (const patch of patches) expect(stored, JSON.stringify(patch)).to.deep.include(patch);
      expect(stored?.lastEventSeq).to.equal(4);
    }
  });

  it("checks an update against the job as it is now, not as this replica last wrote it", async () => {
    const [a, b] = [await h.open(), await h.open()];
    const created = await a.createJob(job());
    await b.updateJob(created.id, { status: "running", message: "claimed by b" }, { ifStatus: "queued" });
    // a last wrote it queued, b running: neither takes that for the truth, either way.
    const done = await a.updateJob(created.id, { status: "succeeded", reason: "r" }, { ifStatus: "running" });
    expect(done).to.deep.include({ status: "succeeded", message: "claimed by b", reason: "r" });
    const err = await rejection(() => b.updateJob(created.id, { status: "failed" }, { ifStatus: "running" }));
    expect(err).to.be.instanceOf(ConflictError);
    expect((err as ConflictError).details).to.deep.equal({ jobId: created.id, status: "succeeded" });
    expect(await b.getJob(created.id)).to.deep.equal(done);
  });

  it("numbers events appended at once by two replicas without a gap or a repeat", async () => {
    const replicas = [await h.open({ maxEventsPerJob: 10 }), await h.open({ maxEventsPerJob: 10 })];
    const created = await replicas[0].createJob(job({ status: "running" }));
    const appended = await Promise.all(Array.from({ length: 30 }, (_, i) => replicas[i % 2].appendEvent(created.id, { type: "line", data: i })));
    expect(appended.map((a) => a.seq).sort((a, b) => a - b)).to.deep.equal(Array.from({ length: 30 }, (_, i) => i + 1));
    const events = await replicas[1].listEvents(created.id);
    expect(events.map((e) => e.seq)).to.deep.equal([21, 22, 23, 24, 25, 26, 27, 28, 29, 30]);
    expect(events[0]).to.deep.include({ type: ELIDED_EVENT_TYPE, data: { count: 21 } });
  });

  it("records one decision per principal when the same approver decides twice at once", async () => {
    const replicas = [await h.open(), await h.open()];
    const created = await replicas[0].createJob(job({ status: "awaiting_approval", approvalsRequired: 2 }));
    const results = await Promise.allSettled([
      replicas[0].recordDecision(created.id, { by: "erin", decision: "approved" }),
      replicas[1].recordDecision(created.id, { by: "erin", decision: "approved" }),
    ]);
    expect(results.filter((r) => r.status === "fulfilled")).to.have.length(1);
    const lost = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
    expect(lost?.reason).to.be.instanceOf(ConflictError);
    expect(lost?.reason.details).to.deep.equal({ jobId: created.id, by: "erin", decision: "approved" });
    expect(await replicas[1].listDecisions(created.id)).to.have.length(1);
  });

  it("refuses UPDATE, DELETE of recent records and TRUNCATE of the audit trail in raw SQL", async () => {
    const store = await h.open({ now: Date.now });
    const entry = await store.appendAudit({ actor: "a", action: "POST /x", result: "allowed", status: 200 });
    await sql(db(), async (c) => {
      expect(await rejection(() => c.query("UPDATE audit SET actor = 'b'"))).to.match(/append-only/);
      expect(await rejection(() => c.query("UPDATE audit SET time = '2000-01-01T00:00:00.000Z' WHERE id = $1", [entry.id]))).to.match(/append-only/);
      expect(await rejection(() => c.query("DELETE FROM audit"))).to.match(/younger than a day/);
      expect(await rejection(() => c.query("TRUNCATE audit"))).to.match(/append-only/);
    });
    expect(await store.listAudit()).to.deep.equal([entry]);
  });

  it("says the store is unavailable, without the password, when the server cannot be reached at open", async () => {
    for (const url of ["postgresql://deployer:Hunter2-Secret@127.0.0.1:1/deployer", `postgresql://deployer:Hunter2-Secret@/deployer?host=${encodeURIComponent(path.join(h.dir, "no-such-socket-dir"))}`]) {
      const err = await rejection(() => openPostgresStore(url, { connectTimeoutMs: 2000 }));
      expect(err, url).to.be.instanceOf(StoreUnavailableError);
      expect(isStoreUnavailable(err)).to.equal(true);
      expect(err.message).to.match(/PostgreSQL store at postgresql:\/\/deployer@.* is unavailable/);
      expect(err.message).not.to.include("Hunter2-Secret");
      expect(JSON.stringify(err)).not.to.include("Hunter2-Secret");
    }
    expect(await rejection(() => openPostgresStore("mysql://a:b@c/d"))).to.be.instanceOf(ConfigError);
  });

  it("says the store is unavailable when the server goes away after open, and recovers when it is back", async function () {
    this.slow(5000);
    // A TCP proxy in front of the server stands for the network or the server: closing it cuts every connection.
    const sockets = new Set<net.Socket>();
    let accepting = true;
    const proxy = net.createServer((client) => {
      if (!accepting) return client.destroy();
      const upstream = net.connect(db().address as net.NetConnectOpts);
      for (const s of [client, upstream]) {
        sockets.add(s);
        s.on("close", () => sockets.delete(s));
        s.on("error", () => undefined);
      }
      client.pipe(upstream).pipe(client);
    });
    await new Promise<void>((resolve) => proxy.listen(0, "127.0.0.1", resolve));
    const { port } = proxy.address() as net.AddressInfo;
    try {
      const store = await openPostgresStore(`postgresql://postgres:Hunter2-Secret@127.0.0.1:${port}/${db().name}`, { connectTimeoutMs: 2000 });
      h.opened.push(store);
      const created = await store.createJob(job());
      accepting = false;
      for (const s of sockets) s.destroy();
      for (const attempt of [() => store.getJob(created.id), () => store.updateJob(created.id, { status: "running" }), () => store.ping()]) {
        const err = await rejection(attempt);
        expect(err).to.be.instanceOf(StoreUnavailableError);
        expect(err.message).not.to.include("Hunter2-Secret");
      }
      accepting = true;
      expect((await store.getJob(created.id))?.status).to.equal("queued");
    } finally {
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => proxy.close(resolve));
    }
  });

  it("says the store is unavailable when an administrator ends its connection mid-transaction (57P01)", async () => {
    const store = await h.open();
    const created = await store.createJob(job());
    const blocker = new Client({ connectionString: db().url });
    await blocker.connect();
    try {
      await blocker.query("BEGIN");
      await blocker.query("SELECT * FROM jobs WHERE id = $1 FOR UPDATE", [created.id]);
      const waiting = rejection(() => store.updateJob(created.id, { status: "running" }));
      // Wait until the store's statement waits on the row lock, then end that backend.
      for (let i = 0; i < 100; i++) {
        const { rowCount } = await blocker.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()");
        if (rowCount) break;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      const err = await waiting;
      expect(err).to.be.instanceOf(StoreUnavailableError);
      expect(err.message).to.match(/57P01|terminat/);
      await blocker.query("ROLLBACK");
    } finally {
      await blocker.end();
    }
    // The pool replaces the dead connection.
    expect((await store.updateJob(created.id, { status: "running" })).status).to.equal("running");
  });
});
