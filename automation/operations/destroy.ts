/**
 * destroy: removes the stack's resources. Protected types (deploy.protect) are refused unless each
 * URN is named with --allow-destroy; the caller confirms (the CLI's --yes and, in production,
 * --confirm <stack>; the service's {confirm: "<stack>"}).
 *
 * The engines have no destroy preview, so what a destroy would delete is read from the last good
 * deployment: its recorded config evaluated under mocks. That list is what the protection check
 * looks at and what `beforeApply` (approvals) is shown.
 */
import { retryWhileBusy } from "../store/busy";
import type { OperationResult, ResourceStep } from "../engine/port";
import { summarize } from "../engine/port";
import { GateError } from "../errors";
import { phase, type OperationContext } from "./context";
import { ensureEngineReady, type PlanInputs } from "./deploy";
import { recordedSettings } from "./rollback";
import { programConfig } from "../program/stack-config";

export interface DestroyParams {
  readonly allowDestroy?: readonly string[];
  /**
   * Called with what the destroy would delete (one `delete` step per resource of the last good
   * deployment), after the protection check and before anything changes; throws to stop (approvals).
   */
  readonly beforeApply?: (plan: OperationResult, inputs: PlanInputs) => Promise<void>;
}

export async function destroy(ctx: OperationContext, params: DestroyParams): Promise<OperationResult> {
  const { env, deps } = ctx;
  const engine = await ensureEngineReady(ctx);
  const last = await deps.store.lastGoodDeployment(env.name);
  const wantPlan = params.beforeApply !== undefined || env.deploy.protect.length > 0;
  let planned: ResourceStep[] = [];
  if (wantPlan && last?.version !== undefined) {
    // What the last deployment created is what the state holds.
    const evaluation = await deps.evaluate(programConfig({ ...env, settings: recordedSettings(last) }, last.version, last.imageDigest), ctx.signal, env.program);
    planned = evaluation.resources.map((r) => ({ urn: r.urn, type: r.type, op: "delete" as const, changedProperties: [] }));
  }
  if (env.deploy.protect.length > 0) {
    const allowed = new Set(params.allowDestroy ?? []);
    const blocked = planned.filter((r) => env.deploy.protect.includes(r.type) && !allowed.has(r.urn));
    if (blocked.length > 0) {
      throw new GateError(
        `destroy would delete protected resources of ${env.name}:\n${blocked.map((r) => `  - ${r.urn}`).join("\n")}\nname each URN with --allow-destroy to proceed`,
        { details: { protected: blocked.map((r) => r.urn) } },
      );
    }
  }
  if (params.beforeApply) {
    const plan: OperationResult = { engine: engine.kind, changes: summarize(planned), steps: planned, diagnostics: [], durationMs: 0 };
    await retryWhileBusy(() => deps.store.updateJob(ctx.job.id, { changes: plan.changes, steps: planned }));
    await params.beforeApply(plan, {});
  }
  phase(ctx, "destroy", `destroying ${env.name}`);
  const result = await engine.destroy(env, { onEvent: ctx.emit, signal: ctx.signal });
  await retryWhileBusy(() => deps.store.updateJob(ctx.job.id, { changes: result.changes, steps: [...result.steps] }));
  return result;
}
