/**
 * Every route of the service, in one table: method, path, role, input schemas, responses, handler.
 * The express router, the OpenAPI document and the authorization matrix are generated from it,
 * so a route cannot exist without being documented and authorized.
 *
 * Roles (design): viewer < deployer < admin, approver beside them; `none` is public.
 */
import { z } from "zod";
import { openApiDocument } from "../openapi";
import {
  cancelBody,
  decisionBody,
  deploymentBody,
  deploymentListSchema,
  deploymentsQuery,
  destroyBody,
  driftReportSchema,
  emptyBody,
  eventsQuery,
  healthSchema,
  idempotencyKeyHeader,
  jobListSchema,
  jobParams,
  jobSchema,
  jobsQuery,
  lastEventIdHeader,
  noQuery,
  previewBody,
  readinessSchema,
  rollbackBody,
  stackListSchema,
  stackOutputsSchema,
  stackParams,
  stackSchema,
  unlockBody,
  unlockSchema,
} from "../schemas";
import { approveJob, rejectJob } from "./approvals";
import { auditListSchema, auditQuery, listAudit } from "./audit";
import { cancelJob, getJob, jobLog, jobScope, listJobs, streamEvents } from "./jobs";
import { meSchema, whoAmI } from "./me";
import { route, type AnyRoute, type HeaderSpec, type ResponseSpec } from "./route";
import {
  createDeployment,
  createDestroy,
  createDriftCheck,
  createPreview,
  createRefresh,
  createRollback,
  getStack,
  latestDrift,
  listDeployments,
  listStacks,
  stackOutputs,
  unlockStack,
} from "./stacks";
import { healthz, metrics, readyz } from "./system";

const idempotencyKey: HeaderSpec = { name: "Idempotency-Key", description: "The same key and body return the same job; the same key with another body is 409.", schema: idempotencyKeyHeader };
const accepted: ResponseSpec = { status: 202, description: "The job, queued. `Location` names it.", schema: jobSchema };
/** Statuses every operation POST can answer. */
const OPERATION_ERRORS = [400, 404, 409, 413, 503];

/** The document, built once on first request. */
let openApiCache: Record<string, unknown> | undefined;

