/**
 * One route's description: method, path, role, the zod schemas of its input, what it answers, and its
 * handler. The route table (table.ts) lists every route in this form; the express router (router.ts),
 * the OpenAPI document (openapi.ts), the audit trail's actions and the authorization matrix
 * (test/api/authz-matrix.spec.ts) are all generated from it.
 */
import type { Request, Response } from "express";
import type { z } from "zod";
import type { Principal, RouteRole, Scope } from "../auth";
import type { ApiContext } from "../context";

export type Method = "get" | "post";

export interface HandlerInput<P, Q, B> {
  readonly ctx: ApiContext;
  readonly params: P;
  readonly query: Q;
  readonly body: B;
  readonly principal: Principal;
  readonly requestId: string;
  readonly req: Request;
  readonly res: Response;
}

/** A JSON answer; a handler that wrote the response itself (SSE, text) returns nothing. */
export interface Reply {
  readonly status?: number;
  readonly body: unknown;
  readonly headers?: Readonly<Record<string, string>>;
}

export interface ResponseSpec {
  readonly status: number;
  readonly description: string;
  /** JSON body schema; absent with `contentType` for other bodies. */
  readonly schema?: z.ZodType;
  /** Default application/json. */
  readonly contentType?: string;
}

export interface HeaderSpec {
  readonly name: string;
  readonly description: string;
  readonly schema: z.ZodType;
}

export interface RouteSpec<P = unknown, Q = unknown, B = unknown> {
  readonly method: Method;
  /** Express syntax: `/v1/stacks/:stack`. */
  readonly path: string;
  readonly role: RouteRole;
  readonly summary: string;
  /** What the operation does beyond its summary; the OpenAPI document's description (required: a linted document has one per operation). */
  readonly description: string;
  readonly tag: string;
  readonly params?: z.ZodType<P>;
  readonly query?: z.ZodType<Q>;
  readonly body?: z.ZodType<B>;
  /** Request headers the route reads (documented; parsed by the handler). */
  readonly headers?: readonly HeaderSpec[];
  /** The stack the route is about, for authorization; default `params.stack`. A job route resolves its job's. */
  readonly scope?: (params: P, ctx: ApiContext) => Scope | Promise<Scope>;
  /** Whether the route starts an operation (refused while shutting down). */
  readonly operation?: boolean;
  readonly responses: readonly ResponseSpec[];
  /** Error statuses the route can answer besides 500 (documented in the OpenAPI document). */
  readonly errors: readonly number[];
  readonly handler: (input: HandlerInput<P, Q, B>) => Reply | void | Promise<Reply | void>;
}

/** A route with its types erased, as the table holds it. */
export type AnyRoute = RouteSpec<any, any, any>;

/** Declares a route, inferring its handler's input types from its schemas. */
export function route<P = Record<string, never>, Q = Record<string, never>, B = undefined>(spec: RouteSpec<P, Q, B>): AnyRoute {
  return spec as AnyRoute;
}
