/**
 * executeJob under a store that refuses writes for a while (SQLITE_BUSY from another process): the
 * events whose write failed are kept and written later, in order, and the outcome is retried until it
 * lands, or kept on disk and applied before anything counts the job interrupted, so a job never stays
 * `running`, or turns `interrupted`, after its operation ended.
 */
import { expect } from "chai";
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync } from "fs";
import { tmpdir } from "os";
import * as path from "path";
import { loadEnvironment } from "../../automation/environment";
import { OutcomeKeptError } from "../../automation/errors";
import { executeJob } from "../../automation/jobs/execute";
import { openStore, type Store } from "../../automation/store";
import { TestEngine, testDeps, testEnvDir } from "./support/test-engine";

const busy = () => Object.assign(new Error("database is locked"), { code: "SQLITE_BUSY" });

describe("executeJob when the store refuses writes for a while", function () {
  this.timeout(20_000);
  let dataDir: string;
  let envDir: string;
  let store: Store;
  /** How many writes `flaky` refused. */
  let refusals: number;

  beforeEach(() => {
    dataDir = mkdtempSync(path.join(tmpdir(), "deployer-exec-"));
    envDir = testEnvDir(["s1"]);
    store = openStore(dataDir);
    refusals = 0;
  });
  afterEach(async () => {
    await store.close();
    rmSync(dataDir, { recursive: true, force: true });
    rmSync(envDir, { recursive: true, force: true });
  });

  /**
   * The store, with the first `events` event writes and the first `outcomes` final writes failing:
   * their promises rejected (`rejects`, as a network store, or SQLite under `asyncStore`, fails), or
   * the call throwing before it returns one (`throws`, which executeJob handles as well).
   */
  function flaky(failures: { events: number; outcomes: number }, how: "rejects" | "throws" = "rejects"): Store {
    const fail = () => {
      refusals++;
      if (how === "throws") throw busy();
      return Promise.reject(busy());
    };
    let events = failures.events;
    let outcomes = failures.outcomes;
    return new Proxy(store, {
      get(target, prop) {
        if (prop === "appendEvents") {
          return (...args: Parameters<Store["appendEvents"]>) => {
            if (events-- > 0) return fail();
            return target.appendEvents(...args);
          };
        }
        if (prop === "updateJob") {
          return (...args: Parameters<Store["updateJob"]>) => {
            const terminal = ["succeeded", "failed", "canceled", "timed_out"].includes(String(args[1].status));
            if (terminal && outcomes-- > 0) return fail();
            return target.updateJob(...args);
          };
        }
        const value = Reflect.get(target, prop, target);
        return typeof value === "function" ? value.bind(target) : value;
      },
    });
  }

  for (const how of ["rejects", "throws"] as const) {
    it(`keeps the events whose write failed and writes them later in order; retries the outcome until it lands (the write ${how})`, async () => {
      const s = flaky({ events: 2, outcomes: 3 }, how);
      const env = loadEnvironment("s1", { envDir });
      const job = await store.createJob({ stack: "s1", operation: "preview", requestedBy: "t", source: "api", engine: "offline", status: "running", version: "1.0.0" });
      const published: number[] = [];
      const result = await executeJob(testDeps(s, new TestEngine()), env, job, { operation: "preview", params: { version: "1.0.0" } }, { onEvent: (_e, seq) => published.push(seq) });
      expect(result.job.status, result.error?.message).to.equal("succeeded");
      expect((await store.getJob(job.id))?.status).to.equal("succeeded");
      const seqs = (await store.listEvents(job.id)).map((e) => e.seq);
      expect(seqs.length).to.be.greaterThan(2);
      expect(seqs).to.deep.equal(Array.from({ length: seqs.length }, (_, i) => i + 1));
      expect(published).to.deep.equal(seqs);
      expect(refusals, "every refusal was met").to.equal(5);
      // The first event emitted (the one whose write failed first) is the first stored.
      expect(((await store.listEvents(job.id))[0].data as { type: string }).type).to.be.a("string");
    });
  }

  it("writes the events of a write that fails as the operation ends, before the outcome, instead of leaving them", async () => {
    let failNext = true;
    let failing!: () => void;
    const refused = new Promise<void>((resolve) => (failing = resolve));
    // The first event write is refused only once the operation has ended: it is in flight when the outcome comes.
    const slowRefusal = new Proxy(store, {
      get(target, prop) {
        if (prop === "appendEvents") {
          return (...args: Parameters<Store["appendEvents"]>) => {
            if (!failNext) return target.appendEvents(...args);
            failNext = false;
            return refused.then(() => Promise.reject(busy()));
          };
        }
        if (prop === "updateJob") {
          return (...args: Parameters<Store["updateJob"]>) => {
            failing(); // the job's next write, as the operation ends: the event write under way fails now
            return target.updateJob(...args);
          };
        }
        const value = Reflect.get(target, prop, target);
        return typeof value === "function" ? value.bind(target) : value;
      },
    });
    const env = loadEnvironment("s1", { envDir });
    const job = await store.createJob({ stack: "s1", operation: "preview", requestedBy: "t", source: "api", engine: "offline", status: "running", version: "1.0.0" });
    const result = await executeJob(testDeps(slowRefusal, new TestEngine({ stepsPerCall: 3 })), env, job, { operation: "preview", params: { version: "1.0.0" } });

    expect(result.job.status, result.error?.message).to.equal("succeeded");
    const events = await store.listEvents(job.id);
    expect(events.filter((e) => e.type === "step")).to.have.length(3);
    expect(events.map((e) => e.seq)).to.deep.equal(events.map((_, i) => i + 1));
  });

  it("drops the oldest events beyond 1,000 waiting while the store refuses them, and says how many in the log", async () => {
    const s = flaky({ events: 1, outcomes: 0 });
    const env = loadEnvironment("s1", { envDir });
    const job = await store.createJob({ stack: "s1", operation: "preview", requestedBy: "t", source: "api", engine: "offline", status: "running", version: "1.0.0" });
    // 1,200 steps emitted in one burst while the first write fails and backs off.
    const result = await executeJob(testDeps(s, new TestEngine({ stepsPerCall: 1_200 })), env, job, { operation: "preview", params: { version: "1.0.0" } });

    expect(result.job.status, result.error?.message).to.equal("succeeded");
    const events = await store.listEvents(job.id);
    const warnings = events.filter((e) => (e.data as { level?: string; message?: string }).message?.includes("events could not be stored"));
    expect(warnings, "one warning line").to.have.length(1);
    const dropped = Number(/^(\d+) events could not be stored/.exec((warnings[0].data as { message: string }).message)?.[1]);
    expect(dropped).to.be.greaterThan(0);
    // What was kept plus what was dropped is what the job emitted; the newest steps are the ones kept.
    const steps = events.filter((e) => e.type === "step");
    expect(steps.length).to.be.at.most(1_000);
    expect((steps[steps.length - 1].data as { step: { urn: string } }).step.urn).to.match(/thing-1199$/);
    expect(events.map((e) => e.seq)).to.deep.equal(events.map((_, i) => i + 1));
  });

  it("keeps an outcome the database never takes on disk (0600); the next start records it instead of interrupted, and the deployment counts", async () => {
    const s = flaky({ events: 0, outcomes: Number.POSITIVE_INFINITY });
    const env = loadEnvironment("s1", { envDir });
    const job = await store.createJob({ stack: "s1", operation: "up", requestedBy: "t", source: "api", engine: "offline", status: "running", version: "1.0.0" });
    const err = await executeJob(testDeps(s, new TestEngine()), env, job, { operation: "up", params: { version: "1.0.0" } }, { finalWriteAttempts: 2 }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).to.be.instanceOf(OutcomeKeptError);
    const file = (err as OutcomeKeptError).details as { jobId: string; file: string };
    expect(file.jobId).to.equal(job.id);
    expect(path.dirname(file.file)).to.equal(path.join(dataDir, "outcomes"));
    expect((err as Error).message).to.include(file.file);
    expect(statSync(file.file).mode & 0o777).to.equal(0o600);
    expect((await store.getJob(job.id))?.status, "the database did not take it").to.equal("running");

    // The next start: what happened is recorded, nothing is interrupted, the stack is not blocked.
    expect(await store.markRunningAsInterrupted("the deployer restarted")).to.deep.equal([]);
    const applied = await store.getJob(job.id);
    expect(applied, JSON.stringify(applied?.error)).to.include({ status: "succeeded" });
    expect((await store.getStackState("s1")).blockedReason).to.equal(undefined);
    expect((await store.lastGoodDeployment("s1"))?.id, "the applied deployment is in the rollback history").to.equal(job.id);
    expect(existsSync(file.file)).to.equal(false);
    expect(readdirSync(path.join(dataDir, "outcomes"))).to.deep.equal([]);
  });

  it("drops a kept outcome whose job ended otherwise meanwhile, keeping that ending", async () => {
    const job = await store.createJob({ stack: "s1", operation: "preview", requestedBy: "t", source: "api", engine: "offline", status: "running", version: "1.0.0" });
    const file = await store.keepOutcome(job.id, { status: "succeeded", finishedAt: new Date().toISOString() });
    expect(file, "kept in a file beside the database").to.be.a("string");
    await store.updateJob(job.id, { status: "canceled", finishedAt: new Date().toISOString() });
    expect(await store.applyKeptOutcomes()).to.deep.equal([]);
    expect((await store.getJob(job.id))?.status).to.equal("canceled");
    expect(existsSync(file!)).to.equal(false);
  });
});
