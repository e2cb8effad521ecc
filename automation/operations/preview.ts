/**
 * preview: what an up would change, per resource and property, plus the review gates' verdict, so
 * a reviewer sees the same findings a deployment would stop on.
 */
import { retryWhileBusy } from "../store/busy";
import { checkPolicies } from "../../infra/policies";
import type { OperationResult } from "../engine/port";
import { cidrOverlaps } from "../environment";
import { phase, type OperationContext } from "./context";
import { builtDigest, currentDeployment, previewAndEvaluate } from "./deploy";
import { reviewFindings, type GateFinding } from "./gates";
import { policyContext, programConfig } from "../program/stack-config";

export interface PreviewParams {
  readonly version: string;
  readonly imageDigest?: string;
  readonly target?: readonly string[];
  readonly allowDestroy?: readonly string[];
}

export interface PreviewReport extends OperationResult {
  readonly findings: readonly GateFinding[];
}

export async function preview(ctx: OperationContext, params: PreviewParams): Promise<PreviewReport> {
  const engine = ctx.deps.engineFor(ctx.env);
  const config = programConfig(ctx.env, params.version, params.imageDigest ?? (await builtDigest(ctx, params.version, await currentDeployment(ctx)))?.digest);
  phase(ctx, "preview", `previewing ${ctx.env.name} at version ${params.version} on the ${engine.kind} engine`);
  const [result, evaluation] = await previewAndEvaluate(
    engine,
    () => engine.preview(ctx.env, { config, target: params.target, onEvent: ctx.emit, signal: ctx.signal }),
    () => ctx.deps.evaluate(config, ctx.signal, ctx.env.program),
  );
  const violations = checkPolicies(evaluation.resources, policyContext(ctx.env));
  const findings = reviewFindings({ env: ctx.env, steps: result.steps, changes: result.changes, violations, allowDestroy: params.allowDestroy, overlaps: cidrOverlaps(ctx.env) });
  await retryWhileBusy(() => ctx.deps.store.updateJob(ctx.job.id, { changes: result.changes, steps: [...result.steps] }));
  return { ...result, findings };
}
