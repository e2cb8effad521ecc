/**
 * The service as several replicas on one PostgreSQL database: real processes (`node -r
 * ./automation/register.js api/main.ts`), one database (DEPLOYER_DATABASE_URL), one data directory
 * (the offline engine's snapshots) and one tokens file, so one admin token works on every replica.
 *
 * - deployments sent round-robin run in order per stack, never two at once on a stack (from the jobs'
 *   startedAt / finishedAt);
 * - every replica lists every job; the audit trail is whole on every replica;
 * - a job's event stream from a replica that does not run it: in order, no duplicates, ends with the job;
 * - kill -9 of a replica with jobs in flight: its running jobs end `interrupted` on the survivors once
 *   its leases expire, what it had queued runs there, and the stack is recovered with unlock;
 * - rate limits are shared (DEPLOYER_RATE_LIMIT_PER_MINUTE over all replicas);
 * - PostgreSQL restarting under the service: 503 store_unavailable with Retry-After while it is down,
 *   recovery on its own once it is back, and a job queued before the restart still runs.
 *
 * The replicas run with a 3 s lease (DEPLOYER_LEASE_TTL_SECONDS): the kill -9 case waits for the
 * lease to lapse and one sweep (the sweep runs every TTL).
 *
 * Waits poll the HTTP API every 50–100 ms against a deadline, or follow event streams; never a
 * fixed sleep.
 */
import { expect } from "chai";
import { mkdtempSync, rmSync } from "fs";
import { tmpdir } from "os";
import * as path from "path";
import request from "supertest";
import { openPostgresStore, type Store } from "../../automation/store";
import { testEnvDir } from "../automation/support/test-engine";
import { HANGING_PROGRAM, spawnService, type ServiceProcess } from "../api/support/process";
import { writeTokensFile } from "../api/support/server";
import { openSse, type SseEvent, type SseStream } from "../api/support/sse";
import {
  createTestDatabase,
  requirePostgresOrSkip,
  startTestClusterServer,
  stopTestClusterServer,
  testClusterRestartable,
  type TestDatabase,
} from "../support/postgres";

const TERMINAL = new Set(["succeeded", "failed", "canceled", "interrupted", "rejected"]);

/** A short lease (DEPLOYER_LEASE_TTL_SECONDS), so that a killed replica's jobs are taken over within seconds. */
const LEASE_TTL = { env: { DEPLOYER_LEASE_TTL_SECONDS: "3" } as Record<string, string>, ttlMs: 3_000 };

interface Replica {
  readonly name: string;
  readonly proc: ServiceProcess;
  readonly url: string;
  /** A supertest agent sending the admin's token. */
  http(): ReturnType<typeof request>;
}

