/**
 * The dashboard as the service serves it, without a browser: its files at `/` under their own strict
 * Content-Security-Policy while the API keeps helmet's, `GET /v1/me` (what the page shows by role),
 * and the page's event-stream client resuming after a dropped connection without duplicates.
 */
import { expect } from "chai";
import { buildDashboard } from "../../dashboard/build";
import { followEvents, SseParser, StreamRefusedError, type StreamEvent } from "../../dashboard/src/events";
import { startTestServer, type TestServer } from "../api/support/server";
import { requireChromium } from "./support/browser";

function directives(header: string | undefined): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const part of (header ?? "").split(";")) {
    const [name, ...values] = part.trim().split(/\s+/);
    if (name) out.set(name, values);
  }
  return out;
}

describe("dashboard: served by the service", function () {
  this.timeout(60_000);
  let t: TestServer;

  before(async () => {
    await buildDashboard({ quiet: true });
    t = await startTestServer({
      principals: [
        { name: "dev", roles: { s1: ["deployer"], s2: ["viewer"] } },
        { name: "nobody-s2", roles: { s1: ["viewer"] } },
      ],
    });
  });

  afterEach(() => t.engine.unhold());

  after(async () => {
    await t?.close();
  });

  it("serves the page at / with a CSP that allows no inline script and connects only to itself", async () => {
    const res = await t.anonymous().get("/");
    expect(res.status).to.equal(200);
    expect(res.headers["content-type"]).to.match(/^text\/html/);
    expect(res.headers["cache-control"]).to.equal("no-store");
    const csp = directives(res.headers["content-security-policy"]);
    expect(csp.get("default-src")).to.deep.equal(["'none'"]);
    expect(csp.get("script-src")).to.deep.equal(["'self'"]);
    expect(csp.get("style-src")).to.deep.equal(["'self'"]);
    expect(csp.get("connect-src")).to.deep.equal(["'self'"]);
    expect(csp.get("frame-ancestors")).to.deep.equal(["'none'"]);
    expect(res.headers["content-security-policy"]).to.not.include("unsafe");
    // Only same-origin files, and no inline script in the page.
    expect(res.text).to.not.match(/<script(?![^>]*\bsrc=)[^>]*>/);
    expect(res.text).to.not.match(/(src|href)="(https?:)?\/\//);
    // helmet's other headers still apply.
    expect(res.headers["x-content-type-options"]).to.equal("nosniff");
  });

  it("serves the built assets with a long cache, and nothing outside them", async () => {
    const page = await t.anonymous().get("/");
    const script = /src="(\/assets\/[^"]+\.js)"/.exec(page.text)?.[1];
    expect(script, "the page loads its script from /assets").to.be.a("string");
    const res = await t.anonymous().get(script!);
    expect(res.status).to.equal(200);
    expect(res.headers["content-type"]).to.match(/javascript/);
    expect(res.headers["cache-control"]).to.match(/max-age=31536000/);
    expect((await t.anonymous().get("/assets/nope.js")).status).to.equal(404);
    expect((await t.anonymous().get("/index.html")).status).to.equal(404);
  });

  it("leaves the API's helmet policy as it was", async () => {
    const res = await t.http().get("/v1/stacks");
    expect(res.status).to.equal(200);
    const csp = directives(res.headers["content-security-policy"]);
    expect(csp.get("default-src")).to.deep.equal(["'self'"]);
  });

  it("GET /v1/me names the caller and its roles on each stack it may read, and no other", async () => {
    const res = await t.as("dev").get("/v1/me");
    expect(res.status).to.equal(200);
    expect(res.body).to.deep.equal({ name: "dev", stacks: { s1: ["viewer", "deployer"], s2: ["viewer"] } });
    const viewer = await t.as("nobody-s2").get("/v1/me");
    expect(viewer.body).to.deep.equal({ name: "nobody-s2", stacks: { s1: ["viewer"] } });
    expect((await t.anonymous().get("/v1/me")).status).to.equal(401);
  });

  it("follows a job's events live, resumes with Last-Event-ID after a dropped connection, and hands on no event twice", async () => {
    t.engine.hold();
    const res = await t.http().post("/v1/stacks/s1/deployments").send({ version: "1.0.1" });
    expect(res.status).to.equal(202);
    await t.engine.nextCall({ stack: "s1" });
    const seen: StreamEvent[] = [];
    const resumedAfter: number[] = [];
    const lastEventIds: (string | null)[] = [];
    let end: any;
    let dropped = false;
    const done = followEvents(`${t.url}/v1/jobs/${res.body.id}/events`, {
      token: t.token(),
      retryMs: 10,
      fetch: (url, init) => {
        lastEventIds.push(new Headers(init?.headers).get("Last-Event-ID"));
        return fetch(url, init);
      },
      onEvent: (e) => {
        seen.push(e);
        // Drop every open stream once, mid-job, while the engine is still held.
        if (!dropped) {
          dropped = true;
          setImmediate(() => t.server.ctx.streams.closeAll());
        }
      },
      onReconnect: (_attempt, after) => {
        resumedAfter.push(after);
        t.engine.unhold();
      },
      onEnd: (job) => (end = job),
    });
    await done;
    const job = await t.done(res.body.id);
    expect(end).to.include({ id: job.id, status: "succeeded" });
    expect(resumedAfter.length).to.be.greaterThan(0);
    expect(lastEventIds[0]).to.equal(null);
    expect(Number(lastEventIds[1])).to.equal(resumedAfter[0]);
    const ids = seen.map((e) => e.id);
    expect(ids).to.deep.equal(Array.from({ length: job.lastEventSeq }, (_, i) => i + 1));
  });

  it("stops with the service's message when the stream is refused", async () => {
    const res = await t.http().post("/v1/stacks/s2/previews").send({});
    await t.done(res.body.id);
    const err = await followEvents(`${t.url}/v1/jobs/${res.body.id}/events`, { token: t.token("nobody-s2"), onEvent: () => undefined }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).to.be.instanceOf(StreamRefusedError);
    expect((err as StreamRefusedError).status).to.equal(404);
    expect((err as Error).message).to.equal(`job ${res.body.id} not found`);
  });

  it("parses events split anywhere across chunks, with CRLF line ends and comments", () => {
    const text = ": keep-alive\r\n\r\nid: 1\r\nevent: phase\r\ndata: {\"a\":1}\r\n\r\nid: 2\nevent: log\ndata: x\ndata: y\n\n";
    for (let cut = 0; cut <= text.length; cut++) {
      const parser = new SseParser();
      const events = [...parser.feed(text.slice(0, cut)), ...parser.feed(text.slice(cut))];
      expect(events, `cut at ${cut}`).to.deep.equal([
        { id: "1", type: "phase", data: '{"a":1}' },
        { id: "2", type: "log", data: "x\ny" },
      ]);
    }
  });
});

describe("dashboard: the browser tests without Chromium", () => {
  const missing = "/nonexistent/chromium";

  it("skip with one line locally", () => {
    const lines: string[] = [];
    let skipped = 0;
    requireChromium({ skip: () => void skipped++ } as never, missing, {}, (l) => lines.push(l));
    expect(skipped).to.equal(1);
    expect(lines).to.deep.equal([`      (browser tests skipped: ${missing} is missing; apt-get install -y chromium)`]);
  });

  it("fail under CI=true", () => {
    let skipped = 0;
    expect(() => requireChromium({ skip: () => void skipped++ } as never, missing, { CI: "true" }, () => undefined)).to.throw(`${missing} is missing`);
    expect(skipped).to.equal(0);
  });
});
