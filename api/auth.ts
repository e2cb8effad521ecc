/**
 * The service's one authentication and authorization seam.
 *
 * The router calls `authenticate(req, tokens)` once per request for every route whose role is not
 * `none` (every `/v1` route): `Authorization: Bearer <token>`, looked up in constant time among the
 * tokens file's hashes (tokens.ts); anything else is 401 `unauthenticated` with `WWW-Authenticate:
 * Bearer`. Then `requireRole(route.role, principal, {stack})` with the route's stack (a job route's
 * stack is its job's), and `requestedBy` on jobs is the principal's (token's) name.
 *
 * Roles are granted per stack (`"*"`: every stack): viewer < deployer < admin, approver beside them.
 * A principal without even viewer on a stack gets 404 for it, never 403, so stack names cannot be probed.
 */
import type { Request } from "express";
import { NotFoundError } from "../automation/errors";
import { ForbiddenError, UnauthenticatedError } from "./errors";
import type { TokenSet } from "./tokens";

/** Roles: viewer < deployer < admin, and approver beside them. */
/**
 * `metrics` reads GET /metrics (which names every stack), and only when granted on `"*"`: a
 * Prometheus scrape token; admin implies it.
 */
export const ROLES = ["viewer", "deployer", "admin", "approver", "metrics"] as const;
export type Role = (typeof ROLES)[number];

/** What a route requires; `none` is public (health, readiness, the OpenAPI document). */
export type RouteRole = Role | "none";

export interface Principal {
  /** The token's name: recorded as `requestedBy` on jobs and as the actor in the audit trail. */
  readonly name: string;
  /** Roles per stack; the `"*"` key grants on every stack. */
  readonly roles: Readonly<Record<string, readonly Role[]>>;
}

/** Who a route is about: its stack, when it has one. */
export interface Scope {
  readonly stack?: string;
}

/** The principal of public routes (role `none`), which never authenticate: no role anywhere. */
export const PUBLIC: Principal = Object.freeze({ name: "public", roles: Object.freeze({}) });

/** RFC 6750 `b64token`, bounded: anything else in the header is not a token of ours. */
const BEARER_RE = /^Bearer +([A-Za-z0-9\-._~+/]{1,512}=*) *$/i;

/** What the `Authorization` header holds: `none`, a bearer token, or something else (`malformed`). */
export function bearerToken(req: Request): { kind: "none" } | { kind: "malformed" } | { kind: "token"; token: string } {
  const header = req.headers.authorization;
  if (header === undefined || header === "") return { kind: "none" };
  const m = BEARER_RE.exec(header);
  return m ? { kind: "token", token: m[1] } : { kind: "malformed" };
}

/**
 * Who is asking: the principal of the bearer token, or `UnauthenticatedError` when it is missing,
 * malformed or unknown. The error never quotes the header.
 */
export function authenticate(req: Request, tokens: TokenSet): Principal {
  const presented = bearerToken(req);
  if (presented.kind === "none") throw new UnauthenticatedError("authentication required: send Authorization: Bearer <token>", { details: { reason: "missing" } });
  if (presented.kind === "malformed") throw new UnauthenticatedError("the Authorization header is not a bearer token", { details: { reason: "malformed" } });
  const principal = tokens.find(presented.token);
  if (!principal) throw new UnauthenticatedError("the bearer token is not valid", { details: { reason: "invalid_token" } });
  return principal;
}

const IMPLIED: Readonly<Record<Role, readonly Role[]>> = {
  viewer: ["viewer"],
  deployer: ["viewer", "deployer"],
  admin: ["viewer", "deployer", "admin", "metrics"],
  approver: ["approver"],
  metrics: ["metrics"],
};

function granted(principal: Principal, stack: string | undefined): Set<Role> {
  const out = new Set<Role>();
  const add = (roles: readonly Role[] | undefined) => roles?.forEach((r) => IMPLIED[r]?.forEach((x) => out.add(x)));
  add(principal.roles["*"]);
  if (stack !== undefined && stack !== "*" && Object.prototype.hasOwnProperty.call(principal.roles, stack)) add(principal.roles[stack]);
  return out;
}

/**
 * Whether `principal` holds `role` (or one implying it) on `scope.stack`. Without a stack (the list
 * routes: stacks, jobs, audit) the role is needed on at least one stack, and the route shows only
 * what it covers (`stacksWithRole`).
 */
export function hasRole(principal: Principal, role: RouteRole, scope: Scope = {}): boolean {
  if (role === "none") return true;
  // The metrics cover every stack, so they need the role on every stack.
  if (role === "metrics") return granted(principal, undefined).has("metrics");
  if (scope.stack !== undefined) return granted(principal, scope.stack).has(role);
  return granted(principal, undefined).has(role) || Object.keys(principal.roles).some((stack) => granted(principal, stack).has(role));
}

/** Whether the principal holds `role` on every stack (a `"*"` grant): list filters can be skipped. */
export function hasRoleEverywhere(principal: Principal, role: Role): boolean {
  return granted(principal, undefined).has(role);
}

/** Whether the principal may read every stack. */
export function readsEveryStack(principal: Principal): boolean {
  return hasRoleEverywhere(principal, "viewer");
}

/** Of `stacks`, those on which the principal holds `role`. */
export function stacksWithRole(principal: Principal, role: Role, stacks: readonly string[]): string[] {
  return stacks.filter((stack) => granted(principal, stack).has(role));
}

/** Of `stacks`, those the principal may read. */
export function readableStacks(principal: Principal, stacks: readonly string[]): string[] {
  return stacksWithRole(principal, "viewer", stacks);
}

/** Thrown (as a 404) where the principal cannot read the stack: marks the 404 as an authorization denial. */
export class UnreadableStackError extends NotFoundError {}

/**
 * Throws unless `principal` holds `role` on the scope. A principal who cannot even read the stack gets
 * 404 rather than 403, so stack names cannot be probed.
 */
export function requireRole(role: RouteRole, principal: Principal, scope: Scope = {}): void {
  if (hasRole(principal, role, scope)) return;
  if (scope.stack !== undefined && !hasRole(principal, "viewer", scope)) throw new UnreadableStackError(`stack "${scope.stack}" not found`, { details: { field: "stack" } });
  throw new ForbiddenError(`${principal.name} needs the ${role} role${scope.stack ? ` on ${scope.stack}` : ""}`, { details: { role, ...(scope.stack ? { stack: scope.stack } : {}) } });
}
