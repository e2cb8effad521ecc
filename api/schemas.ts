/**
 * Every request's shape, in zod: path parameters, query strings and bodies are parsed through these
 * before anything else runs, and the OpenAPI document (openapi.ts) is generated from the same schemas,
 * so what is documented is what is enforced. Response shapes are here too, for the document only
 * (responses are built by present.ts and not re-validated on the hot path).
 *
 * Parsing helpers turn a zod failure into the deployer's errors: a bad path parameter is 404 (a stack
 * or job that cannot exist does not), a bad query or body is 400 naming the field.
 */
import { z } from "zod";
import { STACK_NAME_RE } from "../automation/environment";
import { ConfigError, NotFoundError } from "../automation/errors";
import { JOB_OPERATIONS, JOB_SOURCES, JOB_STATUSES, ENGINE_KINDS, MAX_DECISION_COMMENT } from "../automation/store";
import { versionSchema } from "../infra/config";
import { typeIssueMessage } from "../automation/zod-issues";

// Building blocks -----------------------------------------------------------------------------------

export const JOB_ID_RE = /^job_[0-9a-z]{26}$/;
/**
 * A Pulumi URN: `urn:pulumi:<stack>::<project>::<qualified type>::<name>`. Linear: the qualified type
 * has single colons only (`aws:s3/bucket:Bucket$aws:…`), so the `::` that ends it is the first one and
 * nothing backtracks (a type that could hold `::` made the pattern quadratic on `::::…!`).
 */
export const URN_RE = /^urn:pulumi:[a-z0-9-]+::[A-Za-z0-9._-]+::(?:[A-Za-z0-9/$._-]|:(?!:))+::[A-Za-z0-9._:/-]+$/;
/** `Idempotency-Key`: printable ASCII, at most 200 characters. */
export const IDEMPOTENCY_KEY_RE = /^[\x20-\x7e]{1,200}$/;

export const stackName = z.string().regex(STACK_NAME_RE).describe("An environment's name: a file environments/<stack>.yaml.");
export const jobId = z.string().regex(JOB_ID_RE).describe("A job id: job_ + 26 lower-case base32 characters; ids sort by creation time.");
// Every pattern below is linear, and where a string may be long its length is checked first, aborting:
// zod runs a string's later checks after an earlier one failed unless told not to.
export const urn = z.string().max(1024, { abort: true }).regex(URN_RE, "must be a Pulumi URN (urn:pulumi:<stack>::<project>::<type>::<name>)");
const version = versionSchema.describe("The deploy version (image tag): ^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$, never latest.");
/** C0 control characters but line breaks and tabs, and DEL: never in a note (PostgreSQL's text refuses NUL). */
const NO_CONTROL_CHARACTERS = /^[^\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]*$/;
const NO_CONTROL_MESSAGE = "must not contain control characters (line breaks and tabs are fine)";

const note = (what: string) =>
  z
    .string()
    .max(10_000, { abort: true })
    .trim()
    .min(1)
    .max(1000)
    .regex(NO_CONTROL_CHARACTERS, NO_CONTROL_MESSAGE)
    .describe(what);

// Path parameters -----------------------------------------------------------------------------------

export const stackParams = z.strictObject({ stack: stackName });
export const jobParams = z.strictObject({ id: jobId });

// Bodies --------------------------------------------------------------------------------------------

export const previewBody = z.strictObject({
  version: version.optional().describe("Default: the environment's app.version."),
});

export const deploymentBody = z.strictObject({
  version,
  message: note("A note recorded with the deployment.").optional(),
  target: z.array(urn).min(1).max(100).optional().describe("Limit the deployment to these resources (URNs of this stack)."),
});

export const rollbackBody = z.strictObject({
  to: z
    .string()
    .regex(/^(job_[0-9a-z]{26}|[A-Za-z0-9][A-Za-z0-9._-]{0,127})$/, "must be a deployment's job id or a version")
    .optional()
    .describe("The deployment to restore (job id or version); default: the previous good deployment."),
  reason: note("Why: recorded with the rollback."),
});

