/** refresh: brings the engine's state in line with what exists; the change count says what moved. */
import { retryWhileBusy } from "../store/busy";
import type { OperationResult } from "../engine/port";
import { phase, type OperationContext } from "./context";
import { ensureEngineReady } from "./deploy";

export async function refresh(ctx: OperationContext): Promise<OperationResult> {
  const engine = await ensureEngineReady(ctx);
  phase(ctx, "refresh", `refreshing ${ctx.env.name} from what exists`);
  const result = await engine.refresh(ctx.env, { onEvent: ctx.emit, signal: ctx.signal });
  await retryWhileBusy(() => ctx.deps.store.updateJob(ctx.job.id, { changes: result.changes, steps: [...result.steps] }));
  await retryWhileBusy(() => ctx.deps.store.setStackState(ctx.env.name, { drifted: false, lastDriftAt: new Date().toISOString() }));
  return result;
}
