/**
 * A short-lived memo of program evaluations. One deployment evaluates the same program with the same
 * config several times (the engine's preview, the policy gate, the image push, the up); the program is
 * deterministic for a given config, so the first evaluation serves the rest. Failures are not kept.
 * A served result does not replay the program's diagnostics: they were reported the first time.
 */
import type { ProgramConfig } from "../../infra/config";
import type { Evaluation } from "./evaluate";

export interface EvaluatorOptions {
  readonly signal?: AbortSignal;
  readonly programPath?: string;
}

export type Evaluator<O extends EvaluatorOptions = EvaluatorOptions> = (config: ProgramConfig, options?: O) => Promise<Evaluation>;

export function cachedEvaluator<O extends EvaluatorOptions>(evaluate: Evaluator<O>, limits: { ttlMs?: number; max?: number } = {}): Evaluator<O> {
  const ttlMs = limits.ttlMs ?? 120_000;
  const max = limits.max ?? 8;
  const entries = new Map<string, { at: number; result: Promise<Evaluation> }>();
  return (config, options) => {
    const key = JSON.stringify([options?.programPath ?? null, config.settings, config.version, config.imageDigest ?? null]);
    const now = Date.now();
    for (const [k, e] of entries) if (now - e.at > ttlMs) entries.delete(k);
    const hit = entries.get(key);
    if (hit) return withSignal(hit.result, options?.signal);
    const result = evaluate(config, options);
    entries.set(key, { at: now, result });
    result.catch(() => entries.delete(key));
    while (entries.size > max) entries.delete(entries.keys().next().value as string);
    return result;
  };
}

/** The shared result, or this caller's own abort, whichever comes first. */
function withSignal(result: Promise<Evaluation>, signal: AbortSignal | undefined): Promise<Evaluation> {
  if (!signal) return result;
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    result.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}