export const emptyBody = z.strictObject({});

export const destroyBody = z.strictObject({
  confirm: stackName.describe("The stack's name again, to confirm."),
});

/** An approval or rejection (POST /v1/jobs/:id/approvals, /rejections). */
export const decisionBody = z.strictObject({
  comment: z.string().trim().min(1).max(MAX_DECISION_COMMENT).regex(NO_CONTROL_CHARACTERS, NO_CONTROL_MESSAGE).optional().describe(`Why (at most ${MAX_DECISION_COMMENT} characters); recorded with the decision and shown on the job.`),
});

export const cancelBody = z.strictObject({
  force: z.boolean().optional().describe("Kill the engine's process tree; admin only, and only after a graceful cancel."),
});

// Queries -------------------------------------------------------------------------------------------

/** A comma-separated list of allowed values (`status=queued,running`). */
function csvOf<T extends string>(allowed: readonly T[]) {
  const set = new Set<string>(allowed);
  return z
    .string()
    .regex(/^[a-z_]+(,[a-z_]+)*$/, `must be one or more of ${allowed.join(", ")}, separated by commas`)
    .transform((s, ctx) => {
      const parts = [...new Set(s.split(","))];
      for (const p of parts) if (!set.has(p)) ctx.addIssue({ code: "custom", message: `"${p}" is not one of ${allowed.join(", ")}` });
      return parts as T[];
    })
    .describe(`One or more of ${allowed.join(", ")}, separated by commas.`);
}

const limit = (dflt: number) => z.coerce.number().int().min(1).max(500).default(dflt).describe(`At most this many (1–500, default ${dflt}).`);

export const jobsQuery = z.strictObject({
  stack: stackName.optional(),
  status: csvOf(JOB_STATUSES).optional(),
  operation: csvOf(JOB_OPERATIONS).optional(),
  limit: limit(50),
  before: jobId.optional().describe("Cursor: the nextCursor of the previous page."),
});

export const deploymentsQuery = z.strictObject({ limit: limit(50) });

/** An event id: decimal digits only (`0.`, `1e3`, `0x10` and ` 5` are not ids, though Number() reads them). */
const eventSeq = z
  .string()
  .max(16, { abort: true })
  .regex(/^\d{1,15}$/, "must be a whole number (decimal digits)")
  .transform(Number);

export const eventsQuery = z.strictObject({
  lastEventId: eventSeq.optional().describe("Replay events after this id (the Last-Event-ID header wins)."),
});

export const noQuery = z.strictObject({});

// Headers -------------------------------------------------------------------------------------------

export const idempotencyKeyHeader = z.string().regex(IDEMPOTENCY_KEY_RE, "must be 1–200 printable ASCII characters").describe(
  "The same key with the same body returns the same job; with another body, 409.",
);
export const lastEventIdHeader = eventSeq;

// Responses (documentation) -------------------------------------------------------------------------

const changes = z.object({ create: z.number(), update: z.number(), delete: z.number(), replace: z.number(), same: z.number() });
const outputValue = z.object({ value: z.unknown(), secret: z.boolean() });
export const outputsSchema = z.record(z.string(), outputValue).describe('Secret values are always "[secret]".');
const driftedResource = z.object({
  urn: z.string(),
  type: z.string(),
  kind: z.enum(["update", "delete", "create"]),
  properties: z.array(z.object({ path: z.string(), kind: z.enum(["add", "update", "delete"]), state: z.unknown().optional(), live: z.unknown().optional() })),
});
const step = z.object({ urn: z.string(), type: z.string(), op: z.string(), changedProperties: z.array(z.string()) });

