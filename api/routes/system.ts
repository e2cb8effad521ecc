/** Liveness, readiness and metrics: public, cheap, and never touching an engine beyond its cached availability. */
import { EngineUnavailableError } from "../../automation/errors";
import type { HandlerInput, Reply } from "./route";

type Input = HandlerInput<unknown, unknown, unknown>;

export function healthz(): Reply {
  return { body: { status: "ok" }, headers: { "Cache-Control": "no-store" } };
}

export async function readyz({ ctx }: Input): Promise<Reply> {
  const report = await ctx.readiness.check();
  if (!report.ready) {
    const why = report.shuttingDown
      ? "the service is shutting down"
      : !report.store.ok
        ? "the store does not answer"
        : Object.values(report.engines).some((e) => e.ok) || Object.keys(report.engines).length === 0
          ? report.invalidStacks.length > 0
            ? `no stack can run: the environment files of ${report.invalidStacks.join(", ")} do not load`
            : "no stack can run: there are no environment files"
          : "no engine can run here";
    throw new EngineUnavailableError(`not ready: ${why}`, { details: { ...report, retryAfterSeconds: ctx.lifecycle.retryAfterSeconds } });
  }
  return { body: report, headers: { "Cache-Control": "no-store" } };
}

export async function metrics({ ctx }: Input): Promise<Reply> {
  const { contentType, body } = await ctx.metrics.render();
  return { body, headers: { "Content-Type": contentType, "Cache-Control": "no-store" } };
}
