/**
 * Builds the express router from the route table. For every request, in this order: authenticate
 * (routes with a role), path parameters (404 when they cannot name anything), authorize on the route's
 * stack, query and body through zod (400 naming the field), then the handler; a `Reply` is written as
 * JSON (or text), and anything thrown goes to the one error middleware.
 */
import { Router, type Request, type Response } from "express";
import { ConfigError, NotFoundError } from "../../automation/errors";
import { authenticate, PUBLIC, requireRole, type Principal } from "../auth";
import type { ApiContext } from "../context";
import { parseInput, parseParams } from "../schemas";
import type { AnyRoute, Reply } from "./route";

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
  if (typeof reply.body === "string" && res.getHeader("Content-Type") !== undefined) res.send(reply.body);
  else res.json(reply.body);
}

export function buildRouter(routes: readonly AnyRoute[], ctx: ApiContext): Router {
  const router = Router({ strict: true, caseSensitive: true });
  for (const route of routes) {
    router[route.method](route.path, async (req: Request, res: Response) => {
      const principal: Principal = route.role === "none" ? PUBLIC : authenticate(req);
      res.locals.principal = principal;
      const params = route.params ? parseParams(route.params, req.params) : {};
      if (typeof params.stack === "string" && !ctx.environments.has(params.stack)) {
        throw new NotFoundError(`stack "${params.stack}" not found`, { details: { field: "stack" } });
      }
      requireRole(route.role, principal, route.scope ? route.scope(params, ctx) : { stack: params.stack });
      const query = route.query ? parseInput(route.query, req.query, "query") : {};
      const body = route.body ? parseInput(route.body, bodyOf(route, req), "body") : undefined;
      const reply = await route.handler({ ctx, params, query, body, principal, requestId: String(res.locals.requestId), req, res });
      if (reply !== undefined) write(res, reply);
    });
  }
  return router;
}