export const jobSchema = z.object({
  id: jobId,
  stack: stackName,
  operation: z.enum(JOB_OPERATIONS),
  status: z.enum(JOB_STATUSES),
  version: z.string().nullable(),
  imageDigest: z.string().optional(),
  requestedBy: z.string(),
  source: z.enum(JOB_SOURCES),
  message: z.string().optional(),
  reason: z.string().optional(),
  target: z.array(z.string()).optional(),
  createdAt: z.string(),
  startedAt: z.string().nullable(),
  finishedAt: z.string().nullable(),
  queuePosition: z.number().int().nullable().describe("1 = next to run on its stack; null unless queued."),
  changes: changes.nullable(),
  steps: z.array(step).optional().describe("Per-resource steps (GET /v1/jobs/:id only)."),
  drift: z.array(driftedResource).optional(),
  outputs: outputsSchema.optional(),
  config: z
    .record(z.string(), z.string())
    .optional()
    .describe("The program config the job ran with (what a rollback to it restores). Secret config is never recorded; a value that holds a known secret reads [secret]."),
  approvals: z.array(z.object({ by: z.string(), at: z.string(), comment: z.string().optional() })).describe("Approvals recorded so far, oldest first."),
  approvalsRequired: z.number().int().describe("Approvals from principals other than the requester needed before the job applies (0: none)."),
  approvalExpiresAt: z.string().optional().describe("While awaiting approval: when the wait ends (as rejected)."),
  unscannedImagesAllowed: z
    .object({ reason: z.string() })
    .optional()
    .describe("On a job that needs approvals: the environment lets an image with no scan result deploy (deploy.allowUnscannedImages), and why."),
  approvalRequest: z
    .object({
      changes,
      steps: z.array(step).describe("Each changing resource with the properties it changes: what the approvers approve."),
      binding: z
        .object({ environment: z.string(), config: z.string().optional(), imageDigest: z.string().optional() })
        .optional()
        .describe("Hashes of the environment (all but the approval rules) and the program config, and the pinned image digest: any difference at apply is plan_changed."),
      requestedAt: z.string(),
      expiresAt: z.string().describe("An approval not applied by then (waiting, or approved and still queued) ends rejected, approval_expired."),
    })
    .optional(),
  rejection: z.object({ by: z.string(), at: z.string(), comment: z.string().optional() }).optional().describe("The approver's rejection that ended the job."),
  rollbackOf: z.string().optional(),
  rollbackTo: z.string().optional(),
  rolledBackBy: z.string().optional(),
  autoRollbackOf: z.string().optional(),
  error: z.object({ code: z.string(), message: z.string() }).optional(),
  engine: z.enum(ENGINE_KINDS as ["pulumi", "offline"]),
  lastEventSeq: z.number().int().describe("The id of the job's latest event (0 before any)."),
});

export const jobListSchema = z.object({ jobs: z.array(jobSchema), nextCursor: jobId.nullable() });

export const stackSchema = z.object({
  name: stackName,
  engine: z.enum(["pulumi", "offline"]).nullable(),
  production: z.boolean().nullable(),
  invalid: z
    .object({ file: z.string(), field: z.string(), reason: z.string() })
    .optional()
    .describe("Why the environment file does not load, when it does not: the file, the field's path and the reason. The stack cannot run until it is fixed."),
  lastDeployment: z.object({ id: jobId, version: z.string().nullable(), finishedAt: z.string().nullable() }).nullable(),
  drift: z.object({ drifted: z.boolean().nullable(), lastDriftAt: z.string().nullable() }),
  blockedReason: z.string().nullable().describe("Set after an interrupted mutation: mutations answer 409 until POST /v1/stacks/:stack/unlock."),
  runningJobId: jobId.nullable(),
  queued: z.number().int(),
});

