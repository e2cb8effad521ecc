import { expect } from "chai";
import { mkdtempSync, rmSync } from "fs";
import { createServer, type IncomingHttpHeaders, type Server } from "http";
import type { AddressInfo } from "net";
import { tmpdir } from "os";
import * as path from "path";
import type { DriftedResource } from "../../automation/engine/port";
import { listEnvironments, loadEnvironment, type Environment } from "../../automation/environment";
import { ConfigError } from "../../automation/errors";
import {
  DriftScheduler,
  JobQueue,
  WebhookNotifier,
  driftNotification,
  nextCronTime,
  parseCron,
  signWebhookBody,
  verifyWebhookSignature,
  type SchedulerTimers,
  type WebhookDelivery,
} from "../../automation/jobs";
import { TERMINAL_STATUSES, openStore, type Job, type Store } from "../../automation/store";
import { TestEngine, testDeps, testEnvDir } from "./support/test-engine";

const at = (iso: string) => Date.parse(iso);
const SECRET = "webhook-test-secret";

describe("cron", () => {
  it("finds the next due time strictly after the given one, in UTC", () => {
    expect(nextCronTime("0 */6 * * *", at("2025-03-01T12:00:00Z")).toISOString()).to.equal("2025-03-01T18:00:00.000Z");
    expect(nextCronTime("0 */6 * * *", at("2025-03-01T11:59:30Z")).toISOString()).to.equal("2025-03-01T12:00:00.000Z");
    expect(nextCronTime("*/15 * * * *", at("2025-03-01T12:07:00Z")).toISOString()).to.equal("2025-03-01T12:15:00.000Z");
    expect(nextCronTime("30 2 * * *", at("2025-12-31T03:00:00Z")).toISOString()).to.equal("2026-01-01T02:30:00.000Z");
    expect(nextCronTime("5,35 8-9 * * *", at("2025-03-01T08:40:00Z")).toISOString()).to.equal("2025-03-01T09:05:00.000Z");
  });

  it("reads days of the week (Sunday as 0 or 7), and either day field when both are restricted", () => {
    // 2025-03-01 is a Saturday.
    expect(nextCronTime("0 9 * * 1-5", at("2025-03-01T10:00:00Z")).toISOString()).to.equal("2025-03-03T09:00:00.000Z");
    expect(nextCronTime("0 0 * * 7", at("2025-03-01T10:00:00Z")).toISOString()).to.equal("2025-03-02T00:00:00.000Z");
    expect(nextCronTime("0 0 13 * 5", at("2025-03-01T10:00:00Z")).toISOString()).to.equal("2025-03-07T00:00:00.000Z");
    expect(nextCronTime("0 0 29 2 *", at("2025-03-01T00:00:00Z")).toISOString()).to.equal("2028-02-29T00:00:00.000Z");
  });

  it("refuses a malformed, out-of-range or never-matching expression, naming the field", () => {
    expect(() => parseCron("0 */6 * *")).to.throw(ConfigError, /5 fields/);
    expect(() => parseCron("61 * * * *")).to.throw(ConfigError, /minute "61" is outside 0-59/);
    expect(() => parseCron("0 0 * JAN *")).to.throw(ConfigError, /month "JAN"/);
    expect(() => parseCron("*/0 * * * *")).to.throw(ConfigError, /step/);
    expect(() => nextCronTime("0 0 31 2 *", Date.now())).to.throw(ConfigError, /never matches/);
  });
});

/** A local HTTP receiver answering each request with the next status of `statuses` (the last repeats). */
class Receiver {
  readonly requests: { headers: IncomingHttpHeaders; body: Buffer }[] = [];
  private server!: Server;
  private waiters: { count: number; resolve: () => void }[] = [];

  constructor(private readonly statuses: number[]) {}

