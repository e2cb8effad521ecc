/**
 * Readiness: the store answers, the engines the environments use can run here, and the service is not
 * shutting down. Engine checks (`available()`, which may spawn `pulumi version`) are cached for a few
 * seconds so a probe every second costs nothing.
 *
 * An engine that cannot run makes the service not ready only when no environment could run at all:
 * a machine without a `pulumi` CLI still serves its offline stacks (their jobs run), while operations
 * on the pulumi stacks answer 503 `engine_unavailable` with the engine's reason.
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
  readonly queue: QueueStatus;
}

export interface ReadinessOptions {
  readonly store: Store;
  readonly deps: OperationDeps;
  readonly environments: Environments;
  readonly queueStatus: () => QueueStatus;
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
      store.ping();
      storeOk = { ok: true };
    } catch {
      storeOk = { ok: false, reason: "the store does not answer" };
    }
    const byKind = new Map<EngineKind, Engine>();
    for (const name of environments.list()) {
      try {
        const env = environments.load(name);
        if (!byKind.has(env.engine)) byKind.set(env.engine, deps.engineFor(env));
      } catch {
        // An environment file that does not load is reported on GET /v1/stacks, not here.
      }
    }
    const engines: Record<string, Availability> = {};
    await Promise.all([...byKind].map(async ([kind, engine]) => (engines[kind] = await this.engine(engine))));
    const shuttingDown = this.options.shuttingDown();
    const queue = this.options.queueStatus();
    const anyEngine = byKind.size === 0 || Object.values(engines).some((e) => e.ok);
    return { ready: storeOk.ok && anyEngine && !shuttingDown && queue.accepting, shuttingDown, store: storeOk, engines, queue };
  }
}
