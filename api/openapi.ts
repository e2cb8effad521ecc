/**
 * The OpenAPI 3.1 document, generated from the route table and the zod schemas that validate the
 * requests (`z.toJSONSchema`, input side for requests, output side for responses), so the document
 * and the validation cannot drift apart. Every route with a role requires the bearer scheme and can
 * answer 401, 403 and 429 besides what it lists; public routes say `security: []`.
 */
import { z } from "zod";
import { ERROR_CODES } from "./errors";
import { errorSchema, jobSchema, stackSchema } from "./schemas";
import type { AnyRoute } from "./routes/route";

type Json = Record<string, unknown>;

/** Schemas shown once under components and referenced elsewhere. */
const NAMED: ReadonlyMap<z.ZodType, string> = new Map<z.ZodType, string>([
  [errorSchema, "Error"],
  [jobSchema, "Job"],
  [stackSchema, "Stack"],
]);

const STATUS_TEXT: Readonly<Record<number, string>> = {
  400: "invalid_request: a query, header or body value is not allowed; `details.field` names it.",
  401: "unauthenticated: no bearer token, or not a valid one (`WWW-Authenticate: Bearer`).",
  403: "forbidden: the principal's roles on the stack do not allow this.",
  404: "not_found: no such stack or job, or one the principal may not read.",
  409: "conflict: an Idempotency-Key reused with another body, a stack blocked after an interrupted job (recover with POST /v1/stacks/{stack}/unlock), a job in a state that does not allow this.",
  413: "payload_too_large: the body is over 100 kB.",
  429: "rate_limited: too many mutations by this principal, or failed authentications from this address; see Retry-After and RateLimit.",
  431: "The request's URL and headers are larger than 16 kB (answered by the HTTP parser, before any route).",
  500: "internal: an unexpected error; the service log has the details under the request id.",
  503: "engine_unavailable: shutting down or the engine cannot run here; see Retry-After.",
};

function jsonSchema(schema: z.ZodType, io: "input" | "output"): Json {
  const named = NAMED.get(schema);
  if (named) return { $ref: `#/components/schemas/${named}` };
  const { $schema: _ignored, ...rest } = z.toJSONSchema(schema, { io, unrepresentable: "any" }) as Json;
  return rest;
}

function objectProperties(schema: z.ZodType): { properties: Record<string, Json>; required: Set<string> } {
  const doc = z.toJSONSchema(schema, { io: "input", unrepresentable: "any" }) as { properties?: Record<string, Json>; required?: string[] };
  return { properties: doc.properties ?? {}, required: new Set(doc.required ?? []) };
}

export function openApiPath(expressPath: string): string {
  return expressPath.replace(/:([A-Za-z_][A-Za-z0-9_]*)/g, "{$1}");
}

function operationId(route: AnyRoute): string {
  const name = route.handler.name;
  if (name && name !== "handler" && !name.startsWith("bound ")) return name;
  return `${route.method}${route.path.replace(/[^A-Za-z0-9]+(.)?/g, (_m, c: string | undefined) => (c ? c.toUpperCase() : ""))}`;
}

function parameters(route: AnyRoute): Json[] {
  const out: Json[] = [];
  if (route.params) {
    const { properties } = objectProperties(route.params);
    for (const [name, schema] of Object.entries(properties)) {
      const { description, ...rest } = schema;
      out.push({ name, in: "path", required: true, ...(description ? { description } : {}), schema: rest });
    }
  }
  if (route.query) {
    const { properties, required } = objectProperties(route.query);
    for (const [name, schema] of Object.entries(properties)) {
      const { description, ...rest } = schema;
      out.push({ name, in: "query", required: required.has(name), ...(description ? { description } : {}), schema: rest });
    }
  }
  for (const header of route.headers ?? []) {
    out.push({ name: header.name, in: "header", required: false, description: header.description, schema: jsonSchema(header.schema, "input") });
  }
  return out;
}

