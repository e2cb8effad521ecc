/**
 * The queue and the operations while another process holds the database's write lock, on a real
 * SQLite file locked by a second connection (BEGIN IMMEDIATE), with the service's kind of short busy
 * timeout: nothing fails because of the lock. A queued job waits its turn again instead of failing or
 * raising an error; a running deployment's writes wait for the lock without holding the event loop,
 * and it ends succeeded with its record complete.
 */
import { expect } from "chai";
import Database from "better-sqlite3";
import { mkdtempSync, rmSync } from "fs";
import { tmpdir } from "os";
import * as path from "path";
import { isStoreBusy } from "../../automation/errors";
import { loadEnvironment } from "../../automation/environment";
import { JobQueue } from "../../automation/jobs";
import { openStore, storeFile, type Job, type Store } from "../../automation/store";
import { retryWhileBusy } from "../../automation/store/busy";
import { TestEngine, testDeps, testEnvDir } from "./support/test-engine";

describe("the queue while another process holds the database's write lock", function () {
  this.timeout(30_000);
  let envDir: string;
  let dataDir: string;
  let store: Store;
  let other: Database.Database;
  let queue: JobQueue | undefined;
  let engine: TestEngine;
  /** Resolves at the first call of the store method that the lock refused. */
  let refused: (method: string) => Promise<void>;
  let errors: Error[];

  beforeEach(() => {
    envDir = testEnvDir(["s1"]);
    dataDir = mkdtempSync(path.join(tmpdir(), "deployer-busy-"));
    const real = openStore(dataDir, { busyTimeoutMs: 20 });
    const waiting = new Map<string, () => void>();
    const seen = new Set<string>();
    const onRefused = (method: string) => {
      seen.add(method);
      waiting.get(method)?.();
    };
    refused = (method) => (seen.has(method) ? Promise.resolve() : new Promise((resolve) => waiting.set(method, resolve)));
    // The store as the queue sees it, noting when the lock refuses a write (a rejected promise, or a
    // throw before the call returns one), before the caller sees the refusal.
    store = new Proxy(real, {
      get(target, prop) {
        const value = Reflect.get(target, prop, target);
        if (typeof value !== "function") return value;
        const note = (err: unknown): never => {
          if (isStoreBusy(err)) onRefused(String(prop));
          throw err;
        };
        return (...args: unknown[]) => {
          try {
            const result: unknown = value.apply(target, args);
            return result instanceof Promise ? result.catch(note) : result;
          } catch (err) {
            return note(err);
          }
        };
      },
    });
    other = new Database(storeFile(dataDir));
    engine = new TestEngine();
    errors = [];
  });
  afterEach(async () => {
    if (other.inTransaction) other.exec("ROLLBACK");
    other.close();
    await queue?.shutdown(1_000);
    queue = undefined;
    engine.unhold();
    await store.close();
    rmSync(dataDir, { recursive: true, force: true });
    rmSync(envDir, { recursive: true, force: true });
  });

  function makeQueue(): JobQueue {
    queue = new JobQueue({ store, deps: testDeps(store, engine), loadEnvironment: (stack) => loadEnvironment(stack, { envDir }), owner: "service:busy-test:1:aaaa", leaseRetryMs: 10 });
    queue.on("job:error", (_id, err) => errors.push(err));
    return queue;
  }

  function done(q: JobQueue, id: string): Promise<Job> {
    return new Promise((resolve) => q.on("job:done", (job) => job.id === id && resolve(job)));
  }

  it("a queued job the lock keeps from starting waits its turn again, then runs: no failure, no error", async () => {
    const q = makeQueue();
    const { job } = await q.submit({ stack: "s1", operation: "up", requestedBy: "alice", source: "api", params: { version: "1.0.0" } });
    other.exec("BEGIN IMMEDIATE");
    const ended = done(q, job.id);
    q.start();
    await refused("acquireLease");
    expect((await store.getJob(job.id))?.status, "still waiting while the lock is held").to.equal("queued");
    other.exec("COMMIT");
    expect((await ended).status).to.equal("succeeded");
    expect(errors.map((e) => e.message)).to.deep.equal([]);
  });

  it("a running deployment whose writes meet the lock waits for it and ends succeeded, its record complete", async () => {
    const q = makeQueue();
    q.start();
    engine.hold();
    const { job } = await q.submit({ stack: "s1", operation: "up", requestedBy: "alice", source: "api", params: { version: "1.0.0" } });
    const ended = done(q, job.id);
    const call = await engine.nextCall({ stack: "s1" });
    other.exec("BEGIN IMMEDIATE");
    engine.unhold();
    call.release();
    // The deployment's own record (its outputs and config, written after the up) meets the lock.
    await refused("updateJob");
    other.exec("COMMIT");
    const finished = await ended;
    expect(finished.status, JSON.stringify(finished.error)).to.equal("succeeded");
    expect((await store.getJob(job.id))?.config, "the deployment's config was recorded").to.not.equal(undefined);
    expect((await store.lastGoodDeployment("s1"))?.id).to.equal(job.id);
    expect(errors.map((e) => e.message)).to.deep.equal([]);
  });

  it("retryWhileBusy gives up after its attempts with the database's own error, and passes any other error at once", async () => {
    let tries = 0;
    const busy = Object.assign(new Error("database is locked"), { code: "SQLITE_BUSY" });
    const err = await retryWhileBusy(() => {
      tries++;
      throw busy;
    }, 3).catch((e: unknown) => e);
    expect(err).to.equal(busy);
    expect(tries).to.equal(3);
    tries = 0;
    const other = new Error("disk I/O error");
    expect(await retryWhileBusy(() => {
      tries++;
      throw other;
    }).catch((e: unknown) => e)).to.equal(other);
    expect(tries).to.equal(1);
  });

  it("retryWhileBusy retries a write whose promise rejects busy, and passes any other rejection at once", async () => {
    let tries = 0;
    const busy = Object.assign(new Error("database is locked"), { code: "SQLITE_BUSY" });
    expect(await retryWhileBusy(() => (++tries < 3 ? Promise.reject(busy) : Promise.resolve("written")))).to.equal("written");
    expect(tries).to.equal(3);
    tries = 0;
    expect(await retryWhileBusy(() => (tries++, Promise.reject(busy)), 2).catch((e: unknown) => e)).to.equal(busy);
    expect(tries).to.equal(2);
    tries = 0;
    const other = new Error("disk I/O error");
    expect(await retryWhileBusy(() => (tries++, Promise.reject(other))).catch((e: unknown) => e)).to.equal(other);
    expect(tries).to.equal(1);
  });
});
