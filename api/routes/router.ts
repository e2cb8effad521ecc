/**
 * Builds the express router from the route table. For every request, in this order:
 *
 *   1. authenticate (routes with a role): a valid token is always accepted; a failed authentication
 *      is 401 and counts against the address (429 once the address is over its limit); a mutation
 *      counts against the principal's limit (429 over it);
 *   2. path parameters (404 when they cannot name anything);
 *   3. authorize on the route's stack (a job route's stack is its job's): 403, or 404 where the
 *      principal cannot read the stack, worded exactly like a stack or job that does not exist;
 *   4. the JSON body (100 kB; 413 beyond) and then the query and body through zod (400 naming the field);
 *   5. the handler; a `Reply` is written as JSON (or text), anything thrown goes to the one error middleware.
 *
 * Every mutation and every denied request is recorded in the audit trail here, once, for every route
 * of the table (api/audit.ts), before the answer is sent.
 */
import express, { Router, type Request, type RequestHandler, type Response } from "express";
import { ConfigError, NotFoundError } from "../../automation/errors";
import { authenticate, PUBLIC, requireRole, UnreadableStackError, type Principal, type Scope } from "../auth";
import { type AuditFacts } from "../audit";
import type { ApiContext } from "../context";
import { classify, UnauthenticatedError } from "../errors";
import { clientAddress } from "../rate-limit";
import { JOB_ID_RE, parseInput, parseParams } from "../schemas";
import type { AnyRoute, Reply } from "./route";

export const BODY_LIMIT = "100kb";

/** Whether the request carries a body at all (chunked or with a length). */
function hasBody(req: Request): boolean {
  const length = req.headers["content-length"];
  return req.headers["transfer-encoding"] !== undefined || (length !== undefined && length !== "0");
}

function bodyOf(route: AnyRoute, req: Request): unknown {
  if (req.body !== undefined) return req.body;
  // express.json leaves the body alone unless it is JSON: a body of another type is refused, no body is {}.
  if (hasBody(req)) throw new ConfigError("body: must be JSON (Content-Type: application/json)", { details: { field: "body", in: "body" } });
  return route.body ? {} : undefined;
}

function write(res: Response, reply: Reply): void {
  for (const [name, value] of Object.entries(reply.headers ?? {})) res.setHeader(name, value);
  res.status(reply.status ?? 200);
  if (reply.status === 304) res.end();
  else if (typeof reply.body === "string" && res.getHeader("Content-Type") !== undefined) res.send(reply.body);
  else res.json(reply.body);
}

function runMiddleware(middleware: RequestHandler, req: Request, res: Response): Promise<void> {
  return new Promise((resolve, reject) => {
    void middleware(req, res, (err?: unknown) => (err ? reject(err) : resolve()));
  });
}

/** The id of the job a reply is about (a 202 answers with the job it created). */
function jobIdOf(reply: Reply | undefined): string | undefined {
  const id = (reply?.body as { id?: unknown } | undefined)?.id;
  return typeof id === "string" && JOB_ID_RE.test(id) ? id : undefined;
}

/** Path parameters for the audit record when the request was refused before they were parsed: only valid ones. */
function paramsForAudit(route: AnyRoute, req: Request): Record<string, unknown> | undefined {
  if (!route.params) return undefined;
  const result = route.params.safeParse(req.params);
  return result.success ? (result.data as Record<string, unknown>) : undefined;
}

export function buildRouter(routes: readonly AnyRoute[], ctx: ApiContext): Router {
  const router = Router({ strict: true, caseSensitive: true });
  const json = express.json({ limit: BODY_LIMIT, strict: true });
  for (const route of routes) {
    router[route.method](route.path, async (req: Request, res: Response) => {
      const requestId = String(res.locals.requestId);
      const facts: { -readonly [K in keyof AuditFacts]?: AuditFacts[K] } = { route, requestId, address: clientAddress(req) };
      try {
        const principal: Principal = route.role === "none" ? PUBLIC : await authenticateRequest(ctx, req, res);
        res.locals.principal = principal; // the request log's, and the mutation limit's key
        if (route.role !== "none") {
          facts.actor = principal.name;
          if (route.method !== "get") await ctx.rateLimits.countMutation(req, res);
        }

        const params = route.params ? parseParams(route.params, req.params) : {};
        facts.params = route.params ? params : undefined;
        if (typeof params.stack === "string" && !ctx.environments.has(params.stack)) {
          throw new NotFoundError(`stack "${params.stack}" not found`, { details: { field: "stack" } });
        }
        const scope: Scope = route.scope ? await route.scope(params, ctx) : { stack: params.stack };
        facts.stack = scope.stack;
        if (typeof params.id === "string") facts.jobId = params.id;
        authorize(route, principal, scope, params, facts);

        const query = route.query ? parseInput(route.query, req.query, "query") : {};
        facts.query = route.query ? query : undefined;
        if (route.body) await runMiddleware(json, req, res);
        const body = route.body ? parseInput(route.body, bodyOf(route, req), "body") : undefined;
        facts.body = body;

        const reply = await route.handler({ ctx, params, query, body, principal, requestId, req, res });
        facts.jobId ??= jobIdOf(reply || undefined);
        await ctx.audit.record({ ...facts, status: reply?.status ?? (res.headersSent ? res.statusCode : 200) } as AuditFacts);
        if (reply !== undefined) write(res, reply);
      } catch (err) {
        const c = classify(err);
        facts.params ??= paramsForAudit(route, req);
        const p = (facts.params ?? {}) as { stack?: unknown; id?: unknown };
        if (facts.stack === undefined && typeof p.stack === "string") facts.stack = p.stack;
        if (facts.jobId === undefined && typeof p.id === "string") facts.jobId = p.id;
        await ctx.audit.record({ ...facts, status: res.headersSent ? res.statusCode : c.status, errorCode: c.code, extra: c.unexpected ? undefined : { message: c.message } } as AuditFacts);
        throw err;
      }
    });
  }
  return router;
}

/**
 * The principal of the request's bearer token. A valid token is always accepted, whatever others
 * sent from its address (behind a proxy every client shares one). A failed authentication counts
 * against the address; once it is over its limit, failures answer 429 instead of 401.
 */
async function authenticateRequest(ctx: ApiContext, req: Request, res: Response): Promise<Principal> {
  try {
    return authenticate(req, ctx.tokens.tokens);
  } catch (err) {
    if (err instanceof UnauthenticatedError) await ctx.rateLimits.countUnauthenticated(req, res); // 429 once over the limit
    throw err;
  }
}

/** `requireRole`, with a job route's "cannot read the stack" worded exactly like an unknown job. */
function authorize(route: AnyRoute, principal: Principal, scope: Scope, params: Record<string, unknown>, facts: { authzDenied?: boolean }): void {
  try {
    requireRole(route.role, principal, scope);
  } catch (err) {
    facts.authzDenied = true;
    if (err instanceof UnreadableStackError && typeof params.id === "string" && route.scope) {
      throw new UnreadableStackError(`job ${params.id} not found`, { details: { field: "id" } });
    }
    throw err;
  }
}
