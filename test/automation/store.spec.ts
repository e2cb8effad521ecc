import { expect } from "chai";
import Database from "better-sqlite3";
import { spawn } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { ConfigError, ConflictError, NotFoundError } from "../../automation/errors";
import {
  ELIDED_EVENT_TYPE,
  MAX_LIST_LIMIT,
  newJobId,
  openStore,
  SCHEMA_VERSION,
  SqliteStore,
  storeFile,
  type Job,
  type NewJob,
  type SqliteStoreOptions,
} from "../../automation/store";

const T0 = Date.parse("2025-03-01T12:00:00.000Z");
const MINUTE = 60_000;

describe("store (SQLite)", () => {
  let dir: string;
  let clock: number;
  const opened: SqliteStore[] = [];

  function open(options: SqliteStoreOptions = {}): SqliteStore {
    const store = SqliteStore.open(storeFile(dir), { now: () => clock, ...options });
    opened.push(store);
    return store;
  }

  function job(overrides: Partial<NewJob> = {}): NewJob {
    return { stack: "dev", operation: "up", requestedBy: "alice", source: "api", engine: "offline", ...overrides };
  }

  /** Creates a job that ran and succeeded, finishing `finishedAfterMs` after the clock's current time. */
  function succeeded(store: SqliteStore, overrides: Partial<NewJob> = {}, finishedAfterMs = 1000): Job {
    const created = store.createJob(job(overrides));
    clock += finishedAfterMs;
    return store.updateJob(created.id, { status: "succeeded", finishedAt: new Date(clock).toISOString() });
  }

  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "deployer-store-"));
    clock = T0;
  });

  afterEach(() => {
    for (const s of opened.splice(0)) {
      try {
        s.close();
      } catch {
        // already closed by the test
      }
    }
    fs.rmSync(dir, { recursive: true, force: true });
  });

  describe("jobs", () => {
    it("creates a queued job with a job_ id, createdAt from the clock and defaults", () => {
      const store = open();
      const created = store.createJob(job({ version: "1.4.2", target: ["urn:a"] }));
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
      expect(store.getJob(created.id)).to.deep.equal(created);
    });

    it("returns undefined for an unknown job", () => {
      expect(open().getJob("job_nope")).to.equal(undefined);
    });

    it("updates a job, keeps fields the patch leaves out and clears fields patched with null", () => {
      const store = open();
      const created = store.createJob(job({ message: "first", reason: "because" }));
      const changes = { create: 2, update: 1, delete: 0, replace: 0, same: 7 };
      const updated = store.updateJob(created.id, {
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
      expect(store.updateJob(created.id, { error: null })).not.to.have.property("error");
    });

    it("throws NotFoundError when updating an unknown job", () => {
      expect(() => open().updateJob("job_nope", { status: "running" })).to.throw(NotFoundError);
    });

    it("refuses an update whose ifStatus no longer holds, and applies it when it does", () => {
      const store = open();
      const created = store.createJob(job());
      store.updateJob(created.id, { status: "canceled" });
      expect(() => store.updateJob(created.id, { status: "running" }, { ifStatus: "queued" }))
        .to.throw(ConflictError)
        .with.property("details")
        .that.deep.equals({ jobId: created.id, status: "canceled" });
      expect(store.getJob(created.id)?.status).to.equal("canceled");
      const other = store.createJob(job());
      expect(store.updateJob(other.id, { status: "running" }, { ifStatus: ["queued", "awaiting_approval"] }).status).to.equal(
        "running",
      );
    });

    it("refuses read-only fields and unknown values in a patch", () => {
      const store = open();
      const created = store.createJob(job());
      expect(() => store.updateJob(created.id, { stack: "prod" } as never)).to.throw(ConfigError);
      expect(() => store.updateJob(created.id, { status: "done" } as never)).to.throw(ConfigError);
      expect(() => store.updateJob(created.id, { status: null } as never)).to.throw(ConfigError);
      expect(() => store.createJob(job({ operation: "deploy" } as never))).to.throw(ConfigError);
    });

    it("lists jobs newest first, filtered by stack, one or many statuses and operation", () => {
      const store = open();
      const a = store.createJob(job({ stack: "dev", operation: "up" }));
      const b = store.createJob(job({ stack: "prod", operation: "preview" }));
      const c = store.createJob(job({ stack: "dev", operation: "drift" }));
      store.updateJob(c.id, { status: "running" });
      const d = store.createJob(job({ stack: "dev", operation: "up" }));
      store.updateJob(d.id, { status: "failed" });

      expect(store.listJobs().map((j) => j.id)).to.deep.equal([d.id, c.id, b.id, a.id]);
      expect(store.listJobs({ stack: "dev" }).map((j) => j.id)).to.deep.equal([d.id, c.id, a.id]);
      expect(store.listJobs({ status: "queued" }).map((j) => j.id)).to.deep.equal([b.id, a.id]);
      expect(store.listJobs({ status: ["running", "failed"] }).map((j) => j.id)).to.deep.equal([d.id, c.id]);
      expect(store.listJobs({ stack: "dev", operation: "up" }).map((j) => j.id)).to.deep.equal([d.id, a.id]);
      expect(store.listJobs({ status: [] })).to.deep.equal([]);
    });

    it("pages with the before cursor, without gaps or repeats, even for jobs created in one millisecond", () => {
      const store = open();
      const ids = Array.from({ length: 7 }, () => store.createJob(job()).id);
      const seen: string[] = [];
      let before: string | undefined;
      for (;;) {
        const page = store.listJobs({ limit: 3, before });
        if (page.length === 0) break;
        seen.push(...page.map((j) => j.id));
        before = page[page.length - 1].id;
      }
      expect(seen).to.deep.equal([...ids].reverse());
    });

    it("lists 50 jobs by default and never more than 500", () => {
      const store = open();
      for (let i = 0; i < MAX_LIST_LIMIT + 5; i++) store.createJob(job());
      expect(store.listJobs()).to.have.length(50);
      expect(store.listJobs({ limit: 10_000 })).to.have.length(MAX_LIST_LIMIT);
      expect(() => store.listJobs({ limit: 0 })).to.throw(ConfigError);
    });

    it("makes ids that strictly increase, also within one millisecond and when the clock steps back", () => {
      const ids = [newJobId(T0), newJobId(T0), newJobId(T0 - 5000), newJobId(T0 + 1), newJobId(T0 + 1)];
      expect(new Set(ids).size).to.equal(ids.length);
      expect([...ids].sort()).to.deep.equal(ids);
    });

    it("finds a job by idempotency key and refuses a second job with the same key", () => {
      const store = open();
      const first = store.createJob(job({ idempotencyKey: "k-1", requestHash: "h1" }));
      expect(store.findByIdempotencyKey("k-1")?.id).to.equal(first.id);
      expect(store.findByIdempotencyKey("k-2")).to.equal(undefined);
      expect(() => store.createJob(job({ idempotencyKey: "k-1", requestHash: "h2" })))
        .to.throw(ConflictError)
        .with.property("details")
        .that.deep.equals({ jobId: first.id });
      expect(store.listJobs()).to.have.length(1);
    });

    it("returns queued jobs oldest first, for all stacks or one", () => {
      const store = open();
      const a = store.createJob(job({ stack: "dev" }));
      const b = store.createJob(job({ stack: "prod" }));
      const c = store.createJob(job({ stack: "dev" }));
      const d = store.createJob(job({ stack: "dev", status: "awaiting_approval", approvalsRequired: 2 }));
      store.updateJob(a.id, { status: "running" });
      expect(store.queuedJobs().map((j) => j.id)).to.deep.equal([b.id, c.id]);
      expect(store.queuedJobs({ stack: "dev" }).map((j) => j.id)).to.deep.equal([c.id]);
      expect(store.getJob(d.id)?.approvalsRequired).to.equal(2);
    });
  });

  describe("deployments", () => {
    it("lists succeeded up and rollback jobs of the stack, newest to take effect first", () => {
      const store = open();
      const d1 = succeeded(store, { version: "1.0.0" });
      succeeded(store, { operation: "preview" });
      succeeded(store, { stack: "prod" });
      const failed = store.createJob(job({ version: "1.1.0" }));
      store.updateJob(failed.id, { status: "failed" });
      // d2 is created before d3 but finishes after it (it waited for approval).
      const d2 = store.createJob(job({ version: "2.0.0" }));
      const d3 = succeeded(store, { operation: "rollback", version: "1.0.0", rollbackTo: d1.id });
      clock += 1000;
      store.updateJob(d2.id, { status: "succeeded", finishedAt: new Date(clock).toISOString() });

      expect(store.deployments("dev").map((j) => j.id)).to.deep.equal([d2.id, d3.id, d1.id]);
      expect(store.deployments("dev", { limit: 1 }).map((j) => j.id)).to.deep.equal([d2.id]);
    });

    it("finds the last good deployment, skipping deployments that were rolled back", () => {
      const store = open();
      const d1 = succeeded(store, { version: "1.0.0" });
      const d2 = succeeded(store, { version: "2.0.0" });
      expect(store.lastGoodDeployment("dev")?.id).to.equal(d2.id);
      expect(store.lastGoodDeployment("prod")).to.equal(undefined);

      const r3 = succeeded(store, { operation: "rollback", version: "1.0.0", rollbackOf: d2.id, rollbackTo: d1.id });
      store.updateJob(d2.id, { rolledBackBy: r3.id });
      expect(store.lastGoodDeployment("dev")?.id).to.equal(r3.id);
      expect(store.lastGoodDeployment("dev", { beforeJobId: r3.id })?.id).to.equal(d1.id);
      expect(store.lastGoodDeployment("dev", { beforeJobId: r3.id, includeRolledBack: true })?.id).to.equal(d2.id);
    });

    it("finds the last good deployment before a job, or excluding one", () => {
      const store = open();
      const d1 = succeeded(store, { version: "1.0.0" });
      const d2 = succeeded(store, { version: "2.0.0" });
      const running = store.createJob(job({ version: "3.0.0", status: "running" }));
      expect(store.lastGoodDeployment("dev", { beforeJobId: d2.id })?.id).to.equal(d1.id);
      expect(store.lastGoodDeployment("dev", { excludeJobId: d2.id })?.id).to.equal(d1.id);
      expect(store.lastGoodDeployment("dev", { beforeJobId: running.id })?.id).to.equal(d2.id);
      expect(store.lastGoodDeployment("dev", { beforeJobId: d1.id })).to.equal(undefined);
      expect(() => store.lastGoodDeployment("dev", { beforeJobId: "job_nope" })).to.throw(NotFoundError);
    });
  });

  describe("secret outputs", () => {
    it("never stores a secret output's value in clear, on create or on update", () => {
      const store = open();
      const created = store.createJob(
        job({ outputs: { dbPassword: { value: "hunter2-create", secret: true }, url: { value: "http://x", secret: false } } }),
      );
      store.updateJob(created.id, {
        outputs: {
          dbPassword: { value: "hunter2-update", secret: true },
          url: { value: "http://lb.example", secret: false },
        },
      });

      expect(store.getJob(created.id)?.outputs).to.deep.equal({
        dbPassword: { value: "[secret]", secret: true },
        url: { value: "http://lb.example", secret: false },
      });
      store.close();
      const raw = new Database(storeFile(dir), { readonly: true });
      try {
        const row = raw.prepare("SELECT * FROM jobs WHERE id = ?").get(created.id) as Record<string, unknown>;
        expect(JSON.stringify(row)).not.to.include("hunter2");
        expect(JSON.parse(row.outputs as string).dbPassword).to.deep.equal({ value: "[secret]", secret: true });
      } finally {
        raw.close();
      }
    });
  });

  describe("job events", () => {
    it("numbers events from 1 in order and moves the job's lastEventSeq", () => {
      const store = open();
      const created = store.createJob(job());
      const first = store.appendEvent(created.id, { type: "started", data: { operation: "up" } });
      clock += 10;
      const second = store.appendEvent(created.id, { type: "step", data: { urn: "urn:a", op: "create" } });
      expect(first).to.deep.equal({ seq: 1, time: "2025-03-01T12:00:00.000Z" });
      expect(second.seq).to.equal(2);
      expect(store.getJob(created.id)?.lastEventSeq).to.equal(2);
      expect(store.listEvents(created.id)).to.deep.equal([
        { seq: 1, time: "2025-03-01T12:00:00.000Z", type: "started", data: { operation: "up" } },
        { seq: 2, time: "2025-03-01T12:00:00.010Z", type: "step", data: { urn: "urn:a", op: "create" } },
      ]);
    });

    it("keeps each job's seq apart", () => {
      const store = open();
      const a = store.createJob(job());
      const b = store.createJob(job());
      store.appendEvent(a.id, { type: "x" });
      store.appendEvent(a.id, { type: "x" });
      expect(store.appendEvent(b.id, { type: "x" }).seq).to.equal(1);
    });

    it("replays the events after a seq, with a limit", () => {
      const store = open();
      const created = store.createJob(job());
      for (let i = 1; i <= 10; i++) store.appendEvent(created.id, { type: "line", data: i });
      expect(store.listEvents(created.id, { afterSeq: 7 }).map((e) => e.seq)).to.deep.equal([8, 9, 10]);
      expect(store.listEvents(created.id, { afterSeq: 2, limit: 3 }).map((e) => e.data)).to.deep.equal([3, 4, 5]);
      expect(store.listEvents(created.id, { afterSeq: 10 })).to.deep.equal([]);
    });

    it("drops the oldest events past the cap behind one elided marker, never reusing a seq", () => {
      const store = open({ maxEventsPerJob: 5 });
      const created = store.createJob(job());
      for (let i = 1; i <= 5; i++) store.appendEvent(created.id, { type: "line", data: i });
      expect(store.listEvents(created.id)).to.have.length(5);

      expect(store.appendEvent(created.id, { type: "line", data: 6 }).seq).to.equal(6);
      let events = store.listEvents(created.id);
      expect(events.map((e) => [e.seq, e.type])).to.deep.equal([
        [2, ELIDED_EVENT_TYPE],
        [3, "line"],
        [4, "line"],
        [5, "line"],
        [6, "line"],
      ]);
      expect(events[0].data).to.deep.equal({ count: 2 });

      for (let i = 7; i <= 9; i++) store.appendEvent(created.id, { type: "line", data: i });
      events = store.listEvents(created.id);
      expect(events).to.have.length(5);
      expect(events.filter((e) => e.type === ELIDED_EVENT_TYPE)).to.have.length(1);
      expect(events.map((e) => e.seq)).to.deep.equal([5, 6, 7, 8, 9]);
      expect(events[0]).to.include({ type: ELIDED_EVENT_TYPE }).and.to.have.deep.property("data", { count: 5 });
      // A reader that had seen up to seq 3 learns lines are missing; one that saw 5 does not.
      expect(store.listEvents(created.id, { afterSeq: 3 })[0].type).to.equal(ELIDED_EVENT_TYPE);
      expect(store.listEvents(created.id, { afterSeq: 5 })[0]).to.include({ seq: 6, type: "line" });
      expect(store.getJob(created.id)?.lastEventSeq).to.equal(9);
    });

    it("refuses events for an unknown job and the reserved marker type", () => {
      const store = open();
      const created = store.createJob(job());
      expect(() => store.appendEvent("job_nope", { type: "line" })).to.throw(NotFoundError);
      expect(() => store.appendEvent(created.id, { type: ELIDED_EVENT_TYPE })).to.throw(ConfigError);
    });
  });

  describe("leases", () => {
    it("refuses a second owner with the holder, since when, job and expiry in the message", () => {
      const store = open();
      store.acquireLease("prod", { owner: "cli:alice@host:42", ttlMs: 5 * MINUTE, jobId: "job_a" });
      clock += 1000;
      let thrown: unknown;
      try {
        store.acquireLease("prod", { owner: "service:api-1", ttlMs: MINUTE });
      } catch (err) {
        thrown = err;
      }
      expect(thrown).to.be.instanceOf(ConflictError);
      const err = thrown as ConflictError;
      expect(err.message).to.include("cli:alice@host:42");
      expect(err.message).to.include("2025-03-01T12:00:00.000Z");
      expect(err.message).to.include("job_a");
      expect(err.message).to.include("2025-03-01T12:05:00.000Z");
      expect(err.details).to.include({ holder: "cli:alice@host:42", jobId: "job_a", expiresAt: "2025-03-01T12:05:00.000Z" });
    });

    it("lets the same owner acquire again, keeping the token and extending the expiry", () => {
      const store = open();
      const first = store.acquireLease("dev", { owner: "service:api-1", ttlMs: MINUTE });
      clock += 30_000;
      const again = store.acquireLease("dev", { owner: "service:api-1", ttlMs: MINUTE, jobId: "job_b" });
      expect(again.token).to.equal(first.token);
      expect(again.acquiredAt).to.equal(first.acquiredAt);
      expect(again.expiresAt).to.equal("2025-03-01T12:01:30.000Z");
      expect(again.jobId).to.equal("job_b");
    });

    it("lets another owner take an expired lease, with a higher token", () => {
      const store = open();
      const first = store.acquireLease("dev", { owner: "cli:alice@host:1", ttlMs: MINUTE });
      clock += MINUTE - 1;
      expect(() => store.acquireLease("dev", { owner: "service:api-1", ttlMs: MINUTE })).to.throw(ConflictError);
      expect(store.getLease("dev")?.owner).to.equal("cli:alice@host:1");
      clock += 1;
      expect(store.getLease("dev")).to.equal(undefined);
      const taken = store.acquireLease("dev", { owner: "service:api-1", ttlMs: MINUTE });
      expect(taken.owner).to.equal("service:api-1");
      expect(taken.token).to.be.greaterThan(first.token);
    });

    it("increases the fencing token on every acquisition, across release and force-release", () => {
      const store = open();
      const tokens: number[] = [];
      for (const owner of ["a", "a", "b", "c"]) {
        const lease = store.acquireLease("dev", { owner, ttlMs: MINUTE });
        tokens.push(lease.token);
        store.releaseLease("dev", owner, lease.token);
        expect(store.getLease("dev")).to.equal(undefined);
      }
      const held = store.acquireLease("dev", { owner: "d", ttlMs: MINUTE });
      tokens.push(held.token);
      expect(store.forceReleaseLease("dev")).to.deep.include({ owner: "d", token: held.token });
      expect(store.forceReleaseLease("dev")).to.equal(undefined);
      tokens.push(store.acquireLease("dev", { owner: "e", ttlMs: MINUTE }).token);
      expect(tokens).to.deep.equal([1, 2, 3, 4, 5, 6]);
      expect(store.acquireLease("other", { owner: "a", ttlMs: MINUTE }).token).to.equal(1);
    });

    it("renews our lease, and refuses a renew with a stale token once someone else took it", () => {
      const store = open();
      const mine = store.acquireLease("dev", { owner: "cli:alice@host:1", ttlMs: MINUTE });
      clock += 50_000;
      expect(store.renewLease("dev", mine.owner, mine.token, MINUTE).expiresAt).to.equal("2025-03-01T12:01:50.000Z");
      clock += 2 * MINUTE; // expired, but nobody took it: still ours to renew
      expect(store.renewLease("dev", mine.owner, mine.token, MINUTE).owner).to.equal(mine.owner);
      clock += 2 * MINUTE;
      const theirs = store.acquireLease("dev", { owner: "service:api-1", ttlMs: MINUTE, jobId: "job_s" });
      expect(() => store.renewLease("dev", mine.owner, mine.token, MINUTE))
        .to.throw(ConflictError, /service:api-1/)
        .with.property("details")
        .that.include({ holder: "service:api-1", jobId: "job_s" });
      // A released lease is not renewable either.
      store.releaseLease("dev", theirs.owner, theirs.token);
      expect(() => store.renewLease("dev", theirs.owner, theirs.token, MINUTE)).to.throw(ConflictError);
    });

    it("ignores a release by anyone but the holder of the current token", () => {
      const store = open();
      const first = store.acquireLease("dev", { owner: "a", ttlMs: MINUTE });
      clock += 2 * MINUTE;
      const second = store.acquireLease("dev", { owner: "b", ttlMs: MINUTE });
      store.releaseLease("dev", "a", first.token);
      store.releaseLease("dev", "b", first.token);
      expect(store.getLease("dev")).to.deep.equal(second);
    });

    it("shares leases between two stores on one file, like the CLI and the service", () => {
      const cli = open();
      const service = open();
      const lease = cli.acquireLease("qa", { owner: "cli:bob@laptop:7", ttlMs: MINUTE, jobId: "job_c" });
      expect(service.getLease("qa")).to.deep.equal(lease);
      expect(() => service.acquireLease("qa", { owner: "service:api-1", ttlMs: MINUTE })).to.throw(ConflictError, /cli:bob@laptop:7/);
      cli.releaseLease("qa", lease.owner, lease.token);
      expect(service.acquireLease("qa", { owner: "service:api-1", ttlMs: MINUTE }).token).to.equal(lease.token + 1);
    });

    it("lets exactly one of several processes racing for a free lease win", async function () {
      this.slow(5000);
      open(); // create the schema before the racers start
      // Each racer loads the store, says "ready", and tries once the parent says "go" to all of them.
      const script = `
        const { SqliteStore } = require(${JSON.stringify(path.resolve(__dirname, "../../automation/store"))});
        const store = SqliteStore.open(${JSON.stringify(storeFile(dir))});
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
  });

  describe("crash recovery", () => {
    it("marks running jobs interrupted and blocks the stacks of interrupted mutations", () => {
      const store = open();
      const up = store.createJob(job({ stack: "dev", operation: "up", status: "running" }));
      const preview = store.createJob(job({ stack: "qa", operation: "preview", status: "running" }));
      const queued = store.createJob(job({ stack: "dev" }));
      const done = succeeded(store, { stack: "prod" });
      clock += 5000;

      const changed = store.markRunningAsInterrupted("the service restarted");

      expect(changed.map((j) => j.id)).to.deep.equal([up.id, preview.id]);
      for (const id of [up.id, preview.id]) {
        expect(store.getJob(id)).to.deep.include({
          status: "interrupted",
          finishedAt: new Date(clock).toISOString(),
          error: { code: "interrupted", message: "the service restarted" },
        });
      }
      expect(store.getJob(queued.id)?.status).to.equal("queued");
      expect(store.getJob(done.id)?.status).to.equal("succeeded");
      const dev = store.getStackState("dev");
      expect(dev.blockedJobId).to.equal(up.id);
      expect(dev.blockedReason).to.include("the service restarted");
      expect(store.getStackState("qa")).to.deep.equal({ stack: "qa" });
    });

    it("leaves a running job alone while another owner's live lease covers it", () => {
      const store = open();
      const cliJob = store.createJob(job({ stack: "dev", source: "cli", status: "running" }));
      store.acquireLease("dev", { owner: "cli:alice@host:1", ttlMs: MINUTE, jobId: cliJob.id });
      const ownJob = store.createJob(job({ stack: "prod", status: "running" }));
      store.acquireLease("prod", { owner: "service:api-1", ttlMs: MINUTE, jobId: ownJob.id });

      const changed = store.markRunningAsInterrupted("restart", { owner: "service:api-1" });

      expect(changed.map((j) => j.id)).to.deep.equal([ownJob.id]);
      expect(store.getJob(cliJob.id)?.status).to.equal("running");
      clock += MINUTE;
      expect(store.markRunningAsInterrupted("restart").map((j) => j.id)).to.deep.equal([cliJob.id]);
    });
  });

  describe("stack state", () => {
    it("starts empty, sets flags, keeps the ones a patch leaves out and clears null ones", () => {
      const store = open();
      expect(store.getStackState("dev")).to.deep.equal({ stack: "dev" });
      store.setStackState("dev", { drifted: true, lastDriftAt: "2025-03-01T12:00:00.000Z" });
      expect(store.setStackState("dev", { blockedReason: "job x interrupted" })).to.deep.equal({
        stack: "dev",
        drifted: true,
        lastDriftAt: "2025-03-01T12:00:00.000Z",
        blockedReason: "job x interrupted",
      });
      expect(store.setStackState("dev", { blockedReason: null, drifted: false })).to.deep.equal({
        stack: "dev",
        drifted: false,
        lastDriftAt: "2025-03-01T12:00:00.000Z",
      });
      expect(() => store.setStackState("dev", { nope: 1 } as never)).to.throw(ConfigError);
    });
  });

  describe("event retention", () => {
    it("deletes the events of jobs finished before the retention, keeping the jobs and every unfinished job's events", () => {
      const store = open();
      const old = succeeded(store);
      store.appendEvent(old.id, { type: "line", data: "old" });
      const waiting = store.createJob(job({ status: "awaiting_approval", approvalsRequired: 1 }));
      store.appendEvent(waiting.id, { type: "line", data: "waiting" });
      clock += 31 * 24 * 60 * MINUTE;
      const recent = succeeded(store);
      store.appendEvent(recent.id, { type: "line", data: "recent" });
      expect(store.pruneEvents(30 * 24 * 60 * MINUTE)).to.equal(1);
      expect(store.listEvents(old.id)).to.deep.equal([]);
      expect(store.getJob(old.id)?.status).to.equal("succeeded");
      expect(store.listEvents(waiting.id).map((e) => e.data)).to.deep.equal(["waiting"]);
      expect(store.listEvents(recent.id).map((e) => e.data)).to.deep.equal(["recent"]);
    });
  });

  describe("persistence", () => {
    it("keeps jobs, events, lease tokens and stack flags across closing and reopening", () => {
      const first = open();
      const created = first.createJob(job({ version: "1.2.3", config: { "app:version": "1.2.3" } }));
      first.appendEvent(created.id, { type: "line", data: "hello" });
      const lease = first.acquireLease("dev", { owner: "a", ttlMs: MINUTE });
      first.releaseLease("dev", "a", lease.token);
      first.setStackState("dev", { drifted: true });
      first.close();

      const second = open();
      expect(second.getJob(created.id)).to.deep.include({ version: "1.2.3", config: { "app:version": "1.2.3" }, lastEventSeq: 1 });
      expect(second.listEvents(created.id).map((e) => e.data)).to.deep.equal(["hello"]);
      expect(second.appendEvent(created.id, { type: "line" }).seq).to.equal(2);
      expect(second.acquireLease("dev", { owner: "b", ttlMs: MINUTE }).token).to.equal(lease.token + 1);
      expect(second.getStackState("dev").drifted).to.equal(true);
    });

    it("records the schema version and refuses a database from a newer deployer", () => {
      open().close();
      const raw = new Database(storeFile(dir));
      expect(raw.pragma("user_version", { simple: true })).to.equal(SCHEMA_VERSION);
      expect(raw.pragma("journal_mode", { simple: true })).to.equal("wal");
      raw.pragma(`user_version = ${SCHEMA_VERSION + 1}`);
      raw.close();
      expect(() => open()).to.throw(/newer than this deployer knows/);
    });

    it("openStore creates the data directory and deployer.db in it", () => {
      const nested = path.join(dir, "a", "b");
      const store = openStore(nested);
      try {
        store.ping();
        expect(fs.existsSync(path.join(nested, "deployer.db"))).to.equal(true);
      } finally {
        store.close();
      }
    });

    it("openStore creates the data directory 0700 and the database files 0600", () => {
      const nested = path.join(dir, "data");
      const store = openStore(nested);
      try {
        store.createJob(job());
        expect(fs.statSync(nested).mode & 0o777).to.equal(0o700);
        for (const f of ["deployer.db", "deployer.db-wal", "deployer.db-shm"]) {
          expect(fs.statSync(path.join(nested, f)).mode & 0o777, f).to.equal(0o600);
        }
      } finally {
        store.close();
      }
    });

    it("openStore makes an existing world-readable database private", () => {
      const store = openStore(dir);
      store.close();
      fs.chmodSync(storeFile(dir), 0o644);
      openStore(dir).close();
      expect(fs.statSync(storeFile(dir)).mode & 0o777).to.equal(0o600);
    });

    for (const [mode, who] of [[0o777, "everyone"], [0o770, "its group"]] as const) {
      it(`openStore refuses a data directory writable by ${who}, creating nothing in it`, () => {
        const open = path.join(dir, "open");
        fs.mkdirSync(open);
        fs.chmodSync(open, mode);
        expect(() => openStore(open)).to.throw(ConfigError, new RegExp(`${open}.*writable by ${who}.*chmod 700`));
        expect(fs.readdirSync(open)).to.deep.equal([]);
      });
    }
  });
});