function operation(route: AnyRoute): Json {
  const responses: Record<string, Json> = {};
  for (const r of route.responses) {
    const contentType = r.contentType ?? "application/json";
    responses[String(r.status)] = {
      description: r.description,
      ...(r.status === 202 || route.operation ? { headers: { Location: { description: "The job: /v1/jobs/{id}.", schema: { type: "string" } } } } : {}),
      content: { [contentType]: { schema: r.schema ? jsonSchema(r.schema, "output") : { type: "string" } } },
    };
  }
  const authErrors = route.role === "none" ? [] : [401, 403, 429];
  // Every route can answer 431: Node's HTTP parser refuses oversized headers before routing (server.ts).
  for (const status of [...new Set([...route.errors, ...authErrors, 431])].sort((a, b) => a - b).concat(500)) {
    responses[String(status)] = {
      description: STATUS_TEXT[status] ?? "error",
      ...(status === 503 || status === 429 ? { headers: { "Retry-After": { description: "Seconds to wait before retrying.", schema: { type: "integer" } } } } : {}),
      content: { "application/json": { schema: { $ref: "#/components/schemas/Error" } } },
    };
  }
  let requestBody: Json | undefined;
  if (route.body) {
    const { required } = objectProperties(route.body);
    requestBody = { required: required.size > 0, content: { "application/json": { schema: jsonSchema(route.body, "input") } } };
  }
  return {
    operationId: operationId(route),
    summary: route.summary,
    description: route.description,
    tags: [route.tag],
    "x-role": route.role,
    ...(route.role === "none" ? { security: [] } : {}),
    parameters: parameters(route),
    ...(requestBody ? { requestBody } : {}),
    responses,
  };
}

export function openApiDocument(routes: readonly AnyRoute[], info: { version?: string } = {}): Json {
  const paths: Record<string, Record<string, Json>> = {};
  for (const route of routes) (paths[openApiPath(route.path)] ??= {})[route.method] = operation(route);
  const schemas: Record<string, Json> = {};
  for (const [schema, name] of NAMED) {
    const { $schema: _ignored, ...rest } = z.toJSONSchema(schema, { io: "output", unrepresentable: "any" }) as Json;
    schemas[name] = rest;
  }
  (schemas.Error as { properties: { error: { properties: { code: Json } } } }).properties.error.properties.code = { type: "string", enum: [...ERROR_CODES] };
  return {
    openapi: "3.1.0",
    info: {
      title: "pulumi-aws-deployer",
      version: info.version ?? "0.1.0",
      license: { name: "Apache-2.0", identifier: "Apache-2.0" },
      contact: { name: "The platform team that runs this deployer" },
      description:
        "Deploys, previews, checks drift of and rolls back the team's AWS stacks. Every operation is a job: POST answers 202 with the job and a Location; " +
        "follow it with GET /v1/jobs/{id} or its events (SSE). Errors: {\"error\": {\"code\", \"message\", \"details\"?, \"requestId\"}}. " +
        "Every /v1 route needs `Authorization: Bearer <token>`; each operation's `x-role` is the role it requires on the stack it is about " +
        "(viewer < deployer < admin, approver beside them). A stack the caller may not read answers 404, like one that does not exist.",
    },
    tags: [
      { name: "service", description: "Health, readiness, metrics, this document." },
      { name: "stacks", description: "Environments and what they run." },
      { name: "operations", description: "Operations on a stack: each answers 202 with a job." },
      { name: "jobs", description: "Jobs: status, live events, log, cancel, approvals." },
      { name: "audit", description: "The audit trail (admin)." },
    ],
    // Relative: the document is served by the service it describes, wherever that listens.
    servers: [{ url: "/", description: "This service (the host and port that served this document)." }],
    security: [{ bearerAuth: [] }],
    paths,
    components: {
      schemas,
      securitySchemes: { bearerAuth: { type: "http", scheme: "bearer", description: "A token of the tokens file (DEPLOYER_TOKENS_FILE); only its SHA-256 is stored." } },
    },
  };
}
