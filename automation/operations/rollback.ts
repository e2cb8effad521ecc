/**
 * rollback: roll forward to an earlier good deployment's recorded config and image digest. It never
 * rebuilds an image. When only the version differs from what runs now, it updates just the task
 * definition and the service (the procedure's fast path); otherwise it runs a full up.
 */
import { retryWhileBusy } from "../store/busy";
import { CONFIG_KEYS, settingsSchema, type Settings } from "../../infra/config";
import type { Environment } from "../environment";
import { ConfigError, GateError, isStoreBusy, NotFoundError } from "../errors";
import type { Job } from "../store";
import { phase, scrubEvent, type OperationContext } from "./context";
import { deploy, type DeployOutcome, type DeployParams } from "./deploy";
import { programConfig } from "../program/stack-config";

const FAST_PATH_TYPES = new Set(["aws:ecs/taskDefinition:TaskDefinition", "aws:ecs/service:Service"]);

export interface RollbackParams {
  /** A deployment's job id or version; default: the deployment before the current one. */
  readonly to?: string;
  readonly reason?: string;
  /** Called after the gates pass and before anything changes; throws to stop (approvals). */
  readonly beforeApply?: DeployParams["beforeApply"];
}

/** Which deployment a rollback restores, and which one it replaces. */
export function chooseRollbackTarget(deployments: readonly Job[], to?: string): { target: Job; current?: Job } {
  const current = deployments[0];
  if (to === undefined) {
    // A deployment a rollback replaced is not good any more: rolling back twice must not return to it.
    const target = deployments.find((d) => d !== current && d.rolledBackBy === undefined && (d.version !== current?.version || d.imageDigest !== current?.imageDigest));
    if (!target) throw new NotFoundError("there is no earlier good deployment to roll back to", { details: { field: "to" } });
    return { target, current };
  }
  const target = deployments.find((d) => d.id === to) ?? deployments.find((d) => d.version === to);
  if (!target) throw new NotFoundError(`no successful deployment with id or version "${to}"`, { details: { field: "to" } });
  return { target, current };
}

/** The settings a deployment recorded (its config snapshot), validated again before use. */
export function recordedSettings(job: Job): Settings {
  const raw = job.config?.[CONFIG_KEYS.settings];
  if (raw === undefined) throw new ConfigError(`deployment ${job.id} has no recorded config to restore`);
  const parsed = settingsSchema.safeParse(JSON.parse(raw));
  if (!parsed.success) throw new ConfigError(`deployment ${job.id}'s recorded config no longer validates: ${parsed.error.issues[0].path.join(".")}: ${parsed.error.issues[0].message}`);
  return parsed.data;
}

export async function rollback(ctx: OperationContext, params: RollbackParams): Promise<DeployOutcome> {
  const deployments = await ctx.deps.store.deployments(ctx.env.name, { limit: 200 });
  const { target, current } = chooseRollbackTarget(deployments, params.to);
  const outcome = await restore(ctx, target, current, params.reason, params.beforeApply);
  if (current !== undefined && (current.version !== target.version || current.imageDigest !== target.imageDigest)) {
    await retryWhileBusy(() => ctx.deps.store.updateJob(current.id, { rolledBackBy: ctx.job.id }));
  }
  return outcome;
}

/** Used by deploy when verification fails: a rollback job of its own, linked to the failed one. */
export async function runAutomaticRollback(ctx: OperationContext, lastGood: Job, reason: string): Promise<Job> {
  const job = await retryWhileBusy(() => ctx.deps.store.createJob({
    stack: ctx.env.name,
    operation: "rollback",
    status: "running",
    requestedBy: ctx.job.requestedBy,
    source: ctx.job.source,
    engine: ctx.job.engine,
    version: lastGood.version,
    reason: `automatic: ${reason}`,
    rollbackOf: ctx.job.id,
    autoRollbackOf: ctx.job.id,
    startedAt: new Date().toISOString(),
  }));
  // The rollback's events go to its own log as well as to the deployment that triggered it. The
  // writes are chained, so they land in order, and all land before the rollback's outcome.
  let appended: Promise<void> = Promise.resolve();
  // A write that failed for another reason than the database being busy fails the rollback: thrown
  // by every later emit (the engines ignore a listener's throw; the operation's own phase and log
  // lines do not) and, at the latest, before the outcome is recorded.
  let appendFailed: { readonly error: unknown } | undefined;
  const emit: OperationContext["emit"] = (event) => {
    ctx.emit(event);
    if (appendFailed) throw appendFailed.error;
    const clean = scrubEvent(event);
    appended = appended.then(async () => {
      try {
        await ctx.deps.store.appendEvent(job.id, { type: clean.type, data: clean });
      } catch (err) {
        // The database busy: the line is in the deployment's own log (its events are retried there).
        if (!isStoreBusy(err)) appendFailed ??= { error: err };
      }
    });
  };
  const child: OperationContext = { ...ctx, job, emit };
  try {
    await restore(child, lastGood, ctx.job, job.reason);
    await appended;
    if (appendFailed) throw appendFailed.error;
    return await retryWhileBusy(() => ctx.deps.store.updateJob(job.id, { status: "succeeded", finishedAt: new Date().toISOString() }));
  } catch (err) {
    await appended;
    const e = err instanceof Error ? err : new Error(String(err));
    await retryWhileBusy(() => ctx.deps.store.updateJob(job.id, { status: "failed", finishedAt: new Date().toISOString(), error: { code: "operation_failed", message: e.message } }));
    throw err;
  }
}