export const stackListSchema = z.object({ stacks: z.array(stackSchema) });
export const deploymentListSchema = z.object({ stack: stackName, deployments: z.array(jobSchema) });
export const driftReportSchema = z.object({
  stack: stackName,
  jobId,
  checkedAt: z.string().nullable(),
  drifted: z.boolean(),
  resources: z.array(driftedResource),
});
export const stackOutputsSchema = z.object({ stack: stackName, engine: z.string(), outputs: outputsSchema });
/** Unlock: `clearPendingCreates` also refreshes with the engine's pending creates dropped (pulumi engine). */
export const unlockBody = z.strictObject({ clearPendingCreates: z.boolean().optional() });
export const unlockSchema = z.object({
  stack: stackName,
  wasBlocked: z.boolean(),
  reason: z.string().nullable(),
  clearedLease: z.object({ owner: z.string(), token: z.number(), acquiredAt: z.string(), expiresAt: z.string(), jobId: z.string().optional() }).nullable(),
  engine: z
    .object({
      kind: z.enum(["pulumi", "offline"]),
      pendingOperations: z.array(z.object({ urn: z.string(), type: z.string(), kind: z.string() })),
      lockCleared: z.boolean(),
      refreshed: z.object({ create: z.number(), update: z.number(), delete: z.number(), replace: z.number(), same: z.number() }).nullable(),
      notes: z.array(z.string()),
    })
    .nullable(),
});
export const healthSchema = z.object({ status: z.literal("ok") });
export const readinessSchema = z.object({
  ready: z.boolean(),
  shuttingDown: z.boolean(),
  store: z.object({ ok: z.boolean(), reason: z.string().optional() }),
  engines: z.record(z.string(), z.object({ ok: z.boolean(), reason: z.string().optional() })),
  invalidStacks: z.array(z.string()).describe("Stacks whose environment file does not load; GET /v1/stacks/{stack} says why."),
  runnableStacks: z.number().describe("Valid stacks whose engine can run here; the service is ready while there is one."),
  queue: z.object({ running: z.number(), queued: z.number(), maxConcurrent: z.number(), accepting: z.boolean() }),
});
export const errorSchema = z.object({
  error: z.object({
    code: z.string(),
    message: z.string(),
    details: z.unknown().optional(),
    requestId: z.string(),
  }),
});

// Parsing -------------------------------------------------------------------------------------------

/** Where a zod issue is: the full path (`target.0`), or the unknown key it names. */
function pathOf(issue: z.core.$ZodIssue): string {
  return issue.code === "unrecognized_keys" ? String(issue.keys[0]) : issue.path.map(String).join(".");
}

function messageOf(issue: z.core.$ZodIssue, value: unknown): string {
  if (issue.code === "unrecognized_keys") return `unknown field${issue.keys.length > 1 ? "s" : ""} ${issue.keys.map((k) => `"${printable(k)}"`).join(", ")}`;
  return typeIssueMessage(issue, value) ?? issue.message;
}

function printable(s: string): string {
  const p = s.replace(/[^\x20-\x7e]/g, "?");
  return p.length > 60 ? `${p.slice(0, 60)}…` : p;
}

/** A body or query value: 400 `invalid_request` naming the field on failure. */
export function parseInput<S extends z.ZodType>(schema: S, value: unknown, where: "body" | "query" | "header", name?: string): z.output<S> {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const issue = result.error.issues[0];
  const path = name ?? (pathOf(issue) || "body");
  const field = path.split(".")[0];
  const label = where === "query" ? `query parameter ${path}` : where === "header" ? `header ${path}` : path;
  throw new ConfigError(`${label}: ${messageOf(issue, value)}`, { details: { field, ...(path !== field ? { path } : {}), in: where } });
}

/** Path parameters: something that cannot name a stack or job names none, so 404. */
export function parseParams<S extends z.ZodType>(schema: S, value: unknown): z.output<S> {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const field = pathOf(result.error.issues[0]).split(".")[0];
  throw new NotFoundError(field === "id" ? "job not found" : field === "stack" ? "stack not found" : "not found", { details: { field } });
}

/** Targets must be URNs of the stack they are sent to. */
export function assertTargetsOfStack(stack: string, targets: readonly string[] | undefined): void {
  const prefix = `urn:pulumi:${stack}::`;
  const index = targets?.findIndex((t) => !t.startsWith(prefix)) ?? -1;
  if (index >= 0) {
    throw new ConfigError(`target.${index}: "${printable(targets![index])}" is not a URN of stack ${stack} (${prefix}<project>::<type>::<name>)`, {
      details: { field: "target", path: `target.${index}`, in: "body" },
    });
  }
}
