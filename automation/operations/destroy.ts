/**
 * destroy: removes the stack's resources. Protected types (deploy.protect) are refused unless each
 * URN is named with --allow-destroy; the caller confirms (the CLI's --yes and, in production,
 * --confirm <stack>; the service's {confirm: "<stack>"}).
 */
import type { OperationResult } from "../engine/port";
import { GateError } from "../errors";
import { phase, type OperationContext } from "./context";
import { ensureEngineReady } from "./deploy";
import { recordedSettings } from "./rollback";
import { programConfig } from "../program/stack-config";

export interface DestroyParams {
  readonly allowDestroy?: readonly string[];
}

export async function destroy(ctx: OperationContext, params: DestroyParams): Promise<OperationResult> {
  const { env, deps } = ctx;
  const engine = await ensureEngineReady(ctx);
  const last = deps.store.lastGoodDeployment(env.name);
  if (last?.version !== undefined && env.deploy.protect.length > 0) {
    // What the last deployment created is what the state holds; find the protected resources in it.
    const evaluation = await deps.evaluate(programConfig({ ...env, settings: recordedSettings(last) }, last.version, last.imageDigest), ctx.signal);
    const allowed = new Set(params.allowDestroy ?? []);
    const blocked = evaluation.resources.filter((r) => env.deploy.protect.includes(r.type) && !allowed.has(r.urn));
    if (blocked.length > 0) {
      throw new GateError(
        `destroy would delete protected resources of ${env.name}:\n${blocked.map((r) => `  - ${r.urn}`).join("\n")}\nname each URN with --allow-destroy to proceed`,
        { details: { protected: blocked.map((r) => r.urn) } },
      );
    }
  }
  phase(ctx, "destroy", `destroying ${env.name}`);
  const result = await engine.destroy(env, { onEvent: ctx.emit, signal: ctx.signal });
  deps.store.updateJob(ctx.job.id, { changes: result.changes, steps: [...result.steps] });
  return result;
}