/**
 * ECR's lifecycle policy keeps only the newest `app.keepImages` images; an older deployment's digest
 * may be gone, and ECS would fail to start its tasks (CannotPullContainerError) after the service had
 * changed. Refuse before anything runs. An answer ECR cannot give (`unknown`) lets the rollback go on.
 */
async function assertImageStillExists(ctx: OperationContext, env: Environment, target: Job, current: Job | undefined): Promise<void> {
  const catalog = ctx.deps.imagesFor?.(env);
  const digest = target.imageDigest;
  if (catalog === undefined || digest === undefined || env.settings.app.build === undefined) return;
  const repository = [target, current].map((j) => j?.outputs?.repositoryUrl?.value).find((v): v is string => typeof v === "string");
  if (repository === undefined) return;
  const imageRef = `${repository}@${digest}`;
  const presence = await catalog.presence(imageRef, env.name, { signal: ctx.signal });
  if (presence.status === "missing") {
    throw new GateError(
      `the image of ${target.version} (${target.id}), ${imageRef}, is no longer in ECR (the lifecycle policy keeps the newest ${env.settings.app.keepImages}); nothing was changed. Roll back to a newer deployment, or deploy ${target.version}'s source as a new version`,
      { details: { imageRef, job: target.id } },
    );
  }
  if (presence.status === "unknown") ctx.emit({ type: "log", level: "warning", message: `could not confirm that ${imageRef} is still in ECR (${presence.reason}); rolling back anyway` });
}

async function restore(ctx: OperationContext, target: Job, current: Job | undefined, reason?: string, beforeApply?: DeployParams["beforeApply"]): Promise<DeployOutcome> {
  if (target.version === undefined) throw new ConfigError(`deployment ${target.id} recorded no version`);
  const settings = recordedSettings(target);
  const env: Environment = { ...ctx.env, settings };
  await assertImageStillExists(ctx, env, target, current);
  const restoring: OperationContext = { ...ctx, env };
  await retryWhileBusy(() => ctx.deps.store.updateJob(ctx.job.id, {
    version: target.version,
    imageDigest: target.imageDigest,
    rollbackOf: ctx.job.rollbackOf ?? current?.id,
    rollbackTo: target.id,
    reason: ctx.job.reason ?? reason,
  }));

  let fastTarget: string[] | undefined;
  if (current !== undefined && current.config?.[CONFIG_KEYS.settings] === target.config?.[CONFIG_KEYS.settings]) {
    // The URNs follow from the program alone (the mocked evaluation names them as the engine does),
    // and deploy's policy gate evaluates the same config next, so this costs no engine call. A
    // program without them gets the full update.
    const evaluation = await ctx.deps.evaluate(programConfig(env, target.version, target.imageDigest), ctx.signal, env.program);
    const urns = evaluation.resources.filter((r) => FAST_PATH_TYPES.has(r.type)).map((r) => r.urn);
    if (urns.length > 0) fastTarget = urns;
  }
  const fast = fastTarget !== undefined;
  phase(ctx, "rollback", fast
    ? `restoring ${target.version} (${target.id}): only the version differs, updating the task definition and service`
    : `restoring ${target.version} (${target.id}) with its recorded config: full update`);
  return deploy(restoring, { version: target.version, imageDigest: target.imageDigest, target: fastTarget, beforeApply, allowAutoRollback: false });
}
