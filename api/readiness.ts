/**
 * Readiness: the store answers, the engines the environments use can run here, and the service is not
 * shutting down. Engine checks (`available()`, which may spawn `pulumi version`) are cached for a few
 * seconds so a probe every second costs nothing.
 *
 * An engine that cannot run makes the service not ready only when no environment could run at all:
 * a machine without a `pulumi` CLI still serves its offline stacks (their jobs run), while operations
 * on the pulumi stacks answer 503 `engine_unavailable` with the engine's reason. Likewise an
 * environment file that does not load makes only its own stack unusable: readiness names it (the
 * reason is on GET /v1/stacks, for those who may read the stack) and stays true while any stack can run.
 */
import type { Availability, Engine, EngineKind } from "../automation/engine/port";
import type { OperationDeps } from "../automation/operations/context";
import type { Store } from "../automation/store";
import type { QueueStatus } from "../automation/jobs/types";
import type { Environments } from "./environments";

export interface ReadinessReport {
  readonly ready: boolean;
  readonly shuttingDown: boolean;
  readonly store: Availability;
  readonly engines: Readonly<Record<string, Availability>>;
  /** Stacks whose environment file does not load (names only: this answer is public). */
  readonly invalidStacks: readonly string[];
  /** Valid stacks whose engine can run here. */
  readonly runnableStacks: number;
  readonly queue: QueueStatus;
}

export interface ReadinessOptions {
  readonly store: Store;
  readonly deps: OperationDeps;
  readonly environments: Environments;
  readonly queueStatus: () => Promise<QueueStatus>;
  readonly shuttingDown: () => boolean;
  /** How long an engine's availability is reused. Default 5000 ms. */
  readonly cacheMs?: number;
}

export class Readiness {
  private readonly cache = new Map<Engine, { at: number; result: Promise<Availability> }>();
  private readonly cacheMs: number;

  constructor(private readonly options: ReadinessOptions) {
    this.cacheMs = options.cacheMs ?? 5000;
  }

  /** The engine's availability, cached; a throwing check counts as unavailable. */
  engine(engine: Engine): Promise<Availability> {
    const now = Date.now();
    const hit = this.cache.get(engine);
    if (hit && now - hit.at < this.cacheMs) return hit.result;
    const result = engine.available().catch((err: unknown) => ({ ok: false, reason: err instanceof Error ? err.message : String(err) }));
    this.cache.set(engine, { at: now, result });
    return result;
  }

  async check(): Promise<ReadinessReport> {
    const { store, deps, environments } = this.options;
    let storeOk: Availability;
    try {
      await store.ping();
      storeOk = { ok: true };
    } catch {
      storeOk = { ok: false, reason: "the store does not answer" };
    }
    const byKind = new Map<EngineKind, Engine>();
    const stacksByKind = new Map<EngineKind, number>();
    const invalidStacks: string[] = [];
    for (const name of environments.list()) {
      try {
        const env = environments.load(name);
        if (!byKind.has(env.engine)) byKind.set(env.engine, deps.engineFor(env));
        stacksByKind.set(env.engine, (stacksByKind.get(env.engine) ?? 0) + 1);
      } catch {
        invalidStacks.push(name); // why: GET /v1/stacks, for those who may read the stack
      }
    }
    const engines: Record<string, Availability> = {};
    await Promise.all([...byKind].map(async ([kind, engine]) => (engines[kind] = await this.engine(engine))));
    const shuttingDown = this.options.shuttingDown();
    const queue = await this.options.queueStatus();
    let runnableStacks = 0;
    for (const [kind, count] of stacksByKind) if (engines[kind]?.ok) runnableStacks += count;
    return {
      ready: storeOk.ok && runnableStacks > 0 && !shuttingDown && queue.accepting,
      shuttingDown,
      store: storeOk,
      engines,
      invalidStacks,
      runnableStacks,
      queue,
    };
  }
}
