/** GET /v1/jobs/:id/events: replay after Last-Event-ID, live events, the end of the stream, heartbeats, cleanup. */
import { expect } from "chai";
import { once } from "events";
import { writeFileSync } from "fs";
import { ADMIN, startTestServer, tokensFileFor, type TestServer } from "./support/server";
import { openSse } from "./support/sse";

describe("api: job events (SSE)", function () {
  this.timeout(30_000);
  let t: TestServer;

  beforeEach(async () => {
    t = await startTestServer({ sseHeartbeatMs: 50 });
  });

  afterEach(async () => {
    await t.close();
  });

  async function finishedJob(): Promise<{ id: string; lastEventSeq: number }> {
    const res = await t.http().post("/v1/stacks/s1/deployments").send({ version: "1.0.0" });
    const job = await t.done(res.body.id);
    return { id: job.id, lastEventSeq: job.lastEventSeq };
  }

  describe("streams per principal and revoked tokens", () => {
    let u: TestServer;
    afterEach(async () => {
      u?.engine.unhold();
      await u?.close();
    });

    it("caps the open streams of a principal with 429 naming the cap; another principal is not affected", async () => {
      u = await startTestServer({ maxStreamsPerPrincipal: 2, principals: [{ name: "watcher", roles: { "*": ["viewer"] } }] });
      u.engine.hold();
      const res = await u.http().post("/v1/stacks/s1/deployments").send({ version: "1.0.0" });
      await u.engine.nextCall({ stack: "s1" });
      const url = `${u.url}/v1/jobs/${res.body.id}/events`;
      const open = [await openSse(url, u.auth("watcher")), await openSse(url, u.auth("watcher"))];
      expect(open.map((s) => s.response.statusCode)).to.deep.equal([200, 200]);
      const third = await u.as("watcher").get(`/v1/jobs/${res.body.id}/events`);
      expect(third.status).to.equal(429);
      expect(third.body.error.message).to.include("cap per principal (2)");
      const admin = await openSse(url, u.auth());
      expect(admin.response.statusCode).to.equal(200);
      for (const s of [...open, admin]) s.close();
    });

    it("closes a revoked token's open streams when the tokens are reloaded", async () => {
      u = await startTestServer({ principals: [{ name: "watcher", roles: { "*": ["viewer"] } }] });
      u.engine.hold();
      const res = await u.http().post("/v1/stacks/s1/deployments").send({ version: "1.0.0" });
      await u.engine.nextCall({ stack: "s1" });
      const url = `${u.url}/v1/jobs/${res.body.id}/events`;
      const watcher = await openSse(url, u.auth("watcher"));
      const admin = await openSse(url, u.auth());
      const next = tokensFileFor([ADMIN]);
      writeFileSync(u.tokensFile, next.text);
      // The admin keeps its token: its stream must stay open.
      expect(u.server.reloadTokens()).to.deep.equal({ ok: true, count: 1 });
      await watcher.ended;
      expect(u.server.ctx.streams.size).to.equal(1);
      admin.close();
    });
  });

  it("replays a finished job's events with ids in order, then ends with the job", async () => {
    const job = await finishedJob();
    const stream = await openSse(`${t.url}/v1/jobs/${job.id}/events`, t.auth());
    expect(stream.response.statusCode).to.equal(200);
    expect(stream.response.headers["content-type"]).to.match(/^text\/event-stream/);
    expect(stream.response.headers["cache-control"]).to.equal("no-cache");
    expect(stream.response.headers["x-accel-buffering"]).to.equal("no");
    await stream.ended;
    const events = stream.events.filter((e) => e.event !== "end");
    expect(events.map((e) => Number(e.id))).to.deep.equal(Array.from({ length: job.lastEventSeq }, (_, i) => i + 1));
    expect(events.some((e) => e.event === "phase")).to.equal(true);
    const end = stream.events[stream.events.length - 1];
    expect(end.event).to.equal("end");
    expect(end.id).to.equal(undefined);
    expect(end.data).to.include({ id: job.id, status: "succeeded" });
  });

  it("replays only what follows Last-Event-ID (header or query parameter)", async () => {
    const job = await finishedJob();
    const after = job.lastEventSeq - 2;
    const byHeader = await openSse(`${t.url}/v1/jobs/${job.id}/events`, { ...t.auth(), "Last-Event-ID": String(after) });
    await byHeader.ended;
    expect(byHeader.events.filter((e) => e.id).map((e) => Number(e.id))).to.deep.equal([after + 1, after + 2]);
    const byQuery = await openSse(`${t.url}/v1/jobs/${job.id}/events?lastEventId=${job.lastEventSeq}`, t.auth());
    await byQuery.ended;
    expect(byQuery.events.map((e) => e.event)).to.deep.equal(["end"]);
  });

  it("refuses a Last-Event-ID that is not a number, naming it", async () => {
    const job = await finishedJob();
    const res = await t.http().get(`/v1/jobs/${job.id}/events`).set("Last-Event-ID", "abc");
    expect(res.status).to.equal(400);
    expect(res.body.error.details.field).to.equal("Last-Event-ID");
    // What Number() would read but is no event id (found by the fuzz test: "0." was replayed from 0).
    for (const value of ["0.", "1e3", "0x10", "2.0"]) {
      const odd = await t.http().get(`/v1/jobs/${job.id}/events`).set("Last-Event-ID", value);
      expect(odd.status, value).to.equal(400);
      const query = await t.http().get(`/v1/jobs/${job.id}/events?lastEventId=${encodeURIComponent(value)}`);
      expect(query.status, `?lastEventId=${value}`).to.equal(400);
    }
  });

  it("streams a running job's events live, without gaps or repeats across the replay, and ends when it does", async () => {
    t.engine.hold();
    const res = await t.http().post("/v1/stacks/s1/deployments").send({ version: "1.0.0" });
    const call = await t.engine.nextCall({ stack: "s1", op: "preview" });
    const stream = await openSse(`${t.url}/v1/jobs/${res.body.id}/events`, t.auth());
    // Replayed: what happened before the call was held.
    await stream.next((e) => e.event === "started");
    call.release();
    // Live: the preview's summary arrives after the stream opened.
    await stream.next((e) => e.event === "summary");
    t.engine.unhold();
    const end = await stream.next((e) => e.event === "end");
    expect(end.data.status).to.equal("succeeded");
    await stream.ended;
    const ids = stream.events.filter((e) => e.id).map((e) => Number(e.id));
    expect(ids).to.deep.equal(Array.from({ length: end.data.lastEventSeq }, (_, i) => i + 1));
  });

  it("sends keep-alive comments while the job is quiet", async () => {
    t.engine.hold();
    const res = await t.http().post("/v1/stacks/s1/drift-checks").send({});
    await t.engine.nextCall({ stack: "s1" });
    const stream = await openSse(`${t.url}/v1/jobs/${res.body.id}/events`, t.auth());
    expect(await stream.nextComment()).to.equal(": keep-alive");
    stream.close();
    t.engine.unhold();
  });

  it("ends the stream of a queued job that is canceled", async () => {
    t.engine.hold();
    await t.http().post("/v1/stacks/s1/drift-checks").send({});
    const queued = await t.http().post("/v1/stacks/s1/drift-checks").send({});
    const stream = await openSse(`${t.url}/v1/jobs/${queued.body.id}/events`, t.auth());
    await t.http().post(`/v1/jobs/${queued.body.id}/cancel`).send({});
    const end = await stream.next((e) => e.event === "end");
    expect(end.data.status).to.equal("canceled");
    await stream.ended;
  });

  it("lets go of its listeners when the client disconnects", async () => {
    t.engine.hold();
    const res = await t.http().post("/v1/stacks/s1/drift-checks").send({});
    await t.engine.nextCall({ stack: "s1" });
    const listenersBefore = t.server.queue.listenerCount("job:done");
    const stream = await openSse(`${t.url}/v1/jobs/${res.body.id}/events`, t.auth());
    await stream.next((e) => e.event === "started");
    expect(t.server.ctx.streams.size).to.equal(1);
    expect(t.server.queue.listenerCount("job:done")).to.equal(listenersBefore + 1);
    const closed = once(t.server.ctx.streams, "closed");
    stream.close();
    await closed;
    expect(t.server.ctx.streams.size).to.equal(0);
    expect(t.server.queue.listenerCount("job:done")).to.equal(listenersBefore);
    t.engine.unhold();
  });
});
