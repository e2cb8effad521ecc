/**
 * The bench's own engine (a trimmed copy of test/automation/support/test-engine.ts, so the bench does
 * not depend on test/): every call but `up` ends on the next turn of the event loop; `up` either does
 * the same (`noop`), waits until released (`hold`), or waits until `emit()` is called and then emits
 * that many events at a fixed interval before ending (`emit`). It runs in-process and holds no process.
 * It counts calls running at once, globally and per stack.
 */
import type { ImageScanner } from "../../automation/checks/image-scan";
import type { Verifier } from "../../automation/checks/verify";
import {
  emptyChanges,
  type Availability,
  type DriftResult,
  type Engine,
  type EngineCallOptions,
  type EngineEvent,
  type OperationResult,
  type Outputs,
  type ProgramCallOptions,
  type StateCallOptions,
  type UpResult,
} from "../../automation/engine/port";
import type { Environment } from "../../automation/environment";
import { CanceledError } from "../../automation/errors";
import type { OperationDeps } from "../../automation/operations/context";
import type { Store } from "../../automation/store";

export type UpMode = "noop" | "hold" | "emit";

/** The marker in emitted diagnostics: `bench <index> <emit time, ms since the epoch>`. */
export const EMIT_PREFIX = "bench ";

/** Milliseconds since the epoch with sub-millisecond resolution (comparable across processes on one machine). */
export function nowEpochMs(): number {
  return performance.timeOrigin + performance.now();
}

interface Waiting {
  readonly stack: string;
  readonly emit: (event: EngineEvent) => void;
  readonly finish: (err?: Error) => void;
}

export class BenchEngine implements Engine {
  readonly kind = "offline" as const;
  upMode: UpMode;
  active = 0;
  maxActive = 0;
  maxActivePerStack = 0;
  calls = 0;
  private readonly activeByStack = new Map<string, number>();
  private readonly waiting = new Set<Waiting>();
  private readonly waiters: { n: number; resolve: () => void }[] = [];

  constructor(upMode: UpMode = "noop") {
    this.upMode = upMode;
  }

  /** Resets the counters (between runs). */
  resetStats(): void {
    this.maxActive = this.active;
    this.maxActivePerStack = Math.max(0, ...this.activeByStack.values());
    this.calls = 0;
  }

  /** Calls of `up` waiting (hold / emit). */
  get held(): number {
    return this.waiting.size;
  }

  /** Resolves once at least `n` calls of `up` are waiting. */
  whenHeld(n: number): Promise<void> {
    if (this.waiting.size >= n) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push({ n, resolve }));
  }

  /** Ends every waiting `up` successfully. */
  releaseAll(): number {
    const all = [...this.waiting];
    for (const w of all) w.finish();
    return all.length;
  }

  /**
   * For every waiting `up` (emit mode): emits `count` diagnostics, one every `intervalMs` (scheduled
   * against a fixed timeline, so a late tick does not shift the rest), then ends it. Resolves when done.
   */
  async emit(count: number, intervalMs: number): Promise<{ emitted: number; ms: number }> {
    const targets = [...this.waiting];
    if (targets.length === 0) throw new Error("no engine call is waiting to emit");
    const start = performance.now();
    for (let i = 0; i < count; i++) {
      const due = start + i * intervalMs;
      const wait = due - performance.now();
      if (wait > 1) await new Promise((r) => setTimeout(r, wait));
      for (const t of targets) t.emit({ type: "diagnostic", diagnostic: { severity: "info", message: `${EMIT_PREFIX}${i} ${nowEpochMs().toFixed(3)}` } });
    }
    const ms = performance.now() - start;
    for (const t of targets) t.finish();
    return { emitted: count, ms };
  }

  async available(): Promise<Availability> {
    return { ok: true };
  }
  preview(env: Environment, options: ProgramCallOptions): Promise<OperationResult> {
    return this.call(env, options, "noop", () => ({}));
  }
  up(env: Environment, options: ProgramCallOptions): Promise<UpResult> {
    return this.call(env, options, this.upMode, () => ({ outputs: {} as Outputs, resourceOutputs: {} }));
  }
  refresh(env: Environment, options: StateCallOptions): Promise<OperationResult> {
    return this.call(env, options, "noop", () => ({}));
  }
  drift(env: Environment, options: StateCallOptions): Promise<DriftResult> {
    return this.call(env, options, "noop", () => ({ drifted: [] }));
  }
  destroy(env: Environment, options: StateCallOptions): Promise<OperationResult> {
    return this.call(env, options, "noop", () => ({}));
  }
  async outputs(): Promise<Outputs> {
    return {};
  }
  async history() {
    return [];
  }
  async cancel(): Promise<void> {}
  async kill(env: Environment): Promise<void> {
    for (const w of [...this.waiting]) if (w.stack === env.name) w.finish(new CanceledError("bench engine: killed"));
  }

  private call<T extends object>(env: Environment, options: EngineCallOptions, mode: UpMode, extra: () => T): Promise<OperationResult & T> {
    const started = performance.now();
    const emit = (event: EngineEvent) => {
      try {
        options.onEvent?.(event);
      } catch {
        // a listener's failure is not the engine's
      }
    };
    this.calls++;
    this.active++;
    this.maxActive = Math.max(this.maxActive, this.active);
    const onStack = (this.activeByStack.get(env.name) ?? 0) + 1;
    this.activeByStack.set(env.name, onStack);
    this.maxActivePerStack = Math.max(this.maxActivePerStack, onStack);
    emit({ type: "started", operation: "bench", engine: this.kind, stack: env.name });
    return new Promise<OperationResult & T>((resolve, reject) => {
      let done = false;
      const finish = (err?: Error) => {
        if (done) return;
        done = true;
        this.waiting.delete(waiting);
        options.signal?.removeEventListener("abort", onAbort);
        this.active--;
        this.activeByStack.set(env.name, (this.activeByStack.get(env.name) ?? 1) - 1);
        if (err) {
          emit({ type: "summary", changes: emptyChanges(), result: "canceled" });
          reject(err);
          return;
        }
        emit({ type: "summary", changes: emptyChanges(), result: "succeeded" });
        resolve({ engine: this.kind, changes: emptyChanges(), steps: [], diagnostics: [], durationMs: performance.now() - started, ...extra() });
      };
      const onAbort = () => finish(new CanceledError("bench engine: canceled"));
      const waiting: Waiting = { stack: env.name, emit, finish };
      if (options.signal?.aborted) return onAbort();
      options.signal?.addEventListener("abort", onAbort, { once: true });
      if (mode === "noop") {
        setImmediate(() => finish());
        return;
      }
      this.waiting.add(waiting);
      for (const w of [...this.waiters]) {
        if (this.waiting.size >= w.n) {
          this.waiters.splice(this.waiters.indexOf(w), 1);
          w.resolve();
        }
      }
    });
  }
}

const passingScanner: ImageScanner = { findings: async () => ({ status: "complete", findings: [] }) };
const passingVerifier: Verifier = { verify: async () => ({ ok: true, checks: [{ name: "bench", ok: true, detail: "bench verifier: ok" }] }) };

/** The operations' collaborators around `engine` for every environment: passing scan and verification, no preflight, an empty program. */
export function benchDeps(store: Store, engine: Engine): OperationDeps {
  return {
    store,
    engineFor: () => engine,
    scannerFor: () => passingScanner,
    verifierFor: () => passingVerifier,
    preflight: async () => undefined,
    evaluate: async (config) => ({ stack: config.settings.environment, resources: [], outputs: {} }),
  };
}