export const ROUTES: readonly AnyRoute[] = [
  // Public ----------------------------------------------------------------------------------------
  route({
    method: "get", path: "/healthz", role: "none", tag: "service",
    summary: "Liveness: the process answers.",
    description: "Answers 200 while the process runs; checks nothing else. Use it as the liveness probe: a failure means the process should be restarted.",
    responses: [{ status: 200, description: "Alive.", schema: healthSchema }],
    errors: [],
    handler: healthz,
  }),
  route({
    method: "get", path: "/readyz", role: "none", tag: "service",
    summary: "Readiness: the store answers, an engine can run, the service is not shutting down.",
    description: "200 while the store answers, at least one stack can run (its environment file loads and its engine can run here) and the service is not shutting down; 503 `engine_unavailable` otherwise, saying why. Stacks whose environment file does not load are named in `invalidStacks`; they do not make the service unready while another stack can run.",
    responses: [{ status: 200, description: "Ready, with each check.", schema: readinessSchema }],
    errors: [503],
    handler: readyz,
  }),
  route({
    method: "get", path: "/metrics", role: "metrics", tag: "service",
    summary: "Prometheus metrics (they name every stack): a token with the metrics role on \"*\" (or admin).",
    description: "Job counts and durations, queue depth, running jobs, drift state and last deployment time per stack, plus the process's own metrics, for a Prometheus scraper. They name every stack, so they need a token with the metrics role on \"*\" (admin implies it); scrape with `authorization: Bearer <token>`.",
    responses: [{ status: 200, description: "Prometheus text exposition format.", contentType: "text/plain; version=0.0.4" }],
    errors: [],
    handler: metrics,
  }),
  route({
    method: "get", path: "/openapi.json", role: "none", tag: "service",
    summary: "This document (OpenAPI 3.1).",
    description: "The OpenAPI 3.1 document of this service, generated from the route table and the schemas that validate each request, so it cannot drift from what the service accepts.",
    responses: [{ status: 200, description: "The OpenAPI document.", schema: z.record(z.string(), z.unknown()) }],
    errors: [],
    handler: () => ({ body: (openApiCache ??= openApiDocument(ROUTES)) }),
  }),

  // Who -------------------------------------------------------------------------------------------
  route({
    method: "get", path: "/v1/me", role: "viewer", tag: "stacks",
    summary: "The caller: the token's name and its roles on each stack it may read.",
    description: "The principal the bearer token names, and its roles on every stack it may read (stacks it may not read are left out, as the API answers 404 for them). The dashboard shows each stack's actions by these roles; the API still authorizes every request on its own.",
    query: noQuery,
    responses: [{ status: 200, description: "The caller.", schema: meSchema }],
    errors: [400],
    handler: whoAmI,
  }),

  // Stacks ----------------------------------------------------------------------------------------
  route({
    method: "get", path: "/v1/stacks", role: "viewer", tag: "stacks",
    summary: "Every environment with its last deployment, drift status, running job and queue.",
    description: "Only the stacks the caller may read. A stack whose environment file does not load is listed with `invalid` (the file, the field and the reason) and cannot run until it is fixed; the other stacks are unaffected.",
    query: noQuery,
    responses: [{ status: 200, description: "The stacks.", schema: stackListSchema }],
    errors: [400],
    handler: listStacks,
  }),
  route({
    method: "get", path: "/v1/stacks/:stack", role: "viewer", tag: "stacks",
    summary: "One environment with its last deployment, drift status, running job and queue.",
    description: "The same summary as in the list, for one stack; 404 for a stack the caller may not read, like one that does not exist.",
    params: stackParams, query: noQuery,
    responses: [{ status: 200, description: "The stack.", schema: stackSchema }],
    errors: [400, 404],
    handler: getStack,
  }),
  route({
    method: "post", path: "/v1/stacks/:stack/previews", role: "deployer", tag: "operations", operation: true,
    summary: "Preview what a deployment would change (a job).",
    description: "Runs the engine's preview and the review gates as a job and changes nothing; the job's steps and its findings say what a deployment of that version would change and whether a gate would stop it. Answers 202 with the job at once.",
    params: stackParams, body: previewBody, headers: [idempotencyKey],
    responses: [accepted],
    errors: OPERATION_ERRORS,
    handler: createPreview,
  }),
  route({
    method: "post", path: "/v1/stacks/:stack/deployments", role: "deployer", tag: "operations", operation: true,
    summary: "Deploy a version (a job): preview, review gates, image scan, up, verify, record.",
    description: "Answers 202 with the job at once; the job previews, runs the review gates (policies, protected types, change bounds, overlapping VPC ranges in one account), waits for approvals where the environment requires them, pushes and scans the image (production stops on an unscanned image unless `deploy.allowUnscannedImages`), applies, verifies and records the deployment. Follow it with GET /v1/jobs/{id} or its events.",
    params: stackParams, body: deploymentBody, headers: [idempotencyKey],
    responses: [accepted],
    errors: OPERATION_ERRORS,
    handler: createDeployment,
  }),
  route({
    method: "get", path: "/v1/stacks/:stack/deployments", role: "viewer", tag: "stacks",
    summary: "Successful deployments (ups and rollbacks), newest first.",
    description: "The stack's successful ups and rollbacks, newest first, each with its version, image digest, change summary and outputs (secret values masked): what a rollback can return to.",
    params: stackParams, query: deploymentsQuery,
    responses: [{ status: 200, description: "The deployments.", schema: deploymentListSchema }],
    errors: [400, 404],
    handler: listDeployments,
  }),
  route({
    method: "post", path: "/v1/stacks/:stack/rollbacks", role: "deployer", tag: "operations", operation: true,
    summary: "Roll back to an earlier good deployment (default: the previous one) (a job).",
    description: "Answers 202 with the job. Without `to`, returns to the previous good deployment; `to` names a deployment by job id or version. When only the image changed, the fast path updates the task definition and service alone.",
    params: stackParams, body: rollbackBody, headers: [idempotencyKey],
    responses: [accepted],
    errors: OPERATION_ERRORS,
    handler: createRollback,
  }),
  route({
    method: "post", path: "/v1/stacks/:stack/drift-checks", role: "deployer", tag: "operations", operation: true,
    summary: "Check for drift between the state and what exists (a job; changes nothing).",
    description: "Answers 202 with the job; the job refreshes in preview mode and records, per resource and property, what differs between the state and what exists. The latest result is GET /v1/stacks/{stack}/drift.",
    params: stackParams, body: emptyBody, headers: [idempotencyKey],
    responses: [accepted],
    errors: OPERATION_ERRORS,
    handler: createDriftCheck,
  }),
  route({
    method: "get", path: "/v1/stacks/:stack/drift", role: "viewer", tag: "stacks",
    summary: "The latest drift report: the last finished drift check's result.",
    description: "The resources and properties the last successful drift check found different; 404 until a drift check has finished.",
    params: stackParams, query: noQuery,
    responses: [{ status: 200, description: "The report.", schema: driftReportSchema }],
    errors: [400, 404],
    handler: latestDrift,
  }),
  route({
    method: "post", path: "/v1/stacks/:stack/refreshes", role: "deployer", tag: "operations", operation: true,
    summary: "Bring the state in line with what exists (a job).",
    description: "Answers 202 with the job; the job takes what exists into the state (accepting drift). Nothing in the cloud changes.",
    params: stackParams, body: emptyBody, headers: [idempotencyKey],
    responses: [accepted],
    errors: OPERATION_ERRORS,
    handler: createRefresh,
  }),
  route({
    method: "post", path: "/v1/stacks/:stack/destroys", role: "admin", tag: "operations", operation: true,
    summary: "Delete every resource of the stack (a job); `confirm` must be the stack's name.",
    description: "Admin only. Answers 202 with the job; protected resource types stop it unless named. `confirm` must equal the stack's name, so a mistyped path destroys nothing.",
    params: stackParams, body: destroyBody, headers: [idempotencyKey],
    responses: [accepted],
    errors: OPERATION_ERRORS,
    handler: createDestroy,
  }),
  route({
    method: "get", path: "/v1/stacks/:stack/outputs", role: "viewer", tag: "stacks",
    summary: "The stack's outputs; secret values are \"[secret]\".",
    description: "The stack outputs from the engine; values marked secret are shown as \"[secret]\" and never leave the service.",
    params: stackParams, query: noQuery,
    responses: [{ status: 200, description: "The outputs.", schema: stackOutputsSchema }],
    errors: [400, 404, 503],
    handler: stackOutputs,
  }),
  route({
    method: "post", path: "/v1/stacks/:stack/unlock", role: "admin", tag: "operations",
    summary: "Recover a stack after an interrupted job: clear its block, its lease if the holder is gone, and the engine's stale lock; report pending operations.",
    description: "Admin only. Clears the block an interrupted mutation left, the stack's lease when its holder is provably gone, and the engine's stale lock; 409 while a job runs on the stack or its holder may still be alive.",
    params: stackParams, body: unlockBody,
    responses: [{ status: 200, description: "What was cleared.", schema: unlockSchema }],
    errors: [400, 404, 409],
    handler: unlockStack,
  }),

  // Jobs ------------------------------------------------------------------------------------------
  route({
    method: "get", path: "/v1/jobs", role: "viewer", tag: "jobs",
    summary: "Jobs, newest first, filtered by stack, status and operation; page with `before`.",
    description: "Only jobs of stacks the caller may read. Filter by `stack`, `status` and `operation`; pages of `limit` jobs, the next one with `before` set to the previous page's `nextCursor`.",
    query: jobsQuery,
    responses: [{ status: 200, description: "A page of jobs; `nextCursor` is the next page's `before`.", schema: jobListSchema }],
    errors: [400],
    handler: listJobs,
  }),
  route({
    method: "get", path: "/v1/jobs/:id", role: "viewer", tag: "jobs", scope: jobScope,
    summary: "One job, with its queue position while queued.",
    description: "The job's status, version, requester, change summary, approvals, outcome and error. A finished job never changes: its response carries an `ETag`, and a request with that value in `If-None-Match` answers 304 with no body.",
    params: jobParams, query: noQuery,
    headers: [{ name: "If-None-Match", description: "A finished job's ETag: answered 304 with no body while the job is unchanged.", schema: z.string().max(1024) }],
    responses: [
      { status: 200, description: "The job; a finished job's answer carries an ETag.", schema: jobSchema },
      { status: 304, description: "Not modified: the finished job is as the ETag in If-None-Match says.", contentType: "application/json" },
    ],
    errors: [400, 404],
    handler: getJob,
  }),
  route({
    method: "get", path: "/v1/jobs/:id/events", role: "viewer", tag: "jobs", scope: jobScope,
    summary: "The job's events as Server-Sent Events: replay after Last-Event-ID, then live, then `end`.",
    description: "Server-Sent Events: every event recorded so far after `Last-Event-ID` (or the `lastEventId` query), then live events, then `event: end` with the job; the stream closes when the job ends. A reconnecting client loses nothing.",
    params: jobParams, query: eventsQuery,
    headers: [{ name: "Last-Event-ID", description: "Replay only events after this id.", schema: lastEventIdHeader }],
    responses: [{ status: 200, description: "`id: <seq>`, `event: <type>`, `data: <json>` per event; `event: end` with the job last.", contentType: "text/event-stream" }],
    errors: [400, 404],
    handler: streamEvents,
  }),
  route({
    method: "get", path: "/v1/jobs/:id/log", role: "viewer", tag: "jobs", scope: jobScope,
    summary: "The job's log as plain text, one line per event.",
    description: "The same events as the event stream, as plain text lines with their time: what `npm run <op>` prints, for people and log collectors.",
    params: jobParams, query: noQuery,
    responses: [{ status: 200, description: "`<time> <text>` per line.", contentType: "text/plain" }],
    errors: [400, 404],
    handler: jobLog,
  }),
  route({
    method: "post", path: "/v1/jobs/:id/cancel", role: "deployer", tag: "jobs", scope: jobScope,
    summary: "Cancel: a queued job never starts; a running one gets a graceful interrupt; `force` (admin, after that) kills it.",
    description: "A queued or awaiting-approval job ends `canceled` at once (200). A running job gets the engine's graceful interrupt (202) and becomes canceled when the engine stops; `force: true` (admin, after a graceful cancel) kills the engine's process tree.",
    params: jobParams, body: cancelBody,
    responses: [
      { status: 200, description: "The job, canceled.", schema: jobSchema },
      { status: 202, description: "The job, asked to stop; it becomes canceled when the engine stops.", schema: jobSchema },
    ],
    errors: [400, 403, 404, 409],
    handler: cancelJob,
  }),
  route({
    method: "post", path: "/v1/jobs/:id/approvals", role: "approver", tag: "jobs", scope: jobScope,
    summary: "Approve a job awaiting approval; the approval that reaches `approvalsRequired` queues it to apply.",
    description:
      "Never by the job's requester (403), at most once per principal and only while the job awaits approval (409). " +
      "Once approved, the job runs a fresh preview and applies only if it matches the approved change; otherwise it fails with `plan_changed`.",
    params: jobParams, body: decisionBody,
    responses: [{ status: 200, description: "The job with the approval: still awaiting approval, or queued to apply.", schema: jobSchema }],
    errors: [400, 403, 404, 409],
    handler: approveJob,
  }),
  route({
    method: "post", path: "/v1/jobs/:id/rejections", role: "approver", tag: "jobs", scope: jobScope,
    summary: "Reject a job awaiting approval: it ends `rejected` with the comment and never applies.",
    description: "Never by the job's requester (403; the requester cancels instead), at most once per principal and only while the job awaits approval (409).",
    params: jobParams, body: decisionBody,
    responses: [{ status: 200, description: "The job, rejected.", schema: jobSchema }],
    errors: [400, 403, 404, 409],
    handler: rejectJob,
  }),

  // Audit -----------------------------------------------------------------------------------------
  route({
    method: "get", path: "/v1/audit", role: "admin", tag: "audit",
    summary: "The audit trail, newest first: every mutation and every denied request, with who, what, stack, job, request id, address, result and time.",
    description: "An admin of every stack sees every record; an admin of some stacks sees only their records.",
    query: auditQuery,
    responses: [{ status: 200, description: "A page of records; `nextCursor` is the next page's `before`.", schema: auditListSchema }],
    errors: [400],
    handler: listAudit,
  }),
];
