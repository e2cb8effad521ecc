/**
 * deploy: the procedure's plan → review → apply → verify → record, as one operation.
 *
 *   preflight   the engine can run; for real AWS, the caller's account is the environment's
 *   preview     what would change, streamed per resource
 *   gates       policy rules, protected types, change bounds (nothing has changed yet)
 *   approval    the caller's rule (CLI: approvals need the service unless bypassed)
 *   image       a built image is pushed first (targeted up) and its scan must stay under the
 *               environment's threshold before the ECS service can change
 *   up          everything else
 *   verify      steady state, healthy targets, smoke tests; on failure, roll back automatically
 *               when the environment allows it
 *   record      version, digest, config, outputs and changes on the job row
 */
import { retryWhileBusy } from "../store/busy";
import { CONFIG_KEYS } from "../../infra/config";
import { checkPolicies } from "../../infra/policies";
import { assertBelowThreshold } from "../checks/image-scan";
import { cidrOverlaps } from "../environment";
import type { Engine, OperationResult, Outputs, ProgramCallOptions, ResourceStep } from "../engine/port";
import { EngineUnavailableError, GateError, OperationFailedError, toDeployerError } from "../errors";
import type { Evaluation } from "../program/evaluate";
import { stackConfig } from "../program/stack-config";
import { ELIDED_EVENT_TYPE, JOB_STATUSES, type Job } from "../store";
import { phase, type OperationContext } from "./context";
import { assertGatesPass } from "./gates";
import { policyContext, programConfig } from "../program/stack-config";

export interface DeployParams {
  readonly version: string;
  /** Pin the image by digest instead of building (rollback does this). */
  readonly imageDigest?: string;
  readonly target?: readonly string[];
  readonly allowDestroy?: readonly string[];
  /** Called after the gates pass and before anything changes; throws to stop (approvals). */
  readonly beforeApply?: (preview: OperationResult, plan: PlanInputs) => Promise<void>;
  /** Whether a failed verification may trigger an automatic rollback (false for rollbacks themselves). */
  readonly allowAutoRollback?: boolean;
}

export interface DeployOutcome {
  readonly job: Job;
  readonly outputs: Outputs;
  readonly imageDigest?: string;
  /** The automatic rollback's job, when verification failed and one ran. */
  readonly rollback?: Job;
}

const IMAGE_TYPE = "docker:index/image:Image";
const REPOSITORY_TYPE = "aws:ecr/repository:Repository";

/** The digest part of `repo@sha256:…`. */
export function digestOf(imageRef: unknown): string | undefined {
  return typeof imageRef === "string" ? /@(sha256:[a-f0-9]{64})$/.exec(imageRef)?.[1] : undefined;
}

/**
 * The engine's preview and the policy gate's evaluation of the program (under mocks). On the pulumi
 * engine they are independent and run side by side, taking the evaluation off the deployment's path.
 * The offline engine's preview evaluates the program itself, through the same memo, and must come
 * first: it is the evaluation whose diagnostics (the program's own output) reach the job's log.
 */
export async function previewAndEvaluate<P>(engine: Engine, preview: () => Promise<P>, evaluate: () => Promise<Evaluation>): Promise<[P, Evaluation]> {
  if (engine.kind === "pulumi") return Promise.all([preview(), evaluate()]);
  const result = await preview();
  return [result, await evaluate()];
}

export async function ensureEngineReady(ctx: OperationContext) {
  const engine = ctx.deps.engineFor(ctx.env);
  phase(ctx, "preflight", `checking the ${engine.kind} engine`);
  const availability = await engine.available();
  if (!availability.ok) throw new EngineUnavailableError(availability.reason ?? `the ${engine.kind} engine is not available`);
  await ctx.deps.preflight(ctx.env, engine);
  return engine;
}

/**
 * The stack's current deployment (its newest successful up or rollback), which the image checks
 * compare with; undefined when the program builds no image (they need none then). Read once per
 * operation: under the stack's lease nothing else finishes a deployment of it.
 */
export async function currentDeployment(ctx: OperationContext): Promise<Job | undefined> {
  if (ctx.env.settings.app.build === undefined) return undefined;
  return (await ctx.deps.store.deployments(ctx.env.name, { limit: 1 }))[0];
}

/**
 * The digest a version already resolved to, when the program builds images: ECR tags are immutable,
 * so a version that was built and deployed before runs that same image again instead of a rebuild
 * (which ECR would refuse, or worse, which could differ).
 */
