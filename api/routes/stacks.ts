/**
 * Stack routes: the router has parsed and authorized the request; each handler makes one call into
 * automation/ and answers. Operation routes submit a job to the queue and answer 202 with it, after
 * the checks only the service makes (the Idempotency-Key header, shutting down, the engine's
 * availability), so a refused request writes nothing.
 */
import { createHash } from "crypto";
import type { z } from "zod";
import type { Environment } from "../../automation/environment";
import { ConfigError, EngineUnavailableError, NotFoundError } from "../../automation/errors";
import { canonicalJson } from "../../automation/jobs/approvals";
import type { JobRequestParams } from "../../automation/jobs/types";
import type { JobOperation } from "../../automation/store";
import { hasRole, readableStacks, readsEveryStack, type Principal } from "../auth";
import type { ApiContext } from "../context";
import { presentJob, presentOutputs } from "../present";
import {
  assertTargetsOfStack,
  deploymentBody,
  destroyBody,
  idempotencyKeyHeader,
  parseInput,
  previewBody,
  rollbackBody,
  type deploymentsQuery,
  type unlockBody,
  type stackParams,
} from "../schemas";
import type { HandlerInput, Reply } from "./route";

type StackInput<B = unknown, Q = unknown> = HandlerInput<z.output<typeof stackParams>, Q, B>;

// Reads -----------------------------------------------------------------------------------------------

/**
 * Why a stack's file does not load, as `principal` may see it: a reason that names another stack
 * the principal may not read (a CIDR overlap names the other stack and its CIDR) is withheld.
 */
function visibleReason(ctx: ApiContext, principal: Principal | undefined, name: string, reason: string): string {
  if (principal === undefined || readsEveryStack(principal)) return reason;
  const named = ctx.environments.list().filter((other) => other !== name && new RegExp(`(^|[^a-z0-9-])${other}([^a-z0-9-]|$)`).test(reason));
  if (named.every((other) => hasRole(principal, "viewer", { stack: other }))) return reason;
  return "the environment file does not load; the reason concerns a stack you may not read (an admin can see it)";
}

export async function stackSummary(ctx: ApiContext, name: string, principal?: Principal): Promise<Record<string, unknown>> {
  let env: Environment | undefined;
  let invalid: { file: string; field: string; reason: string } | undefined;
  try {
    env = ctx.environments.load(name);
  } catch (err) {
    const found = invalidReason(name, err);
    // A viewer sees only what concerns stacks they may read (a reason may name another stack).
    invalid = { ...found, reason: visibleReason(ctx, principal, name, found.reason) };
  }
  const [state, [last], [running], queued] = await Promise.all([
    ctx.store.getStackState(name),
    ctx.store.deployments(name, { limit: 1 }),
    ctx.store.listJobs({ stack: name, status: "running", limit: 1 }),
    ctx.store.countQueued({ stack: name }),
  ]);
  return {
    name,
    engine: env?.engine ?? null,
    production: env?.settings.production ?? null,
    ...(invalid !== undefined ? { invalid } : {}),
    lastDeployment: last ? { id: last.id, version: last.version ?? null, finishedAt: last.finishedAt ?? null } : null,
    drift: { drifted: state.drifted ?? null, lastDriftAt: state.lastDriftAt ?? null },
    blockedReason: state.blockedReason ?? null,
    runningJobId: running?.id ?? null,
    queued,
  };
}

/**
 * Why a stack's file does not load, as a reader of that stack may see it: the file's base name (not
 * where the service keeps it), the field and the loader's reason, which concerns that file alone.
 */
function invalidReason(stack: string, err: unknown): { file: string; field: string; reason: string } {
  const details = err instanceof ConfigError ? (err.details as { field?: unknown; reason?: unknown } | undefined) : undefined;
  const file = `${stack}.yaml`;
  if (typeof details?.reason === "string") return { file, field: typeof details.field === "string" ? details.field : "(file)", reason: details.reason };
  return { file, field: "(file)", reason: "does not load" };
}

/** Only the stacks the caller may read. */
export async function listStacks({ ctx, principal }: HandlerInput<unknown, unknown, unknown>): Promise<Reply> {
  return { body: { stacks: await Promise.all(readableStacks(principal, ctx.environments.list()).map((name) => stackSummary(ctx, name, principal))) } };
}

export async function getStack({ ctx, params, principal }: StackInput): Promise<Reply> {
  return { body: await stackSummary(ctx, params.stack, principal) };
}

export async function listDeployments({ ctx, params, query }: StackInput<unknown, z.output<typeof deploymentsQuery>>): Promise<Reply> {
  const deployments = (await ctx.store.deployments(params.stack, { limit: query.limit })).map((job) => presentJob(job));
  return { body: { stack: params.stack, deployments } };
}

export async function latestDrift({ ctx, params }: StackInput): Promise<Reply> {
  const [job] = await ctx.store.listJobs({ stack: params.stack, operation: "drift", status: "succeeded", limit: 1 });
  if (!job) throw new NotFoundError(`no drift check of ${params.stack} has finished yet`, { details: { stack: params.stack } });
  const resources = job.drift ?? [];
  return { body: { stack: params.stack, jobId: job.id, checkedAt: job.finishedAt ?? null, drifted: resources.length > 0, resources } };
}

export async function stackOutputs({ ctx, params }: StackInput): Promise<Reply> {
  const env = ctx.environments.load(params.stack);
  const engine = ctx.deps.engineFor(env);
  const outputs = await engine.outputs(env);
  return { body: { stack: params.stack, engine: engine.kind, outputs: presentOutputs(outputs) } };
}

