/**
 * The public API, typed by the OpenAPI document the service serves (openapi.d.ts is generated from it
 * by dashboard/build.js): a path, parameter or field the service no longer has fails `npm run build`.
 */
import createClient, { type Client } from "openapi-fetch";
import type { components, paths } from "./openapi";

export type Job = components["schemas"]["Job"];
export type Stack = components["schemas"]["Stack"];
export type Me = paths["/v1/me"]["get"]["responses"][200]["content"]["application/json"];
export type Role = Me["stacks"][string][number];
export type DriftReport = paths["/v1/stacks/{stack}/drift"]["get"]["responses"][200]["content"]["application/json"];
export type Outputs = paths["/v1/stacks/{stack}/outputs"]["get"]["responses"][200]["content"]["application/json"];
export type AuditPage = paths["/v1/audit"]["get"]["responses"][200]["content"]["application/json"];
export type AuditQuery = NonNullable<paths["/v1/audit"]["get"]["parameters"]["query"]>;
export type Api = Client<paths>;

/** What the service answered instead: its message, code and the field it names. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly field?: string,
  ) {
    super(message);
    this.name = "ApiError";
  }
}

/** A client that sends `token` on every request. The token lives in the closure, nowhere else. */
export function apiClient(token: string, onUnauthenticated?: () => void): Api {
  const client = createClient<paths>({ baseUrl: "" });
  client.use({
    onRequest({ request }) {
      request.headers.set("Authorization", `Bearer ${token}`);
      return request;
    },
    onResponse({ response }) {
      if (response.status === 401) onUnauthenticated?.();
      return response;
    },
  });
  return client;
}

type Result<T> = { data?: T; error?: unknown; response: Response };

/** The body of a success, or an `ApiError` with the service's message. */
export async function unwrap<T>(call: Promise<Result<T>>): Promise<T> {
  let result: Result<T>;
  try {
    result = await call;
  } catch (err) {
    throw new ApiError(0, "network", `the service did not answer: ${err instanceof Error ? err.message : String(err)}`);
  }
  if (result.response.ok && result.error === undefined) return result.data as T;
  const body = result.error as { error?: { code?: string; message?: string; details?: { field?: unknown } } } | undefined;
  const e = body?.error;
  const field = typeof e?.details?.field === "string" ? e.details.field : undefined;
  throw new ApiError(result.response.status, e?.code ?? "error", e?.message ?? `${result.response.status} ${result.response.statusText}`, field);
}

export function hasRole(me: Me, stack: string, role: Role): boolean {
  return me.stacks[stack]?.includes(role) ?? false;
}

export function isAdminSomewhere(me: Me): boolean {
  return Object.values(me.stacks).some((roles) => roles.includes("admin"));
}

export const TERMINAL = new Set<Job["status"]>(["succeeded", "failed", "canceled", "timed_out", "interrupted", "rejected"]);