export async function builtDigest(ctx: OperationContext, version: string, current: Job | undefined): Promise<{ digest: string; job: string } | undefined> {
  if (ctx.env.settings.app.build === undefined) return undefined;
  // Running the version the stack's own build produced: the program is unchanged, nothing to pin.
  if (current?.version === version && current.config?.[CONFIG_KEYS.imageDigest] === undefined) return undefined;
  const earlier = (await ctx.deps.store.deployments(ctx.env.name, { version, limit: 200 })).find((d) => d.imageDigest !== undefined);
  return earlier ? { digest: earlier.imageDigest!, job: earlier.id } : undefined;
}

/**
 * ECR refuses any push to an existing immutable tag, even of an identical image. A version that an
 * unsuccessful job pushed (or may have pushed: it reached the push without recording a digest) can
 * therefore never be built again, and its image never passed the whole procedure: refuse it before
 * anything runs, naming the way out.
 */
export async function assertVersionNotPushedByFailedJob(ctx: OperationContext, version: string): Promise<void> {
  if (ctx.env.settings.app.build === undefined) return;
  const attempts: Job[] = [];
  const unsuccessful = JOB_STATUSES.filter((st) => st !== "succeeded");
  for (const j of await ctx.deps.store.listJobs({ stack: ctx.env.name, operation: ["up", "rollback"], version, status: unsuccessful, limit: 500 })) {
    if (j.id !== ctx.job.id && (j.imageDigest !== undefined || (await reachedImagePush(ctx, j)))) attempts.push(j);
  }
  const pushed = attempts.find((j) => j.imageDigest !== undefined) ?? attempts[0];
  if (pushed === undefined || (await ctx.deps.store.deployments(ctx.env.name, { version, limit: 200 })).some((d) => d.imageDigest !== undefined)) return;
  const what = pushed.imageDigest !== undefined ? `pushed ${pushed.imageDigest}` : "may have pushed its image before it stopped";
  throw new GateError(
    `version ${version} cannot be deployed again: job ${pushed.id} (${pushed.status}) ${what} under the tag ${version}, and ECR tags are immutable, so it can be neither rebuilt nor trusted unscanned; deploy a new version`,
    { details: { version, job: pushed.id } },
  );
}

/** Whether a job without a recorded digest got as far as the image push (or its early events are gone: assume it did). */
async function reachedImagePush(ctx: OperationContext, job: Job): Promise<boolean> {
  if (!(job.steps ?? []).some((st) => st.type === IMAGE_TYPE && st.op !== "same")) return false;
  return (await ctx.deps.store.listEvents(job.id)).some((e) => e.type === ELIDED_EVENT_TYPE || (e.type === "phase" && (e.data as { phase?: unknown } | null)?.phase === "image"));
}

/**
 * The stack runs `version` from its own build, and the preview would build and push it again (the
 * build context changed): ECR would refuse the push of the existing tag. Refuse before anything changes.
 */
export async function assertNoRebuildOfDeployedVersion(ctx: OperationContext, version: string, steps: readonly ResourceStep[], current: Job | undefined): Promise<void> {
  if (ctx.env.settings.app.build === undefined) return;
  if (current?.version !== version || current.imageDigest === undefined) return;
  if (!steps.some((st) => st.type === IMAGE_TYPE && st.op !== "same" && st.op !== "delete")) return;
  throw new GateError(
    `version ${version} is already in ECR (${current.imageDigest}, job ${current.id}) and its build changed; ECR tags are immutable, so the new build cannot be pushed under ${version}: deploy it as a new version`,
    { details: { version, job: current.id, imageDigest: current.imageDigest } },
  );
}

/** What a plan ran with, beside its preview: the stack config written for it and the digest it pinned. */
export interface PlanInputs {
  readonly config?: Readonly<Record<string, string>>;
  readonly imageDigest?: string;
}