// Operations ------------------------------------------------------------------------------------------

/** The request's fingerprint for idempotency: method, path and the parsed body with sorted keys. */
export function requestHash(method: string, path: string, body: unknown): string {
  return createHash("sha256").update(`${method.toUpperCase()} ${path}\n${canonicalJson(body)}`).digest("hex");
}

/**
 * The key a client's `Idempotency-Key` is stored under: scoped by the principal and the stack (a key
 * reused by another caller or on another stack is another key), hashed, and in the `api:` namespace,
 * which the scheduler's own keys (`schedule:…`) are outside of.
 */
export function scopedIdempotencyKey(principal: string, stack: string, key: string): string {
  return `api:${createHash("sha256").update(`${principal}\n${stack}\n${key}`).digest("hex")}`;
}


/**
 * Submits one operation: refused at once while shutting down or when the stack's engine cannot run
 * here (nothing is written), otherwise queued (or found again by its Idempotency-Key).
 */
async function submit(input: StackInput, operation: JobOperation, params: JobRequestParams): Promise<Reply> {
  const { ctx, req, principal } = input;
  const stack = input.params.stack;
  const rawKey = req.get("idempotency-key");
  const idempotencyKey = rawKey === undefined ? undefined : parseInput(idempotencyKeyHeader, rawKey, "header", "Idempotency-Key");
  if (ctx.lifecycle.shuttingDown) {
    throw new EngineUnavailableError("the service is shutting down; retry against another instance or after the restart", {
      details: { retryAfterSeconds: ctx.lifecycle.retryAfterSeconds },
    });
  }
  const env = ctx.environments.load(stack);
  const availability = await ctx.readiness.engine(ctx.deps.engineFor(env));
  if (!availability.ok) {
    throw new EngineUnavailableError(availability.reason ?? `the ${env.engine} engine is not available`, { details: { engine: env.engine, retryAfterSeconds: 30 } });
  }
  const { job, created } = await ctx.queue.submit({
    stack,
    operation,
    requestedBy: principal.name,
    source: "api",
    params,
    idempotencyKey: idempotencyKey === undefined ? undefined : scopedIdempotencyKey(principal.name, stack, idempotencyKey),
    // The canonical path (the parsed stack, not the raw `%64ev`), so one request has one fingerprint.
    requestHash: idempotencyKey === undefined ? undefined : requestHash(req.method, `/v1/stacks/${stack}/${operation}`, input.body),
  });
  const current = (await ctx.queue.get(job.id)) ?? job;
  return {
    status: 202,
    headers: { Location: `/v1/jobs/${job.id}`, ...(created ? {} : { "Idempotent-Replayed": "true" }) },
    body: presentJob(current, { queuePosition: current.queuePosition }),
  };
}

/** The version defaults to the environment's app.version (the queue resolves it and records it on the job). */
export function createPreview(input: StackInput<z.output<typeof previewBody>>): Promise<Reply> {
  return submit(input, "preview", { version: input.body.version });
}

export function createDeployment(input: StackInput<z.output<typeof deploymentBody>>): Promise<Reply> {
  const { version, message, target } = input.body;
  assertTargetsOfStack(input.params.stack, target);
  return submit(input, "up", { version, message, target });
}

export function createRollback(input: StackInput<z.output<typeof rollbackBody>>): Promise<Reply> {
  return submit(input, "rollback", { to: input.body.to, reason: input.body.reason });
}

export function createDriftCheck(input: StackInput): Promise<Reply> {
  return submit(input, "drift", {});
}

export function createRefresh(input: StackInput): Promise<Reply> {
  return submit(input, "refresh", {});
}

export function createDestroy(input: StackInput<z.output<typeof destroyBody>>): Promise<Reply> {
  if (input.body.confirm !== input.params.stack) {
    throw new ConfigError(`confirm: must be the stack's name, "${input.params.stack}"`, { details: { field: "confirm", in: "body" } });
  }
  return submit(input, "destroy", { reason: `destroy confirmed by ${input.principal.name}` });
}

export async function unlockStack({ ctx, params, principal, body }: StackInput<z.output<typeof unlockBody>>): Promise<Reply> {
  // The queue refuses while a job runs here, so the engine's recovery only ever meets locks and
  // pending operations of a holder that is gone; it holds the stack's lease across the recovery, so
  // nothing queued starts before it has finished.
  const env = ctx.environments.load(params.stack);
  const engine = ctx.deps.engineFor(env);
  const result = await ctx.queue.unlockAndRecover(params.stack, principal.name, async () =>
    engine.recover ? engine.recover(env, { clearPendingCreates: body.clearPendingCreates }) : undefined,
  );
  const lease = result.clearedLease;
  const recovery = result.recovery;
  return {
    body: {
      stack: params.stack,
      wasBlocked: result.wasBlocked,
      reason: result.reason ?? null,
      clearedLease: lease ? { owner: lease.owner, token: lease.token, acquiredAt: lease.acquiredAt, expiresAt: lease.expiresAt, ...(lease.jobId ? { jobId: lease.jobId } : {}) } : null,
      engine: recovery
        ? { kind: recovery.engine, pendingOperations: recovery.pendingOperations, lockCleared: recovery.lockCleared, refreshed: recovery.refresh?.changes ?? null, notes: recovery.notes }
        : null,
    },
  };
}
