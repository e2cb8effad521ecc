/**
 * GET /v1/audit (admin): the audit trail, newest first, by time window and stack, paged. An admin of
 * every stack (`"*"`) sees every record; an admin of some stacks sees those stacks' records only.
 */
import { z } from "zod";
import { AUDIT_RESULTS, MAX_AUDIT_LIMIT } from "../../automation/store";
import { ConfigError } from "../../automation/errors";
import { hasRoleEverywhere, stacksWithRole } from "../auth";
import { stackName } from "../schemas";
import type { HandlerInput, Reply } from "./route";

export const AUDIT_ID_RE = /^aud_[0-9a-z]{26}$/;

const isoTime = (what: string) =>
  z
    .string()
    .max(40)
    .regex(/^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2}))?$/, "must be an ISO 8601 date or time (2024-05-01 or 2024-05-01T12:00:00Z)")
    .refine((s) => !Number.isNaN(Date.parse(s)), "must be a valid date")
    .transform((s) => new Date(s).toISOString())
    .describe(what);

export const auditQuery = z
  .strictObject({
    from: isoTime("Records at or after this time (ISO 8601).").optional(),
    to: isoTime("Records before this time (ISO 8601).").optional(),
    stack: stackName.optional(),
    limit: z.coerce.number().int().min(1).max(MAX_AUDIT_LIMIT).default(100).describe(`At most this many (1–${MAX_AUDIT_LIMIT}, default 100).`),
    before: z.string().regex(AUDIT_ID_RE).optional().describe("Cursor: the nextCursor of the previous page."),
  });

export const auditEntrySchema = z.object({
  id: z.string(),
  time: z.string(),
  actor: z.string().nullable().describe("The token's name (the OS user for the CLI); null when the request did not authenticate."),
  action: z.string().describe("The route pattern, e.g. `POST /v1/stacks/:stack/deployments`, or `cli <op>`."),
  stack: z.string().nullable(),
  jobId: z.string().nullable(),
  requestId: z.string().nullable(),
  address: z.string().nullable(),
  result: z.enum(AUDIT_RESULTS),
  status: z.number().int().nullable(),
  details: z.unknown().optional(),
});

export const auditListSchema = z.object({ entries: z.array(auditEntrySchema), nextCursor: z.string().nullable() });

export async function listAudit({ ctx, query, principal }: HandlerInput<unknown, z.output<typeof auditQuery>, unknown>): Promise<Reply> {
  if (query.from !== undefined && query.to !== undefined && query.from >= query.to) {
    throw new ConfigError("query parameter to: must be after from", { details: { field: "to", in: "query" } });
  }
  const stack = hasRoleEverywhere(principal, "admin")
    ? query.stack
    : stacksWithRole(principal, "admin", query.stack !== undefined ? [query.stack] : ctx.environments.list());
  const entries = await ctx.store.listAudit({ from: query.from, to: query.to, stack, limit: query.limit, before: query.before });
  return {
    body: {
      entries: entries.map((e) => ({
        id: e.id,
        time: e.time,
        actor: e.actor ?? null,
        action: e.action,
        stack: e.stack ?? null,
        jobId: e.jobId ?? null,
        requestId: e.requestId ?? null,
        address: e.address ?? null,
        result: e.result,
        status: e.status ?? null,
        ...(e.details !== undefined ? { details: e.details } : {}),
      })),
      nextCursor: entries.length === query.limit ? entries[entries.length - 1].id : null,
    },
    headers: { "Cache-Control": "no-store" },
  };
}