export async function deploy(ctx: OperationContext, requested: DeployParams): Promise<DeployOutcome> {
  const { env, deps } = ctx;
  const engine = await ensureEngineReady(ctx);
  let params = requested;
  if (params.imageDigest === undefined) await assertVersionNotPushedByFailedJob(ctx, params.version);
  const current = params.imageDigest === undefined ? await currentDeployment(ctx) : undefined;
  const built = params.imageDigest === undefined ? await builtDigest(ctx, params.version, current) : undefined;
  if (built) {
    ctx.emit({ type: "log", level: "info", message: `${params.version} was built before (${built.job}): running its image ${built.digest} again` });
    params = { ...params, imageDigest: built.digest };
  }
  const config = programConfig(env, params.version, params.imageDigest);
  const call = { config, onEvent: ctx.emit, signal: ctx.signal };

  phase(ctx, "preview", `previewing ${env.name} at version ${params.version}`);
  const [preview, evaluation] = await previewAndEvaluate(engine, () => engine.preview(env, { ...call, target: params.target }), () => deps.evaluate(config, ctx.signal, env.program));
  await retryWhileBusy(() => deps.store.updateJob(ctx.job.id, { changes: preview.changes, steps: [...preview.steps] }));
  if (params.imageDigest === undefined) await assertNoRebuildOfDeployedVersion(ctx, params.version, preview.steps, current);

  phase(ctx, "review", "running the review gates");
  assertGatesPass({ env, steps: preview.steps, changes: preview.changes, violations: checkPolicies(evaluation.resources, policyContext(env)), allowDestroy: params.allowDestroy, overlaps: cidrOverlaps(env) });
  await params.beforeApply?.(preview, { config: stackConfig(config), imageDigest: params.imageDigest });

  await pushAndScanImage(ctx, engine, call, preview.steps, params);

  phase(ctx, "up", `applying ${env.name} at version ${params.version}`);
  const up = await engine.up(env, { ...call, target: params.target });
  const imageDigest = params.imageDigest ?? digestOf(up.outputs.imageRef?.value);
  // The deployment's change summary is the reviewed preview's: the image push and the up apply it together.
  const job = await retryWhileBusy(() => deps.store.updateJob(ctx.job.id, { changes: preview.changes, steps: [...preview.steps], outputs: up.outputs, config: stackConfig(config), imageDigest }));

  phase(ctx, "verify", "verifying the deployment");
  const report = await deps.verifierFor(env).verify(env, up.outputs, {
    signal: ctx.signal,
    onProgress: (check) => ctx.emit({ type: "check", name: check.name, ok: check.ok, skipped: check.skipped, detail: check.detail }),
  });
  if (report.ok) return { job, outputs: up.outputs, imageDigest };

  const failed = report.checks.filter((c) => !c.ok && !c.skipped).map((c) => `${c.name}: ${c.detail}`);
  const failure = new OperationFailedError(`verification failed: ${failed.join("; ")}`, { details: { checks: report.checks } });
  if (!(params.allowAutoRollback ?? true) || !env.deploy.autoRollback) throw failure;

  const lastGood = await deps.store.lastGoodDeployment(env.name, { excludeJobId: ctx.job.id });
  if (!lastGood) {
    ctx.emit({ type: "log", level: "warning", message: "verification failed and there is no earlier good deployment to roll back to" });
    throw failure;
  }
  phase(ctx, "rollback", `verification failed; rolling back automatically to ${lastGood.version} (${lastGood.id})`);
  // Imported here: rollback.ts imports deploy.ts.
  const { runAutomaticRollback } = await import("./rollback");
  // The job as recorded now (its config and digest): the rollback compares it with the target to
  // choose the fast path, which the row this operation started with cannot tell.
  const rollback = await runAutomaticRollback({ ...ctx, job }, lastGood, failure.message).catch((err) => {
    throw new OperationFailedError(`${failure.message}; the automatic rollback failed too: ${toDeployerError(err).message}`, { cause: err });
  });
  await retryWhileBusy(() => deps.store.updateJob(ctx.job.id, { rolledBackBy: rollback.id }));
  throw new OperationFailedError(`${failure.message}; rolled back automatically to ${lastGood.version} (job ${rollback.id})`, { details: { checks: report.checks, rollbackJob: rollback.id } });
}

/**
 * When the program builds an image, push it alone first and hold the rest of the update until its
 * scan is known: an image over the threshold never reaches the ECS service.
 */