  async listen(): Promise<string> {
    this.server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        this.requests.push({ headers: req.headers, body: Buffer.concat(chunks) });
        res.statusCode = this.statuses[Math.min(this.requests.length - 1, this.statuses.length - 1)];
        res.end();
        for (const w of this.waiters.filter((w) => this.requests.length >= w.count)) w.resolve();
      });
    });
    await new Promise<void>((resolve) => this.server.listen(0, "127.0.0.1", resolve));
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/hooks/drift`;
  }

  /** Resolves once `count` requests have arrived. */
  received(count: number): Promise<void> {
    if (this.requests.length >= count) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push({ count, resolve }));
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

describe("drift schedule", function () {
  this.timeout(30_000);

  let envDir: string;
  let dataDir: string;
  let store: Store;
  let engine: TestEngine;
  let queue: JobQueue;
  let clock: number;
  const schedulers: DriftScheduler[] = [];

  const environments = (): Environment[] => listEnvironments({ envDir }).map((stack) => loadEnvironment(stack, { envDir }));
  const DRIFTED: DriftedResource[] = [
    {
      urn: "urn:pulumi:s1::pulumi-aws-deployer::aws:s3/bucket:Bucket::web-s1-logs",
      type: "aws:s3/bucket:Bucket",
      kind: "update",
      properties: [{ path: "tags.Owner", kind: "update", state: "platform", live: "value-that-may-be-s3cret" }],
    },
  ];

  before(() => {
    const schedules: Record<string, string> = { s1: "*/5 * * * *", s2: "0 * * * *" };
    envDir = testEnvDir(["s1", "s2", "s3"], (name, text) => (schedules[name] ? text.replace("deploy:\n", `deploy:\n  driftSchedule: "${schedules[name]}"\n`) : text));
  });
  after(() => rmSync(envDir, { recursive: true, force: true }));

  beforeEach(() => {
    dataDir = mkdtempSync(path.join(tmpdir(), "deployer-schedule-"));
    store = openStore(dataDir);
    engine = new TestEngine();
    clock = at("2025-03-01T12:01:30Z");
    queue = new JobQueue({ store, deps: testDeps(store, engine), loadEnvironment: (stack) => loadEnvironment(stack, { envDir }), owner: "service:schedule-test:1:x" });
  });

  afterEach(async () => {
    for (const s of schedulers.splice(0)) s.stop();
    await queue.shutdown(1000);
    engine.unhold();
    await store.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  function scheduler(options: Partial<ConstructorParameters<typeof DriftScheduler>[0]> = {}): DriftScheduler {
    const s = new DriftScheduler({ queue, store, environments, now: () => clock, timers: manualTimers().timers, ...options });
    schedulers.push(s);
    return s;
  }

  /** Timers the test fires by hand; `nextArm()` resolves when the scheduler arms one next. */
  function manualTimers() {
    const armed: { fn: () => void; ms: number }[] = [];
    const armWaiters: (() => void)[] = [];
    const timers: SchedulerTimers = {
      set: (fn, ms) => {
        const t = { fn, ms };
        armed.push(t);
        for (const w of armWaiters.splice(0)) w();
        return t;
      },
      clear: (t) => {
        const i = armed.indexOf(t as (typeof armed)[number]);
        if (i >= 0) armed.splice(i, 1);
      },
    };
    const nextArm = () => new Promise<void>((resolve) => armWaiters.push(resolve));
    return { timers, armed, nextArm };
  }

  /** Resolves with the job when it ends (at once when it has ended already). */
  function done(jobId: string): Promise<Job> {
    return new Promise((resolve, reject) => {
      let settled = false;
      const settle = (job: Job) => {
        if (settled) return;
        settled = true;
        queue.off("job:done", listener);
        resolve(job);
      };
      const listener = (job: Job) => {
        if (job.id === jobId) settle(job);
      };
      // Listening first, then reading: a job:done emitted while the read is under way is not missed.
      queue.on("job:done", listener);
      store.getJob(jobId).then((now) => {
        if (now && TERMINAL_STATUSES.has(now.status)) settle(now);
      }, (err: unknown) => {
        if (settled) return;
        settled = true;
        queue.off("job:done", listener);
        reject(err instanceof Error ? err : new Error(String(err)));
      });
    });
  }

  it("enqueues a drift check for each stack at its due time, and skips a stack whose check is still queued", async () => {
    const s = scheduler();
    s.start();

    expect(await s.tick(at("2025-03-01T12:04:59Z"))).to.deep.equal([]);
    const [first, ...rest] = await s.tick(at("2025-03-01T12:05:00Z"));

    expect(rest).to.deep.equal([]);
    expect(first).to.include({ stack: "s1", operation: "drift", status: "queued", source: "schedule", requestedBy: "schedule" });
    const hourly = await s.tick(at("2025-03-01T13:00:10Z"));
    expect(hourly.map((j) => j.stack)).to.deep.equal(["s2"]); // s1's check has not run yet
    expect(await store.listJobs({ operation: "drift" })).to.have.length(2);
  });

  it("skips a stack whose drift check is running, and schedules it again once that one ended", async () => {
    engine.hold();
    queue.start();
    const s = scheduler();
    s.start();
    const [job] = await s.tick(at("2025-03-01T12:05:00Z"));
    const call = await engine.nextCall({ stack: "s1", op: "drift" });

    expect(await s.tick(at("2025-03-01T12:10:00Z"))).to.deep.equal([]);
    const finished = done(job.id);
    call.release();
    expect((await finished).status).to.equal("succeeded");
    expect((await s.tick(at("2025-03-01T12:15:00Z"))).map((j) => j.stack)).to.deep.equal(["s1"]);
  });

  it("arms its timer for the nearest due time and enqueues when it fires", async () => {
    const { timers, armed, nextArm } = manualTimers();
    const s = scheduler({ timers });
    s.start();

    expect(armed.map((t) => t.ms)).to.deep.equal([at("2025-03-01T12:05:00Z") - clock]);
    clock = at("2025-03-01T12:05:00Z");
    const queued = new Promise<Job>((resolve) => queue.once("job:queued", resolve));
    const rearmed = nextArm();
    armed.shift()!.fn(); // it fires (and, like a real timer, is gone)
    // The tick it started submits the check, then arms the next timer.
    expect(await queued).to.include({ stack: "s1", operation: "drift", source: "schedule" });
    await rearmed;

    expect((await store.listJobs({ operation: "drift" })).map((j) => j.stack)).to.deep.equal(["s1"]);
    expect(armed.map((t) => t.ms)).to.deep.equal([5 * 60_000]); // the next one: 12:10
    s.stop();
    expect(armed).to.deep.equal([]);
  });

  it("reports a schedule that cannot run once, and goes on with the others", async () => {
    const errors: { message: string; stack?: string }[] = [];
    const broken = (): Environment[] =>
      environments().map((env) => (env.name === "s2" ? { ...env, deploy: { ...env.deploy, driftSchedule: "61 * * * *" } } : env));
    const s = scheduler({ environments: broken, onError: (err, ctx) => errors.push({ message: err.message, stack: ctx.stack }) });
    s.start();

    const jobs = [...(await s.tick(at("2025-03-01T12:05:00Z"))), ...(await s.tick(at("2025-03-01T13:00:00Z")))];

    expect(jobs.map((j) => j.stack)).to.deep.equal(["s1"]);
    expect(errors).to.have.length(1);
    expect(errors[0].stack).to.equal("s2");
    expect(errors[0].message).to.match(/deploy\.driftSchedule: cron "61 \* \* \* \*": minute "61" is outside 0-59/);
  });

  describe("webhook", () => {
    const receivers: Receiver[] = [];
    afterEach(async () => {
      for (const r of receivers.splice(0)) await r.close();
    });

    async function receiver(statuses: number[]): Promise<{ receiver: Receiver; url: string }> {
      const r = new Receiver(statuses);
      receivers.push(r);
      return { receiver: r, url: await r.listen() };
    }

    /** Runs a scheduled drift check on s1 that finds drift; resolves with the finished job. */
    async function driftCheck(notifier: WebhookNotifier): Promise<Job> {
      engine.setDrift("s1", DRIFTED);
      queue.start();
      const s = scheduler({ notifier });
      s.start();
      const [job] = await s.tick(at("2025-03-01T12:05:00Z"));
      return done(job.id);
    }

    it("POSTs a signed drift notification without property values, retried after a 500", async () => {
      const { receiver: r, url } = await receiver([500, 204]);
      const notifier = new WebhookNotifier({ url, secret: SECRET, retryDelaysMs: [10] });

      const job = await driftCheck(notifier);
      await r.received(2);

      expect(job.status).to.equal("succeeded");
      const [failed, delivered] = r.requests;
      expect(delivered.body.equals(failed.body)).to.equal(true);
      expect(delivered.headers["x-deployer-delivery"]).to.be.a("string").and.equal(failed.headers["x-deployer-delivery"]);
      expect(delivered.headers["x-deployer-event"]).to.equal("drift.detected");
      expect(delivered.headers["content-type"]).to.equal("application/json");
      expect(verifyWebhookSignature(delivered.body, delivered.headers["x-deployer-signature"] as string, SECRET)).to.equal(true);
      expect(JSON.parse(delivered.body.toString())).to.deep.equal({
        event: "drift.detected",
        stack: "s1",
        jobId: job.id,
        detectedAt: job.finishedAt,
        drifted: [{ urn: DRIFTED[0].urn, type: "aws:s3/bucket:Bucket", kind: "update", properties: ["tags.Owner"] }],
      });
      expect(delivered.body.toString()).to.not.include("s3cret");
      const [delivery] = await notifier.pending();
      expect(delivery ?? { ok: true }).to.include({ ok: true });
    });

    it("never fails the drift job when the receiver keeps failing; the failure goes to onError after the last attempt", async () => {
      const { receiver: r, url } = await receiver([503]);
      const failures: { error: Error; delivery: WebhookDelivery }[] = [];
      let reported!: () => void;
      const failed = new Promise<void>((resolve) => (reported = resolve));
      const notifier = new WebhookNotifier({
        url,
        secret: SECRET,
        retryDelaysMs: [5, 10, 20],
        onError: (error, delivery) => {
          failures.push({ error, delivery });
          reported();
        },
      });

      const job = await driftCheck(notifier);
      await failed;

      expect(job.status).to.equal("succeeded");
      expect((await store.getJob(job.id))?.status).to.equal("succeeded");
      expect(r.requests).to.have.length(4);
      expect(failures).to.have.length(1);
      expect(failures[0].delivery).to.include({ ok: false, attempts: 4, status: 503 });
      expect(failures[0].error.message).to.match(/failed after 4 attempts: http:\/\/127\.0\.0\.1:\d+ answered 503/);
    });

    it("does not retry a notification the receiver refuses (4xx other than 429)", async () => {
      const { receiver: r, url } = await receiver([400]);
      const notifier = new WebhookNotifier({ url, secret: SECRET, retryDelaysMs: [5] });
      const job = await store.createJob({ stack: "s1", operation: "drift", requestedBy: "schedule", source: "schedule", engine: "offline", status: "succeeded", drift: DRIFTED, finishedAt: new Date().toISOString() });

      const delivery = await notifier.notifyDrift(job);

      expect(delivery).to.include({ ok: false, attempts: 1, status: 400 });
      expect(r.requests).to.have.length(1);
      expect(await notifier.notifyDrift({ ...job, drift: [] })).to.equal(undefined); // no drift, no notification
    });

    it("signs the exact body and verifies in constant time, refusing a wrong secret, a changed body or a malformed header", async () => {
      const body = JSON.stringify(driftNotification({ ...(await store.createJob({ stack: "s1", operation: "drift", requestedBy: "x", source: "api", engine: "offline" })), drift: DRIFTED }));
      const signature = signWebhookBody(body, SECRET);

      expect(signature).to.match(/^sha256=[0-9a-f]{64}$/);
      expect(verifyWebhookSignature(body, signature, SECRET)).to.equal(true);
      expect(verifyWebhookSignature(Buffer.from(body), signature, SECRET)).to.equal(true);
      expect(verifyWebhookSignature(body, signature, "other-secret")).to.equal(false);
      expect(verifyWebhookSignature(`${body} `, signature, SECRET)).to.equal(false);
      expect(verifyWebhookSignature(body, signature.slice(0, -2), SECRET)).to.equal(false);
      expect(verifyWebhookSignature(body, undefined, SECRET)).to.equal(false);
      expect(() => new WebhookNotifier({ url: "http://127.0.0.1/", secret: "" })).to.throw(ConfigError, /DEPLOYER_WEBHOOK_SECRET is required/);
      expect(() => new WebhookNotifier({ url: "ftp://example.com/", secret: SECRET })).to.throw(ConfigError, /http or https/);
    });
  });
});
