/**
 * Bad input, answered in the design's error shape with a request id and no stack trace, and with
 * nothing written: the job count stays what it was and the engine is never called.
 */
import { expect } from "chai";
import { errorOf, startTestServer, type TestServer } from "./support/server";

const URN = "urn:pulumi:s1::pulumi-aws-deployer::aws:ecs/service:Service::web-s1-service";

describe("api: bad input", function () {
  this.timeout(30_000);
  let t: TestServer;

  before(async () => {
    t = await startTestServer();
  });

  after(async () => {
    await t.close();
  });

  /** Each case: what is sent, the status and code expected, and the field named (if any). */
  const cases: { name: string; method: "get" | "post"; path: string; body?: unknown; raw?: string; type?: string; status: number; code: string; field?: string }[] = [
    { name: "an unknown stack", method: "post", path: "/v1/stacks/nope/deployments", body: { version: "1.0.0" }, status: 404, code: "not_found" },
    { name: "a stack name that cannot exist", method: "post", path: "/v1/stacks/..%2Fetc/deployments", body: { version: "1.0.0" }, status: 404, code: "not_found" },
    { name: "an upper-case stack name", method: "get", path: "/v1/stacks/S1", status: 404, code: "not_found" },
    { name: "a missing version", method: "post", path: "/v1/stacks/s1/deployments", body: {}, status: 400, code: "invalid_request", field: "version" },
    { name: "version latest", method: "post", path: "/v1/stacks/s1/deployments", body: { version: "latest" }, status: 400, code: "invalid_request", field: "version" },
    { name: "a version with a shell character", method: "post", path: "/v1/stacks/s1/deployments", body: { version: "1.0;rm -rf" }, status: 400, code: "invalid_request", field: "version" },
    { name: "a version that is a number", method: "post", path: "/v1/stacks/s1/previews", body: { version: 1 }, status: 400, code: "invalid_request", field: "version" },
    { name: "a target that is not a URN", method: "post", path: "/v1/stacks/s1/deployments", body: { version: "1.0.0", target: ["web-service"] }, status: 400, code: "invalid_request", field: "target" },
    { name: "a target of another stack", method: "post", path: "/v1/stacks/s1/deployments", body: { version: "1.0.0", target: [URN.replace(":s1::", ":s2::")] }, status: 400, code: "invalid_request", field: "target" },
    { name: "an unknown body field", method: "post", path: "/v1/stacks/s1/deployments", body: { version: "1.0.0", yes: true }, status: 400, code: "invalid_request", field: "yes" },
    { name: "a body that is an array", method: "post", path: "/v1/stacks/s1/drift-checks", body: [], status: 400, code: "invalid_request" },
    { name: "malformed JSON", method: "post", path: "/v1/stacks/s1/deployments", raw: '{"version":', type: "application/json", status: 400, code: "invalid_request", field: "body" },
    { name: "a body that is not JSON", method: "post", path: "/v1/stacks/s1/drift-checks", raw: "version=1.0.0", type: "application/x-www-form-urlencoded", status: 400, code: "invalid_request", field: "body" },
    { name: "a body over 100 kB", method: "post", path: "/v1/stacks/s1/deployments", raw: JSON.stringify({ version: "1.0.0", message: "x".repeat(101 * 1024) }), type: "application/json", status: 413, code: "payload_too_large" },
    { name: "a rollback without a reason", method: "post", path: "/v1/stacks/s1/rollbacks", body: {}, status: 400, code: "invalid_request", field: "reason" },
    { name: "a rollback to something that is neither id nor version", method: "post", path: "/v1/stacks/s1/rollbacks", body: { to: "../x", reason: "r" }, status: 400, code: "invalid_request", field: "to" },
    { name: "a destroy confirming another stack", method: "post", path: "/v1/stacks/s1/destroys", body: { confirm: "s2" }, status: 400, code: "invalid_request", field: "confirm" },
    { name: "a destroy without confirm", method: "post", path: "/v1/stacks/s1/destroys", body: {}, status: 400, code: "invalid_request", field: "confirm" },
    { name: "a drift check with a body field", method: "post", path: "/v1/stacks/s1/drift-checks", body: { force: true }, status: 400, code: "invalid_request", field: "force" },
    { name: "an unknown job", method: "get", path: "/v1/jobs/job_00000000000000000000000000", status: 404, code: "not_found" },
    { name: "a job id of the wrong shape", method: "get", path: "/v1/jobs/42", status: 404, code: "not_found" },
    { name: "the events of an unknown job", method: "get", path: "/v1/jobs/job_00000000000000000000000000/events", status: 404, code: "not_found" },
    { name: "a cancel with a non-boolean force", method: "post", path: "/v1/jobs/job_00000000000000000000000000/cancel", body: { force: "yes" }, status: 404, code: "not_found" },
    { name: "a job list limit out of range", method: "get", path: "/v1/jobs?limit=501", status: 400, code: "invalid_request", field: "limit" },
    { name: "an unknown job status filter", method: "get", path: "/v1/jobs?status=running,done", status: 400, code: "invalid_request", field: "status" },
    { name: "a malformed cursor", method: "get", path: "/v1/jobs?before=x", status: 400, code: "invalid_request", field: "before" },
    { name: "an unknown query parameter", method: "get", path: "/v1/jobs?sort=asc", status: 400, code: "invalid_request", field: "sort" },
    { name: "an unknown route", method: "get", path: "/v1/nothing", status: 404, code: "not_found" },
    { name: "an approval of an unknown job", method: "post", path: "/v1/jobs/job_00000000000000000000000000/approvals", body: {}, status: 404, code: "not_found" },
  ];

  for (const c of cases) {
    it(`answers ${c.status} ${c.code} for ${c.name}${c.field ? `, naming ${c.field}` : ""}, and writes nothing`, async () => {
      const before = await t.jobCount();
      const calls = t.engine.calls.length;
      let req = t.http()[c.method](c.path);
      if (c.raw !== undefined) req = req.set("Content-Type", c.type!).send(c.raw);
      else if (c.body !== undefined) req = req.send(c.body as object);
      const res = await req;
      expect(res.status, res.text).to.equal(c.status);
      const error = errorOf(res);
      expect(error.code).to.equal(c.code);
      expect(error.requestId).to.equal(res.headers["x-request-id"]);
      if (c.field) {
        expect(error.details?.field, res.text).to.equal(c.field);
        expect(error.message).to.contain(c.field);
      }
      expect(await t.jobCount()).to.equal(before);
      expect(t.engine.calls.length).to.equal(calls);
    });
  }

  // zod 4's issues carry no input, so every type error used to read "is required".
  const typeErrors: [string, string, unknown, string][] = [
    ["a version that is a number", "/v1/stacks/s1/previews", { version: 5 }, "version: must be a string"],
    ["a version that is null", "/v1/stacks/s1/deployments", { version: null }, "version: must be a string"],
    ["a target that is a string", "/v1/stacks/s1/deployments", { version: "1.0.0", target: URN }, "target: must be an array"],
    ["a reason that is an object", "/v1/stacks/s1/rollbacks", { reason: {} }, "reason: must be a string"],
    ["a missing reason", "/v1/stacks/s1/rollbacks", {}, "reason: is required"],
  ];
  for (const [name, url, body, message] of typeErrors) {
    it(`says what type a field must be for ${name} ("${message}")`, async () => {
      const res = await t.http().post(url).send(body as object);
      expect(res.status, res.text).to.equal(400);
      expect(errorOf(res).message).to.equal(message);
    });
  }

  it("refuses a mutation of a stack that is unknown before reading any file for it", async () => {
    const res = await t.http().get("/v1/stacks/zz-not-here/outputs");
    expect(res.status).to.equal(404);
    expect(errorOf(res).message).to.not.match(/known|\.yaml/);
  });

  it("answers an unexpected failure with a generic 500, never the error's text", async () => {
    const original = t.engine.outputs;
    t.engine.outputs = async () => {
      throw new Error("connect ECONNREFUSED 10.0.0.1: secret-engine-detail\n    at Socket.connect (net.js:1:1)");
    };
    try {
      const res = await t.http().get("/v1/stacks/s1/outputs");
      expect(res.status).to.equal(500);
      const error = errorOf(res);
      expect(error.code).to.equal("internal");
      expect(res.text).to.not.contain("secret-engine-detail");
      expect(res.text).to.not.contain("ECONNREFUSED");
    } finally {
      t.engine.outputs = original;
    }
  });

  it("keeps a client's plain X-Request-Id and replaces one that is not", async () => {
    const kept = await t.http().get("/v1/jobs/job_00000000000000000000000000").set("X-Request-Id", "client-abc.123");
    expect(kept.headers["x-request-id"]).to.equal("client-abc.123");
    expect(errorOf(kept).requestId).to.equal("client-abc.123");
    const replaced = await t.http().get("/healthz").set("X-Request-Id", "bad id\twith tab <script>");
    expect(replaced.headers["x-request-id"]).to.match(/^req_[0-9a-f]{24}$/);
  });

  it("sends no x-powered-by and helmet's headers", async () => {
    const res = await t.http().get("/healthz");
    expect(res.headers).to.not.have.property("x-powered-by");
    expect(res.headers["x-content-type-options"]).to.equal("nosniff");
  });
});
