/** The OpenAPI document covers every route of the table, with the schemas that validate requests. */
import { createConfig, lintFromString } from "@redocly/openapi-core";
import { expect } from "chai";
import { openApiPath } from "../../api/openapi";
import { ROUTES } from "../../api/routes/table";
import { startTestServer, type TestServer } from "./support/server";

describe("api: OpenAPI document", function () {
  this.timeout(30_000);
  let t: TestServer;
  let doc: any;

  before(async () => {
    t = await startTestServer();
    const res = await t.http().get("/openapi.json");
    expect(res.status).to.equal(200);
    doc = res.body;
  });

  after(async () => {
    await t.close();
  });

  it("passes Redocly's recommended-strict rules, with descriptions, contact, license and servers required", async () => {
    const config = await createConfig({
      extends: ["recommended-strict"],
      rules: {
        "operation-description": "error",
        "operation-summary": "error",
        "operation-4xx-response": "error",
        "info-contact": "error",
        "info-license-strict": "error",
        "no-empty-servers": "error",
        "tag-description": "error",
      },
    });
    const problems = await lintFromString({ source: JSON.stringify(doc), absoluteRef: "openapi.json", config });
    expect(problems.map((p) => `${p.ruleId}: ${p.message} at ${p.location[0]?.pointer}`)).to.deep.equal([]);
  });

  it("takes each operation's description from the route table, and gives every operation a 4xx answer", () => {
    for (const route of ROUTES) {
      const op = doc.paths[openApiPath(route.path)][route.method];
      expect(op.description, route.path).to.equal(route.description).and.to.have.length.above(20);
      expect(Object.keys(op.responses).some((s) => /^4\d\d$/.test(s)), route.path).to.equal(true);
    }
    expect(doc.servers).to.have.length.above(0);
    expect(doc.info.license.identifier).to.equal("Apache-2.0");
    expect(doc.info.contact.name).to.be.a("string");
  });

  it("is OpenAPI 3.1 and says every /v1 route needs a bearer token", () => {
    expect(doc.openapi).to.equal("3.1.0");
    expect(doc.info.description).to.match(/Authorization: Bearer/);
  });

  it("has exactly the routes of the table (paths and methods)", () => {
    const documented = Object.entries(doc.paths as Record<string, Record<string, unknown>>).flatMap(([p, methods]) => Object.keys(methods).map((m) => `${m.toUpperCase()} ${p}`));
    const table = ROUTES.map((r) => `${r.method.toUpperCase()} ${openApiPath(r.path)}`);
    expect([...documented].sort()).to.deep.equal([...table].sort());
    expect(new Set(table).size).to.equal(table.length);
  });

  it("documents every path parameter, every query parameter and the role of each route", () => {
    for (const route of ROUTES) {
      const op = doc.paths[openApiPath(route.path)][route.method];
      const names = (op.parameters as { name: string; in: string }[]).map((p) => `${p.in}:${p.name}`);
      for (const [, name] of openApiPath(route.path).matchAll(/\{(\w+)\}/g)) expect(names, route.path).to.include(`path:${name}`);
      expect(op["x-role"]).to.equal(route.role);
      expect(op.operationId).to.be.a("string");
    }
    const jobs = doc.paths["/v1/jobs"].get.parameters.map((p: { name: string }) => p.name);
    expect(jobs).to.include.members(["stack", "status", "operation", "limit", "before"]);
    const stackParam = doc.paths["/v1/stacks/{stack}"].get.parameters.find((p: { name: string }) => p.name === "stack");
    expect(stackParam.schema.pattern).to.equal("^[a-z][a-z0-9-]{0,39}$");
  });

  it("documents each request body from its zod schema, unknown fields refused", () => {
    const deployment = doc.paths["/v1/stacks/{stack}/deployments"].post.requestBody;
    const schema = deployment.content["application/json"].schema;
    expect(deployment.required).to.equal(true);
    expect(schema.required).to.deep.equal(["version"]);
    expect(schema.additionalProperties).to.equal(false);
    expect(schema.properties.version.pattern).to.equal("^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$");
    expect(schema.properties.target.items.pattern).to.match(/^\^urn:pulumi:/);
    expect(doc.paths["/v1/stacks/{stack}/previews"].post.requestBody.required).to.equal(false);
    expect(doc.paths["/v1/stacks/{stack}/destroys"].post.requestBody.content["application/json"].schema.required).to.deep.equal(["confirm"]);
    for (const route of ROUTES.filter((r) => r.body)) expect(doc.paths[openApiPath(route.path)][route.method].requestBody, route.path).to.be.an("object");
  });

  it("documents the responses, the Location of jobs and the error shape", () => {
    const post = doc.paths["/v1/stacks/{stack}/deployments"].post;
    expect(post.responses["202"].content["application/json"].schema).to.deep.equal({ $ref: "#/components/schemas/Job" });
    expect(post.responses["202"].headers.Location).to.be.an("object");
    expect(post.parameters.map((p: { name: string }) => p.name)).to.include("Idempotency-Key");
    for (const status of ["400", "404", "409", "413", "500", "503"]) {
      expect(post.responses[status].content["application/json"].schema).to.deep.equal({ $ref: "#/components/schemas/Error" });
    }
    expect(post.responses["503"].headers["Retry-After"]).to.be.an("object");
    const error = doc.components.schemas.Error;
    expect(error.properties.error.required).to.include.members(["code", "message", "requestId"]);
    expect(error.properties.error.properties.code.enum).to.include.members(["invalid_request", "not_found", "conflict", "payload_too_large", "engine_unavailable", "internal"]);
    expect(doc.components.schemas.Job.properties).to.include.keys("id", "status", "queuePosition", "approvals", "approvalsRequired", "engine");
    expect(doc.components.schemas.Job.properties).to.not.have.any.keys("requestHash", "idempotencyKey", "params");
    expect(doc.paths["/v1/jobs/{id}/events"].get.responses["200"].content).to.have.key("text/event-stream");
  });

  it("requires the bearer scheme everywhere but on the public routes, and documents 401, 403 and 429 on every other", () => {
    expect(doc.components.securitySchemes.bearerAuth).to.deep.include({ type: "http", scheme: "bearer" });
    expect(doc.security).to.deep.equal([{ bearerAuth: [] }]);
    for (const route of ROUTES) {
      const op = doc.paths[openApiPath(route.path)][route.method];
      if (route.role === "none") {
        expect(op.security, route.path).to.deep.equal([]);
      } else {
        expect(op, route.path).to.not.have.property("security");
        expect(op.responses, route.path).to.include.keys("401", "403", "429");
        expect(op.responses["429"].headers["Retry-After"], route.path).to.be.an("object");
      }
    }
  });
});
