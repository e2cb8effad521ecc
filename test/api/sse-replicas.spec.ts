/**
 * Live events across replicas on PostgreSQL: a "writer" replica (a PostgresStore, as a job's runner
 * uses it) appends a job's events and finishes it; the service (another replica, over HTTP) streams
 * them as SSE live, from the store's announcements, with a heartbeat too slow to be what delivers.
 */
import { expect } from "chai";
import { openPostgresStore, type PostgresStore } from "../../automation/store";
import { createTestDatabase, requirePostgresOrSkip, type TestDatabase } from "../support/postgres";
import { startTestServer, type TestServer } from "./support/server";
import { openSse, type SseEvent, type SseStream } from "./support/sse";

function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  return Promise.race([p, new Promise<T>((_, reject) => setTimeout(() => reject(new Error(`timed out: ${what}`)), ms))]);
}

const ids = (s: SseStream) => s.events.filter((e) => e.id !== undefined).map((e) => Number(e.id));
const hasId = (n: number) => (e: SseEvent) => e.id === String(n);

describe("api: SSE across replicas (PostgreSQL)", function () {
  this.timeout(60_000);
  let db: TestDatabase;
  let writer: PostgresStore;
  let t: TestServer;

  before(function () {
    requirePostgresOrSkip(this);
  });

  beforeEach(async () => {
    db = await createTestDatabase();
    writer = await openPostgresStore(db.url);
    t = await startTestServer({ databaseUrl: db.url, sseHeartbeatMs: 60_000 });
  });

  afterEach(async () => {
    await t?.close();
    await writer?.close();
    await db?.drop();
  });

  it("streams another replica's job live, in order, without repeats; Last-Event-ID resumes; a terminal status ends it", async () => {
    // The job runs in the writer replica: running, under its live lease (so the service leaves it be).
    const job = await writer.createJob({ stack: "s1", operation: "up", requestedBy: "alice", source: "api", engine: "offline", status: "running" });
    await writer.acquireLease("s1", { owner: "service:writer-replica", ttlMs: 60_000, jobId: job.id });
    for (let i = 1; i <= 2; i++) await writer.appendEvent(job.id, { type: "log", data: { line: i } });

    const url = `${t.url}/v1/jobs/${job.id}/events`;
    const first = await openSse(url, t.auth());
    await within(first.next(hasId(2)), 5_000, "the replay");

    for (let i = 3; i <= 12; i++) await writer.appendEvent(job.id, { type: "log", data: { line: i } });
    await within(first.next(hasId(12)), 5_000, "live events 3..12");
    expect(first.events.find(hasId(7))?.data).to.deep.equal({ line: 7 });

    // A client resuming with Last-Event-ID gets what follows it, then the live ones.
    const resumed = await openSse(url, { ...t.auth(), "Last-Event-ID": "9" });
    await within(resumed.next(hasId(12)), 5_000, "the resumed replay");
    await Promise.all(Array.from({ length: 5 }, (_, i) => writer.appendEvent(job.id, { type: "log", data: { line: 13 + i } })));
    await within(Promise.all([first.next(hasId(17)), resumed.next(hasId(17))]), 5_000, "live events 13..17 on both");

    await writer.appendEvent(job.id, { type: "log", data: { line: 18 } });
    await writer.updateJob(job.id, { status: "succeeded", finishedAt: new Date().toISOString() });
    await within(Promise.all([first.ended, resumed.ended]), 5_000, "the end of both streams");

    expect(ids(first)).to.deep.equal(Array.from({ length: 18 }, (_, i) => i + 1));
    expect(ids(resumed)).to.deep.equal(Array.from({ length: 9 }, (_, i) => 10 + i));
    for (const s of [first, resumed]) {
      const end = s.events[s.events.length - 1];
      expect(end.event).to.equal("end");
      expect(end.data).to.include({ id: job.id, status: "succeeded", lastEventSeq: 18 });
    }
    expect(t.server.ctx.streams.size).to.equal(0);
  });
});
