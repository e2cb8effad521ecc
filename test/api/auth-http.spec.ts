/**
 * Authentication over HTTP: bearer tokens on every /v1 route (401 with WWW-Authenticate otherwise),
 * the principal recorded on jobs, lists showing only what the caller may read, tokens reloaded without
 * a restart (a bad file keeps the old ones), the rate limits, and tokens never in a log line.
 */
import { expect } from "chai";
import { writeFileSync } from "fs";
import { createLogger } from "../../api/logging";
import { errorOf, startTestServer, tokensFileFor, type TestServer } from "./support/server";

/** A pino destination collecting every line. */
function captureLogs(): { lines: string[]; logger: ReturnType<typeof createLogger> } {
  const lines: string[] = [];
  return { lines, logger: createLogger({ level: "debug", destination: { write: (s: string) => void lines.push(s) } }) };
}

describe("api: authentication", function () {
  this.timeout(30_000);
  let t: TestServer;

  afterEach(async () => {
    await t?.close();
  });

  describe("bearer tokens", () => {
    let logs: ReturnType<typeof captureLogs>;
    beforeEach(async () => {
      logs = captureLogs();
      t = await startTestServer({ logger: logs.logger, principals: [{ name: "dev-deployer", roles: { s1: ["deployer"] } }] });
    });

    it("answers 401 unauthenticated with WWW-Authenticate: Bearer without a token, and runs nothing", async () => {
      for (const [method, path] of [["get", "/v1/stacks"], ["get", "/v1/jobs"], ["post", "/v1/stacks/s1/deployments"], ["get", "/v1/audit"]] as const) {
        const res = await t.anonymous()[method](path).send(method === "post" ? { version: "1.0.0" } : undefined);
        expect(res.status, path).to.equal(401);
        expect(errorOf(res).code).to.equal("unauthenticated");
        expect(res.headers["www-authenticate"]).to.equal('Bearer realm="deployer"');
      }
      expect(await t.jobCount()).to.equal(0);
      expect(t.engine.calls).to.have.length(0);
    });

    it("refuses an unknown token, another scheme, a token in the query string, and a token with a suffix", async () => {
      const good = t.token();
      const attempts: [string, Record<string, string>, string?][] = [
        ["unknown token", { Authorization: "Bearer dpl_not-a-real-token" }],
        ["basic auth", { Authorization: `Basic ${Buffer.from(`admin:${good}`).toString("base64")}` }],
        ["a suffix", { Authorization: `Bearer ${good}x` }],
        ["two tokens", { Authorization: `Bearer ${good} ${good}` }],
        ["no scheme", { Authorization: good }],
        ["query string", {}, `?access_token=${good}`],
      ];
      for (const [name, headers, query] of attempts) {
        const res = await t.anonymous().get(`/v1/stacks${query ?? ""}`).set(headers);
        expect(res.status, name).to.equal(401);
        expect(res.headers["www-authenticate"], name).to.match(/^Bearer realm="deployer"/);
        expect(res.text, name).to.not.contain(good);
      }
      const invalid = await t.anonymous().get("/v1/stacks").set("Authorization", "Bearer nope");
      expect(invalid.headers["www-authenticate"]).to.equal('Bearer realm="deployer", error="invalid_token"');
    });

    it("accepts the scheme in any case and records the token's name as the requester", async () => {
      const res = await t.anonymous().post("/v1/stacks/s1/previews").set("Authorization", `bearer ${t.token("dev-deployer")}`).send({});
      expect(res.status).to.equal(202);
      expect(res.body.requestedBy).to.equal("dev-deployer");
      await t.done(res.body.id);
    });

    it("serves the public routes without a token", async () => {
      for (const path of ["/healthz", "/readyz", "/openapi.json"]) expect((await t.anonymous().get(path)).status, path).to.equal(200);
      expect((await t.anonymous().get("/metrics")).status).to.equal(401);
    });

    it("never writes a token or an Authorization header to the log", async () => {
      await t.http().get("/v1/stacks");
      await t.anonymous().get("/v1/stacks").set("Authorization", "Bearer dpl_wrong-guess-value");
      await t.http().post("/v1/stacks/s1/deployments").send({ version: "nope latest" });
      logs.logger.info({ headers: { authorization: "Bearer dpl_direct" }, token: "dpl_direct2", nested: { password: "pw-direct" } }, "careless line");
      const all = logs.lines.join("");
      expect(logs.lines.some((l) => l.includes('"msg":"request"'))).to.equal(true);
      for (const secret of [t.token(), t.token("dev-deployer"), "dpl_wrong-guess-value", "dpl_direct", "dpl_direct2", "pw-direct"]) expect(all).to.not.contain(secret);
      expect(all.toLowerCase()).to.not.contain('"authorization":"bearer');
    });
  });

  describe("what a principal may see", () => {
    beforeEach(async () => {
      t = await startTestServer({
        stacks: ["s1", "s2", "s3"],
        principals: [
          { name: "dev-deployer", roles: { s1: ["deployer"] } },
          { name: "two-viewer", roles: { s1: ["viewer"], s2: ["viewer"] } },
          { name: "approver-only", roles: { s3: ["approver"] } },
        ],
      });
      for (const stack of ["s1", "s2", "s3"]) await t.done((await t.http().post(`/v1/stacks/${stack}/previews`).send({})).body.id);
    });

    it("lists only the stacks the caller may read", async () => {
      const names = async (who: string) => (await t.as(who).get("/v1/stacks")).body.stacks.map((s: { name: string }) => s.name);
      expect(await names("dev-deployer")).to.deep.equal(["s1"]);
      expect(await names("two-viewer")).to.deep.equal(["s1", "s2"]);
      expect((await t.http().get("/v1/stacks")).body.stacks).to.have.length(3);
      expect((await t.as("approver-only").get("/v1/stacks")).status).to.equal(403);
    });

    it("lists only the jobs of stacks the caller may read, and nothing for a stack filter it may not read", async () => {
      const stacks = async (who: string, query = "") => (await t.as(who).get(`/v1/jobs${query}`)).body.jobs.map((j: { stack: string }) => j.stack);
      expect(await stacks("dev-deployer")).to.deep.equal(["s1"]);
      expect((await stacks("two-viewer")).sort()).to.deep.equal(["s1", "s2"]);
      expect(await stacks("dev-deployer", "?stack=s2")).to.deep.equal([]);
      expect(await stacks("dev-deployer", "?stack=s1")).to.deep.equal(["s1"]);
      expect((await t.http().get("/v1/jobs")).body.jobs).to.have.length(3);
    });

    it("answers 404 for another stack's job, its events and its log", async () => {
      const s2Job = (await t.http().get("/v1/jobs?stack=s2")).body.jobs[0].id;
      for (const suffix of ["", "/events", "/log"]) {
        const res = await t.as("dev-deployer").get(`/v1/jobs/${s2Job}${suffix}`);
        expect(res.status, suffix).to.equal(404);
        expect(errorOf(res).message).to.equal(`job ${s2Job} not found`);
      }
    });
  });

  describe("reloading the tokens file (SIGHUP)", () => {
    it("takes new tokens and drops removed ones; a bad file keeps the tokens in force and logs why", async () => {
      const logs = captureLogs();
      t = await startTestServer({ logger: logs.logger });
      const oldAdmin = t.token();
      const next = tokensFileFor([{ name: "ops", roles: { "*": ["admin"] } }]);
      writeFileSync(t.tokensFile, next.text);
      expect(t.server.reloadTokens()).to.deep.equal({ ok: true, count: 1 });
      const asOps = (path: string) => t.anonymous().get(path).set("Authorization", `Bearer ${next.tokens.get("ops")}`);
      expect((await asOps("/v1/stacks")).status).to.equal(200);
      expect((await t.anonymous().get("/v1/stacks").set("Authorization", `Bearer ${oldAdmin}`)).status).to.equal(401);

      writeFileSync(t.tokensFile, "tokens:\n  - name: broken\n    sha256: 1234\n    roles: { '*': [admin] }\n");
      const result = t.server.reloadTokens();
      expect(result.ok).to.equal(false);
      expect((await asOps("/v1/stacks")).status).to.equal(200);
      const line = logs.lines.map((l) => JSON.parse(l)).find((l) => l.msg.startsWith("tokens file not reloaded"));
      expect(line.reason).to.match(/tokens\.0\.sha256/);
    });
  });

  describe("rate limits", () => {
    it("limits mutations per principal with 429 rate_limited, Retry-After and RateLimit headers; reads and others go on", async () => {
      t = await startTestServer({ rateLimits: { mutationsPerWindow: 3 }, principals: [{ name: "other", roles: { "*": ["deployer"] } }] });
      for (let i = 0; i < 3; i++) {
        const ok = await t.http().post("/v1/stacks/s1/drift-checks").send({});
        expect(ok.status).to.equal(202);
        expect(ok.headers["ratelimit"]).to.match(new RegExp(`^"mutations"; r=${2 - i}; t=\\d+$`));
        expect(ok.headers["ratelimit-policy"]).to.match(/^"mutations"; q=3; w=60; pk=/);
      }
      const before = await t.jobCount();
      const limited = await t.http().post("/v1/stacks/s1/drift-checks").send({});
      expect(limited.status).to.equal(429);
      const error = errorOf(limited);
      expect(error.code).to.equal("rate_limited");
      expect(Number(limited.headers["retry-after"])).to.be.within(1, 60);
      expect(limited.headers["ratelimit"]).to.match(/^"mutations"; r=0; t=\d+$/);
      expect(await t.jobCount()).to.equal(before);
      expect((await t.http().get("/v1/stacks")).status).to.equal(200);
      expect((await t.as("other").post("/v1/stacks/s1/drift-checks").send({})).status).to.equal(202);
    });

    it("limits failed authentications per address, and never refuses a valid token from that address", async () => {
      t = await startTestServer({ rateLimits: { unauthenticatedPerWindow: 3 } });
      for (let i = 0; i < 10; i++) expect((await t.http().get("/v1/stacks")).status).to.equal(200);
      for (let i = 0; i < 3; i++) {
        const res = await t.anonymous().get("/v1/stacks").set("Authorization", `Bearer guess-${i}`);
        expect(res.status).to.equal(401);
        expect(res.headers["ratelimit"]).to.match(/^"unauthenticated"; r=\d+; t=\d+$/);
      }
      const limited = await t.anonymous().get("/v1/stacks").set("Authorization", "Bearer guess-4");
      expect(limited.status).to.equal(429);
      expect(errorOf(limited).code).to.equal("rate_limited");
      expect(Number(limited.headers["retry-after"])).to.be.within(1, 60);
      expect((await t.http().get("/v1/stacks")).status).to.equal(200);
      expect((await t.http().post("/v1/stacks/s1/drift-checks").send({})).status).to.equal(202);
      expect((await t.anonymous().get("/healthz")).status).to.equal(200);
    });

    it("aggregates the audit records of refused anonymous requests: one per address and window, with a count", async () => {
      t = await startTestServer({ rateLimits: { unauthenticatedPerWindow: 3 } });
      for (let i = 0; i < 40; i++) await t.anonymous().get(i % 2 ? "/v1/stacks" : "/v1/jobs").set("Authorization", "Bearer nope");
      const audited = async () => (await t.server.store.listAudit({})).filter((e) => e.actor === undefined);
      expect(await audited()).to.have.length(0); // the window is still open
      await t.server.ctx.audit.flush();
      const rows = await audited();
      expect(rows).to.have.length(1);
      expect(rows[0]).to.deep.include({ result: "denied", status: 401, address: rows[0].address });
      expect(rows[0].details).to.deep.include({ aggregated: true, count: 40, statuses: { "401": 3, "429": 37 } });
      expect((rows[0].details as { actions: string[] }).actions.sort()).to.deep.equal(["GET /v1/jobs", "GET /v1/stacks"]);
    });
  });
});