async function pushAndScanImage(ctx: OperationContext, engine: Engine, call: ProgramCallOptions, steps: readonly ResourceStep[], params: DeployParams): Promise<void> {
  const { env, deps } = ctx;
  const imageSteps = steps.filter((s) => s.type === IMAGE_TYPE && s.op !== "same");
  let imageRef: string | undefined;
  if (imageSteps.length > 0) {
    const target = steps.filter((s) => (s.type === IMAGE_TYPE || s.type === REPOSITORY_TYPE) && s.op !== "same" && s.op !== "delete").map((s) => s.urn);
    phase(ctx, "image", `building and pushing the image for ${params.version}`);
    const pushed = await engine.up(env, { ...call, target });
    // The pushed image's digest, from the image resource itself: a targeted update need not
    // refresh the stack's outputs.
    const image = imageSteps.map((s) => pushed.resourceOutputs[s.urn]).find((o) => o !== undefined);
    const ref = image?.repoDigest ?? pushed.outputs.imageRef?.value;
    imageRef = typeof ref === "string" ? ref : undefined;
    if (!imageRef) throw new OperationFailedError("the image was pushed but the program reported no imageRef output to scan");
    // Recorded at once: whatever happens next (a scan finding, a failed up, a crash), the tag is
    // taken in ECR, and the next deployment of this version must know it.
    const pushedDigest = digestOf(imageRef);
    if (pushedDigest !== undefined) await retryWhileBusy(() => deps.store.updateJob(ctx.job.id, { imageDigest: pushedDigest }));
  } else if (params.imageDigest === undefined && env.settings.app.image !== undefined) {
    imageRef = `${env.settings.app.image}:${params.version}`;
  }
  if (imageRef === undefined) {
    if (params.imageDigest !== undefined) ctx.emit({ type: "log", level: "info", message: `image pinned to ${params.imageDigest}; it was scanned when first deployed` });
    return;
  }
  phase(ctx, "scan", `waiting for the scan of ${imageRef}`);
  const report = await deps.scannerFor(env).findings({ imageRef, stack: env.name, version: params.version }, { signal: ctx.signal });
  if (report.status === "unsupported") {
    await judgeUnscannedImage(ctx, imageRef, report.reason ?? "unsupported");
    return;
  }
  assertBelowThreshold(report, env.deploy.maxScanSeverity);
  ctx.emit({ type: "check", name: "image-scan", ok: true, detail: `${report.findings.length} findings, none at or above ${env.deploy.maxScanSeverity}` });
}

/**
 * An image with no scan result (the scan failed, timed out, or the image is not in ECR). Production
 * fails closed: the deployment stops with a gate error, unless the environment opts out explicitly
 * (`deploy.allowUnscannedImages`, which production accepts only with a reason). Either way the job's
 * events, its error and the audit trail say which happened; approvers see the opt-out on the job.
 */
async function judgeUnscannedImage(ctx: OperationContext, imageRef: string, why: string): Promise<void> {
  const { env, deps, job } = ctx;
  const rules = env.deploy;
  const audit = (result: "allowed" | "denied", details: Record<string, unknown>) =>
    retryWhileBusy(() => deps.store.appendAudit({ actor: job.requestedBy, action: "image-scan unavailable", stack: env.name, jobId: job.id, result, details: { imageRef, scan: why, ...details } }));
  if (rules.allowUnscannedImages) {
    const reason = rules.allowUnscannedImagesReason ?? "(no reason given)";
    const detail = `not scanned (${why}); deployed anyway because ${env.file} sets deploy.allowUnscannedImages: ${reason}`;
    ctx.emit({ type: "log", level: "warning", message: `image scan unavailable for ${imageRef}: ${detail}` });
    ctx.emit({ type: "check", name: "image-scan", ok: true, skipped: true, detail });
    await audit("allowed", { allowUnscannedImages: true, reason });
    return;
  }
  if (env.settings.production) {
    await audit("denied", { allowUnscannedImages: false });
    ctx.emit({ type: "check", name: "image-scan", ok: false, detail: `not scanned: ${why}` });
    throw new GateError(
      `image scan unavailable for ${imageRef}: ${why}; ${env.name} is a production environment, which deploys only scanned images ` +
        `(to deploy unscanned images anyway, set deploy.allowUnscannedImages: true and deploy.allowUnscannedImagesReason in ${env.file})`,
      { details: { gate: "image-scan", imageRef, reason: why } },
    );
  }
  ctx.emit({ type: "log", level: "warning", message: `image scan unavailable for ${imageRef}: ${why}; deployed anyway (not a production environment)` });
  ctx.emit({ type: "check", name: "image-scan", ok: true, skipped: true, detail: `not scanned (${why}); allowed outside production` });
}
