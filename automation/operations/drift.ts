/**
 * drift: refresh in preview mode. Reports each drifted resource with the kind of change and the
 * properties that differ; never changes state.
 */
import { retryWhileBusy } from "../store/busy";
import type { DriftResult } from "../engine/port";
import { phase, type OperationContext } from "./context";
import { ensureEngineReady } from "./deploy";

export async function drift(ctx: OperationContext): Promise<DriftResult> {
  const engine = await ensureEngineReady(ctx);
  phase(ctx, "drift", `comparing ${ctx.env.name}'s state with what exists`);
  const result = await engine.drift(ctx.env, { onEvent: ctx.emit, signal: ctx.signal });
  await retryWhileBusy(() => ctx.deps.store.updateJob(ctx.job.id, { changes: result.changes, drift: [...result.drifted] }));
  await retryWhileBusy(() => ctx.deps.store.setStackState(ctx.env.name, { drifted: result.drifted.length > 0, lastDriftAt: new Date().toISOString() }));
  return result;
}
