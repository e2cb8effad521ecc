/**
 * The service's one authentication and authorization seam.
 *
 * ┌──────────────────────────────────────────────────────────────────────────────────────────────┐
 * │ NO AUTHENTICATION YET (issue 5). `authenticate` answers every request with the anonymous     │
 * │ principal holding every role on every stack, so anyone who can reach the port can deploy,    │
 * │ destroy and unlock. The service binds to 127.0.0.1 by default for that reason: do not expose │
 * │ it (DEPLOYER_HOST) until issue 5 replaces this file's `authenticate`.                        │
 * └──────────────────────────────────────────────────────────────────────────────────────────────┘
 *
 * Issue 5 fills in `authenticate` (bearer tokens from DEPLOYER_TOKENS_FILE) and keeps the rest: the
 * router calls `authenticate` once per request for every route whose role is not `none`, then
 * `requireRole(route.role, principal, {stack})` with the route's stack (a job route's stack is its
 * job's), and `requestedBy` on jobs is the principal's name.
 */
import type { Request } from "express";
import { NotFoundError } from "../automation/errors";
import { ForbiddenError } from "./errors";

/** Roles: viewer < deployer < admin, and approver beside them. */
export const ROLES = ["viewer", "deployer", "admin", "approver"] as const;
export type Role = (typeof ROLES)[number];

/** What a route requires; `none` is public (health, readiness, metrics, the OpenAPI document). */
export type RouteRole = Role | "none";

export interface Principal {
  /** Recorded as `requestedBy` on jobs (a token's name from issue 5 on). */
  readonly name: string;
  /** Roles per stack (`"*"` key: every stack), or `"*"`: every role on every stack. */
  readonly roles: "*" | Readonly<Record<string, readonly Role[]>>;
}

/** Who a route is about: its stack, when it has one. */
export interface Scope {
  readonly stack?: string;
}

/** Who `authenticate` says every caller is, until issue 5: every role on every stack. */
export const ANONYMOUS: Principal = Object.freeze({ name: "anonymous", roles: "*" });

/** The principal of public routes (role `none`), which never authenticate: no role anywhere. */
export const PUBLIC: Principal = Object.freeze({ name: "public", roles: Object.freeze({}) });

/**
 * Who is asking. Issue 5: read `Authorization: Bearer <token>`, compare its SHA-256 with the tokens
 * file in constant time, throw `UnauthenticatedError` when it is missing or unknown.
 */
export function authenticate(_req: Request): Principal {
  return ANONYMOUS;
}

const IMPLIED: Readonly<Record<Role, readonly Role[]>> = {
  viewer: ["viewer"],
  deployer: ["viewer", "deployer"],
  admin: ["viewer", "deployer", "admin"],
  approver: ["approver"],
};

function granted(principal: Principal, stack: string | undefined): Set<Role> {
  if (principal.roles === "*") return new Set(ROLES);
  const out = new Set<Role>();
  const add = (roles: readonly Role[] | undefined) => roles?.forEach((r) => IMPLIED[r].forEach((x) => out.add(x)));
  add(principal.roles["*"]);
  if (stack !== undefined) add(principal.roles[stack]);
  return out;
}

/** Whether `principal` holds `role` (or one implying it) on `scope.stack`, or on every stack when there is none. */
export function hasRole(principal: Principal, role: RouteRole, scope: Scope = {}): boolean {
  if (role === "none") return true;
  return granted(principal, scope.stack).has(role);
}

/**
 * Throws unless `principal` holds `role` on the scope. A principal who cannot even read the stack gets
 * 404 rather than 403, so stack names cannot be probed.
 */
export function requireRole(role: RouteRole, principal: Principal, scope: Scope = {}): void {
  if (hasRole(principal, role, scope)) return;
  if (scope.stack !== undefined && !hasRole(principal, "viewer", scope)) throw new NotFoundError(`stack "${scope.stack}" not found`);
  throw new ForbiddenError(`${principal.name} needs the ${role} role${scope.stack ? ` on ${scope.stack}` : ""}`, { details: { role, stack: scope.stack } });
}