/** Polls `check` every `intervalMs` until it returns a value other than undefined; throws at the deadline with `what`. */
async function until<T>(what: string, deadlineMs: number, check: () => Promise<T | undefined>, intervalMs = 100): Promise<T> {
  const deadline = Date.now() + deadlineMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch (err) {
      last = err;
    }
    if (Date.now() >= deadline) throw new Error(`timed out after ${deadlineMs} ms waiting for ${what}${last ? ` (last error: ${String(last)})` : ""}`);
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

/** Starts replicas over one database, data dir and tokens file. */
class Cluster {
  readonly replicas: Replica[] = [];
  readonly dataDir = mkdtempSync(path.join(tmpdir(), "deployer-replicas-"));
  readonly tokens = writeTokensFile();
  readonly token = this.tokens.tokens.get("admin")!;

  constructor(
    readonly db: TestDatabase,
    readonly envDir: string,
    private readonly baseEnv: Record<string, string>,
  ) {}

  get auth(): Record<string, string> {
    return { Authorization: `Bearer ${this.token}` };
  }

  async start(name: string, env: Record<string, string> = {}): Promise<Replica> {
    const proc = await spawnService({
      DEPLOYER_DATABASE_URL: this.db.url,
      DEPLOYER_DATA_DIR: this.dataDir,
      DEPLOYER_ENV_DIR: this.envDir,
      DEPLOYER_TOKENS_FILE: this.tokens.file,
      DEPLOYER_SHUTDOWN_GRACE_SECONDS: "5",
      DEPLOYER_MAX_QUEUED_PER_STACK: "100",
      DEPLOYER_MAX_QUEUED_PER_PRINCIPAL: "1000",
      ...LEASE_TTL.env,
      ...this.baseEnv,
      ...env,
    });
    const token = this.token;
    const replica: Replica = { name, proc, url: proc.url, http: () => request.agent(proc.url).set("Authorization", `Bearer ${token}`) };
    this.replicas.push(replica);
    return replica;
  }

  alive(): Replica[] {
    return this.replicas.filter((r) => r.proc.child.exitCode === null && r.proc.child.signalCode === null);
  }

  async close(): Promise<void> {
    await Promise.all(
      this.replicas.map(async (r) => {
        if (r.proc.child.exitCode === null && r.proc.child.signalCode === null) r.proc.child.kill("SIGKILL");
        await r.proc.exited;
      }),
    );
    rmSync(this.dataDir, { recursive: true, force: true });
    rmSync(this.tokens.dir, { recursive: true, force: true });
  }
}

/** A job read through `replica` until it is final. */
function ended(replica: Replica, jobId: string, deadlineMs: number): Promise<any> {
  return until(`job ${jobId} to end (read on ${replica.name})`, deadlineMs, async () => {
    const res = await replica.http().get(`/v1/jobs/${jobId}`);
    // A job the store no longer has is lost: said at once, not waited for.
    if (res.status === 404) return { id: jobId, status: "missing (404)", error: res.body?.error };
    return res.status === 200 && TERMINAL.has(res.body.status) ? res.body : undefined;
  });
}

/** Checks a finished stream: consecutive ids from `firstSeq`, no duplicates, `end` last with the job, and the server closed it. */
function expectWholeStream(stream: SseStream, jobId: string, firstSeq = 1): SseEvent {
  const events = stream.events;
  expect(events.length, "events").to.be.greaterThan(1);
  const end = events[events.length - 1];
  expect(end.event).to.equal("end");
  expect(end.data.id).to.equal(jobId);
  expect(events.filter((e) => e.event === "end"), "one end event").to.have.length(1);
  const seqs = events.slice(0, -1).map((e) => Number(e.id));
  expect(seqs, "event ids in order, no gaps or duplicates").to.deep.equal(seqs.map((_, i) => firstSeq + i));
  return end;
}

/** On a failure: each replica's warnings and errors (its last 20), and the end of its stderr, to say why. */
function printReplicaLogs(cluster: Cluster | undefined): void {
  for (const r of cluster?.replicas ?? []) {
    const lines = r.proc.lines.filter((l) => /"level":(40|50|60)/.test(l)).slice(-20);
    console.log(`      --- ${r.name} (pid ${r.proc.child.pid}): ${lines.length} warnings/errors shown${r.proc.stderr().trim() ? `; stderr: ${r.proc.stderr().trim().split("\n").slice(-3).join(" | ")}` : ""}`);
    for (const l of lines) console.log(`      ${l.slice(0, 600)}`);
  }
}

describe("replicas: three service processes on one PostgreSQL database", function () {
  this.timeout(120_000);
  let db: TestDatabase;
  let envDir: string;
  let cluster: Cluster;
  let replicas: Replica[];
  /** Every job created through the API, with the replica it was posted to. */
  const created: { id: string; via: string }[] = [];
  /** Every mutation sent through the API: its request id and the replica that answered it. */
  const mutations: { requestId: string; via: string; action: string }[] = [];

  before(async function () {
    this.timeout(60_000);
    requirePostgresOrSkip(this);
    db = await createTestDatabase();
    envDir = testEnvDir(["s1", "s2", "s3", "s4", "s5", "s6", "s7"]);
    cluster = new Cluster(db, envDir, { DEPLOYER_RATE_LIMIT_PER_MINUTE: "100000" });
    // All three start at once, as a deployment of replicas would: over a new, empty database.
    replicas = await Promise.all(["r1", "r2", "r3"].map((n) => cluster.start(n)));
  });

  afterEach(function () {
    if (this.currentTest?.state === "failed") printReplicaLogs(cluster);
  });

  after(async function () {
    this.timeout(30_000);
    await cluster?.close();
    // A test that stopped the server and failed before starting it again must not leave it down.
    if (testClusterRestartable()) await startTestClusterServer().catch(() => undefined);
    await db?.drop().catch(() => undefined);
    if (envDir) rmSync(envDir, { recursive: true, force: true });
  });

  /** POSTs through `replica`, recording the mutation (for the audit check) and the job it created. */
  async function post(replica: Replica, url: string, body: object): Promise<request.Response> {
    const res = await replica.http().post(url).send(body);
    mutations.push({ requestId: String(res.headers["x-request-id"]), via: replica.name, action: `POST ${url}` });
    if (res.status === 202 && typeof res.body?.id === "string") created.push({ id: res.body.id, via: replica.name });
    return res;
  }

  it("runs deployments sent round-robin in order per stack, never two at once on a stack", async () => {
    const perStack = 4;
    const stacks = ["s1", "s2"];
    const submitted = new Map<string, string[]>(stacks.map((s) => [s, []]));
    let n = 0;
    for (let k = 0; k < perStack; k++) {
      for (const stack of stacks) {
        const replica = replicas[n++ % replicas.length];
        const res = await post(replica, `/v1/stacks/${stack}/deployments`, { version: `1.0.${k}` });
        expect(res.status, res.text).to.equal(202);
        submitted.get(stack)!.push(res.body.id);
      }
    }
    for (const stack of stacks) {
      const jobs = [];
      for (const id of submitted.get(stack)!) jobs.push(await ended(replicas[0], id, 90_000));
      for (const job of jobs) expect(job.status, `${job.id}: ${JSON.stringify(job.error)}`).to.equal("succeeded");
      // In submission order, each one starting after the one before it finished.
      for (let i = 1; i < jobs.length; i++) {
        const before = jobs[i - 1];
        const after = jobs[i];
        expect(Date.parse(after.startedAt), `${stack}: ${after.id} started after ${before.id} finished`).to.be.at.least(Date.parse(before.finishedAt));
      }
      // The stack ends on the last version submitted.
      expect(jobs[jobs.length - 1].version).to.equal(`1.0.${perStack - 1}`);
    }
  });

  it("lists every job on every replica", async () => {
    expect(created.length).to.be.greaterThan(0);
    for (const replica of replicas) {
      const res = await replica.http().get("/v1/jobs").query({ limit: 200 });
      expect(res.status, res.text).to.equal(200);
      const ids = new Set((res.body.jobs as { id: string }[]).map((j) => j.id));
      for (const job of created) expect(ids.has(job.id), `${job.id} (posted to ${job.via}) listed by ${replica.name}`).to.equal(true);
    }
  });

  it("streams a job's events from the replicas that do not run it: in order, no duplicates, ending with the job", async () => {
    // A job that waits behind another on its stack: the streams are open before it starts, so what
    // they get is live, not a replay.
    const first = await post(replicas[0], "/v1/stacks/s3/deployments", { version: "2.0.0" });
    expect(first.status, first.text).to.equal(202);
    const second = await post(replicas[0], "/v1/stacks/s3/deployments", { version: "2.0.1" });
    expect(second.status, second.text).to.equal(202);
    const jobId = second.body.id as string;
    // One replica runs it; each of the other two streams it (which one runs it is the queue's choice).
    const streams = await Promise.all(replicas.map((r) => openSse(`${r.url}/v1/jobs/${jobId}/events`, cluster.auth)));
    try {
      const ends = await Promise.all(
        streams.map((s, i) =>
          Promise.race([
            s.ended,
            new Promise((_, reject) => setTimeout(() => reject(new Error(`the stream from ${replicas[i].name} did not end within 60 s (${s.events.length} events so far)`)), 60_000).unref()),
          ]),
        ),
      );
      expect(ends).to.have.length(3);
      const replay = await openSse(`${replicas[0].url}/v1/jobs/${jobId}/events`, cluster.auth);
      await replay.ended;
      const stored = replay.events.slice(0, -1).map((e) => e.id);
      for (const [i, s] of streams.entries()) {
        const end = expectWholeStream(s, jobId);
        expect(end.data.status, `${replicas[i].name}: ${JSON.stringify(end.data.error)}`).to.equal("succeeded");
        expect(s.events.slice(0, -1).map((e) => e.id), `${replicas[i].name}'s stream has every stored event`).to.deep.equal(stored);
      }
    } finally {
      for (const s of streams) s.close();
    }
    expect((await ended(replicas[1], first.body.id, 30_000)).status).to.equal("succeeded");
  });

  it("keeps the whole audit trail on every replica", async () => {
    // One more mutation through each replica, besides the deployments above.
    for (const replica of replicas) {
      const res = await post(replica, "/v1/stacks/s4/drift-checks", {});
      expect(res.status, res.text).to.equal(202);
    }
    const expected = mutations.filter((m) => m.requestId !== "undefined");
    expect(expected.length).to.be.at.least(replicas.length);
    for (const replica of replicas) {
      const ids = await until(`${replica.name}'s audit trail to hold ${expected.length} mutations`, 10_000, async () => {
        const res = await replica.http().get("/v1/audit").query({ limit: 500 });
        expect(res.status, res.text).to.equal(200);
        const seen = new Set((res.body.entries as { requestId: string | null }[]).map((e) => e.requestId));
        return expected.every((m) => seen.has(m.requestId)) ? seen : undefined;
      });
      for (const m of expected) expect(ids.has(m.requestId), `${m.action} via ${m.via} (${m.requestId}) listed by ${replica.name}`).to.equal(true);
    }
    for (const job of created.slice(-replicas.length)) await ended(replicas[0], job.id, 30_000);
  });

  it("after kill -9 of a replica with jobs in flight: they end on the survivors within the lease TTL, and the stack is recovered", async function () {
    // Its leases expire a TTL after their last renewal; the sweep (every TTL) then interrupts their jobs.
    const endWithinMs = 2 * LEASE_TTL.ttlMs + 20_000;
    this.timeout(endWithinMs + 60_000);
    // A fourth replica whose deployments hang: its jobs are still running when it is killed. It takes
    // two at once; what it queues beyond them waits for a slot (or for another replica).
    const doomed = await cluster.start("r4", { DEPLOYER_OFFLINE_PROGRAM: HANGING_PROGRAM, DEPLOYER_MAX_CONCURRENT: "2" });
    // The other replicas would take these jobs as soon as they are queued (they are woken by the
    // store's notifications), and run them to their end: they are paused (SIGSTOP) until the doomed
    // replica has claimed its two, then resumed (SIGCONT) with those stacks held by its leases.
    const hanging: string[] = [];
    let onDoomed: (string | undefined)[];
    for (const r of replicas) r.proc.child.kill("SIGSTOP");
    try {
      for (const stack of ["s5", "s6"]) {
        const res = await post(doomed, `/v1/stacks/${stack}/deployments`, { version: "3.0.0" });
        expect(res.status, res.text).to.equal(202);
        hanging.push(res.body.id);
      }
      onDoomed = await Promise.all(
        hanging.map(async (id) => {
          const stream = await openSse(`${doomed.url}/v1/jobs/${id}/events`, cluster.auth);
          try {
            const seen = await Promise.race([
              stream.next((e) => e.event === "diagnostic" && /fixture: hanging/.test(e.data.diagnostic?.message ?? "")).then(() => "hanging" as const),
              stream.next((e) => e.event === "end").then(() => "ended" as const),
              new Promise<"late">((resolve) => setTimeout(() => resolve("late"), 30_000).unref()),
            ]);
            return seen === "hanging" ? id : undefined;
          } finally {
            stream.close();
          }
        }),
      );
    } finally {
      for (const r of replicas) r.proc.child.kill("SIGCONT");
    }
    const inFlight = onDoomed.filter((id): id is string => id !== undefined);
    expect(inFlight.length, "jobs hanging on the replica to be killed").to.equal(2);
    // Queued behind them: a preview on s5 (a preview runs on a blocked stack) and a deployment on s7.
    const queuedPreview = await post(doomed, "/v1/stacks/s5/previews", { version: "3.0.1" });
    expect(queuedPreview.status, queuedPreview.text).to.equal(202);
    const queuedDeploy = await post(doomed, "/v1/stacks/s7/deployments", { version: "3.0.2" });
    expect(queuedDeploy.status, queuedDeploy.text).to.equal(202);

    const killedAt = Date.now();
    doomed.proc.child.kill("SIGKILL");
    expect((await doomed.proc.exited).signal).to.equal("SIGKILL");

    const survivor = replicas[1];
    const results = await Promise.all([...inFlight, queuedPreview.body.id, queuedDeploy.body.id].map((id) => ended(survivor, id, endWithinMs)));
    const tookMs = Date.now() - killedAt;
    for (const [i, job] of results.entries()) {
      if (i < inFlight.length) {
        expect(job.status, `${job.id} was running on the killed replica`).to.equal("interrupted");
        expect(job.error.code).to.equal("interrupted");
      } else {
        expect(job.status, `${job.id} was queued on the killed replica: ${JSON.stringify(job.error)}`).to.equal("succeeded");
      }
    }
    expect(tookMs, "every job ended within the lease TTL and one sweep").to.be.at.most(endWithinMs);

    // The interrupted stacks are blocked until an admin unlocks them, through any survivor.
    const blockedStack = results[0].stack as string;
    const refused = await post(replicas[2], `/v1/stacks/${blockedStack}/deployments`, { version: "3.1.0" });
    expect(refused.status, refused.text).to.equal(409);
    expect(refused.body.error.message).to.contain(`/v1/stacks/${blockedStack}/unlock`);
    for (const job of results.slice(0, inFlight.length)) {
      const unlocked = await post(replicas[2], `/v1/stacks/${job.stack}/unlock`, {});
      expect(unlocked.status, unlocked.text).to.equal(200);
      expect(unlocked.body.wasBlocked).to.equal(true);
    }
    const again = await post(replicas[0], `/v1/stacks/${blockedStack}/deployments`, { version: "3.1.0" });
    expect(again.status, again.text).to.equal(202);
    const job = await ended(replicas[2], again.body.id, 60_000);
    expect(job.status, JSON.stringify(job.error)).to.equal("succeeded");
    expect((await replicas[0].http().get(`/v1/stacks/${blockedStack}`)).body.blockedReason).to.equal(null);
  });

  it("answers 503 store_unavailable while PostgreSQL is down, recovers on its own once it is back, and loses no queued job", async function () {
    if (!testClusterRestartable()) {
      console.log("      skipped: the database server is external (DEPLOYER_TEST_DATABASE_URL): a test cannot stop it");
      this.skip();
    }
    this.timeout(120_000);
    // A job that cannot start before the restart: its stack's lease is held (by this test, standing in
    // for a CLI run), so it is queued in the database when the server goes away.
    const holder: Store = await openPostgresStore(db.url);
    let queuedId: string;
    try {
      const lease = await holder.acquireLease("s1", { owner: "test:replicas:holder", ttlMs: 10 * 60_000 });
      const queued = await post(replicas[0], "/v1/stacks/s1/deployments", { version: "4.0.0" });
      expect(queued.status, queued.text).to.equal(202);
      queuedId = queued.body.id;
      expect((await replicas[1].http().get(`/v1/jobs/${queuedId}`)).body.status).to.equal("queued");

      await stopTestClusterServer();
      try {
        for (const replica of replicas) {
          for (const [method, url] of [
            ["get", "/v1/jobs"],
            ["get", `/v1/jobs/${queuedId}`],
            ["post", "/v1/stacks/s2/deployments"],
          ] as const) {
            const res = method === "get" ? await replica.http().get(url) : await replica.http().post(url).send({ version: "4.0.1" });
            expect(res.status, `${replica.name} ${method.toUpperCase()} ${url} while the database is down: ${res.text}`).to.equal(503);
            expect(res.body.error?.code, `${replica.name} ${url}`).to.equal("store_unavailable");
            expect(Number(res.headers["retry-after"]), `${replica.name} ${url}: Retry-After`).to.be.greaterThan(0);
          }
          const ready = await request(replica.url).get("/readyz");
          expect(ready.status, `${replica.name} /readyz while the database is down`).to.equal(503);
        }
      } finally {
        await startTestClusterServer();
      }

      // Each replica is ready again by itself.
      for (const replica of replicas) {
        await until(`${replica.name} to be ready again`, 30_000, async () => ((await request(replica.url).get("/readyz")).status === 200 ? true : undefined));
      }
      // A new deployment runs, and its events reach a replica that may not run it.
      const fresh = await post(replicas[2], "/v1/stacks/s2/deployments", { version: "4.0.2" });
      expect(fresh.status, fresh.text).to.equal(202);
      const stream = await openSse(`${replicas[0].url}/v1/jobs/${fresh.body.id}/events`, cluster.auth);
      const end = await Promise.race([
        stream.next((e) => e.event === "end"),
        new Promise<never>((_, reject) => setTimeout(() => reject(new Error("no end event within 60 s after the restart")), 60_000).unref()),
      ]);
      stream.close();
      expect(end.data.status, JSON.stringify(end.data.error)).to.equal("succeeded");

      // The job queued before the restart runs once its stack is free.
      await holder.releaseLease("s1", "test:replicas:holder", lease.token);
    } finally {
      await holder.close();
    }
    const job = await ended(replicas[1], queuedId!, 60_000);
    expect(job.status, JSON.stringify(job.error)).to.equal("succeeded");
  });
});

describe("replicas: rate limits shared through PostgreSQL", function () {
  this.timeout(60_000);
  let db: TestDatabase;
  let envDir: string;
  let cluster: Cluster;
  let replicas: Replica[];

  before(async function () {
    requirePostgresOrSkip(this);
    db = await createTestDatabase();
    envDir = testEnvDir(["s1"]);
    cluster = new Cluster(db, envDir, { DEPLOYER_RATE_LIMIT_PER_MINUTE: "3" });
    replicas = await Promise.all(["r1", "r2", "r3"].map((n) => cluster.start(n)));
  });

  afterEach(function () {
    if (this.currentTest?.state === "failed") printReplicaLogs(cluster);
  });

  after(async function () {
    this.timeout(30_000);
    await cluster?.close();
    await db?.drop().catch(() => undefined);
    if (envDir) rmSync(envDir, { recursive: true, force: true });
  });

  it("refuses the fourth mutation of a minute at 3 a minute, whichever replicas the requests went to", async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 4; i++) {
      const replica = replicas[i % replicas.length];
      const res = await replica.http().post("/v1/stacks/s1/drift-checks").send({});
      statuses.push(res.status);
      if (i < 3) expect(res.status, `request ${i + 1} via ${replica.name}: ${res.text}`).to.equal(202);
      else {
        expect(res.status, `request 4 via ${replica.name} (statuses so far ${statuses.join(", ")}): ${res.text}`).to.equal(429);
        expect(res.body.error.code).to.equal("rate_limited");
        expect(Number(res.headers["retry-after"])).to.be.greaterThan(0);
      }
    }
  });
});
