/**
 * A test engine whose speed and failures the test controls, the `OperationDeps` around it, and
 * environment files to run it on. Shared by the queue tests and the API tests.
 *
 *   const engine = new TestEngine();                  // every call ends after `delayMs` (default 0)
 *   const deps = testDeps(store, engine);              // scanner, verifier pass; preflight no-op
 *   const envDir = testEnvDir(["s1", "s2"]);           // copies of environments/local.yaml
 *
 * Holding calls: `engine.hold()` makes every call that starts afterwards wait until it is released
 * (`call.release()`, `call.fail(err)`, or `engine.releaseAll()` / `engine.unhold()`); `await
 * engine.nextCall({ stack, op })` resolves with the next call that starts (or one that started and was
 * not handed out yet), so a test knows a job reached its engine without sleeping.
 *
 * Every call honours its AbortSignal (rejects with the signal's reason, as a CanceledError) unless
 * `ignoreAbort` is set, which plays an engine that does not stop on the graceful interrupt: only
 * `kill(env)`, a release or a failure ends such a call. `failNext({ op, stack, error })` makes the next
 * matching call fail. The engine counts concurrent calls globally and per stack (`maxActive`,
 * `maxActivePerStack`), and records every call in `calls`.
 *
 * Drift: `setDrift(stack, drifted)` is what the next drift calls of that stack report.
 */
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "fs";
import { tmpdir } from "os";
import * as path from "path";
import type { ImageScanner } from "../../../automation/checks/image-scan";
import type { Verifier } from "../../../automation/checks/verify";
import {
  emptyChanges,
  type Availability,
  type DriftResult,
  type DriftedResource,
  type Engine,
  type EngineCallOptions,
  type EngineEvent,
  type EngineHistoryEntry,
  type EngineKind,
  type OperationResult,
  type Outputs,
  type ProgramCallOptions,
  type ResourceStep,
  type StateCallOptions,
  type UpResult,
} from "../../../automation/engine/port";
import { DEFAULT_ENV_DIR, type Environment } from "../../../automation/environment";
import { CanceledError, DeployerError, OperationFailedError } from "../../../automation/errors";
import type { OperationDeps } from "../../../automation/operations/context";
import type { Store } from "../../../automation/store";

export type TestOp = "preview" | "up" | "refresh" | "drift" | "destroy";

export interface CallMatch {
  readonly op?: TestOp;
  readonly stack?: string;
}

/** One engine call, as the test sees it. */
export interface TestCall {
  readonly op: TestOp;
  readonly stack: string;
  readonly env: Environment;
  readonly signal?: AbortSignal;
  readonly startedAt: number;
  /** Set when the call ended. */
  outcome?: "succeeded" | "failed" | "canceled" | "killed";
  endedAt?: number;
  /** Ends a held (or running) call successfully now. */
  release(): void;
  /** Ends the call with this error now. */
  fail(error?: Error): void;
  /** Resolves when the call has ended, however it ended. */
  readonly ended: Promise<void>;
}

export interface TestEngineOptions {
  /** Which kind the engine reports (results say it too). Default `offline`. */
  readonly kind?: EngineKind;
  /** How long an unheld call takes. Default 0 (it ends on the next turn of the event loop). */
  readonly delayMs?: number;
  /** Step events each call emits between `started` and `summary`. Default 1. */
  readonly stepsPerCall?: number;
}

interface Pending extends TestCall {
  handedOut: boolean;
  settle(outcome: NonNullable<TestCall["outcome"]>, error?: Error): void;
}

export class TestEngine implements Engine {
  readonly kind: EngineKind;
  delayMs: number;
  stepsPerCall: number;
  /** Calls ignore their AbortSignal (an engine that does not stop on the graceful interrupt). */
  ignoreAbort = false;
  /** What `available()` answers. */
  availability: Availability = { ok: true };

  /** Every call, oldest first. */
  readonly calls: TestCall[] = [];
  /** Stacks `cancel(env)` / `kill(env)` were called for, in order. */
  readonly cancels: string[] = [];
  readonly kills: string[] = [];

  active = 0;
  maxActive = 0;
  readonly activeByStack = new Map<string, number>();
  /** The most calls seen at once on any one stack. */
  maxActivePerStack = 0;

  private held = false;
  private readonly waiting = new Set<Pending>();
  private readonly live = new Set<Pending>();
  private readonly failures: { match: CallMatch; error: Error }[] = [];
  private readonly drifted = new Map<string, DriftedResource[]>();
  private readonly watchers: { match: CallMatch; resolve: (call: TestCall) => void }[] = [];

  constructor(options: TestEngineOptions = {}) {
    this.kind = options.kind ?? "offline";
    this.delayMs = options.delayMs ?? 0;
    this.stepsPerCall = options.stepsPerCall ?? 1;
  }

  // Test controls --------------------------------------------------------------------------------

  /** Calls that start from now on wait until released. */
  hold(): void {
    this.held = true;
  }

  /** Stops holding and releases every waiting call. */
  unhold(): void {
    this.held = false;
    this.releaseAll();
  }

  /** Releases every call waiting now (later calls still wait while held). */
  releaseAll(): void {
    for (const call of [...this.waiting]) call.release();
  }

  /** The next matching call that starts, or the oldest matching one that started and was not handed out yet. */
  nextCall(match: CallMatch = {}): Promise<TestCall> {
    const ready = (this.calls as Pending[]).find((c) => !c.handedOut && matches(c, match));
    if (ready) {
      ready.handedOut = true;
      return Promise.resolve(ready);
    }
    return new Promise((resolve) => this.watchers.push({ match, resolve }));
  }

  /** The next matching call fails with `error` (default: an OperationFailedError). */
  failNext(match: CallMatch = {}, error: Error = new OperationFailedError("test engine: the operation failed")): void {
    this.failures.push({ match, error });
  }

  /** What drift calls on the stack report from now on. */
  setDrift(stack: string, drifted: DriftedResource[]): void {
    this.drifted.set(stack, drifted);
  }

  /** Calls running now (held or not). */
  runningCalls(): TestCall[] {
    return [...this.live];
  }

  // Engine ---------------------------------------------------------------------------------------

  async available(): Promise<Availability> {
    return this.availability;
  }

  preview(env: Environment, options: ProgramCallOptions): Promise<OperationResult> {
    return this.call("preview", env, options, () => ({}));
  }

  up(env: Environment, options: ProgramCallOptions): Promise<UpResult> {
    return this.call("up", env, options, () => ({ outputs: {} as Outputs, resourceOutputs: {} }));
  }

  refresh(env: Environment, options: StateCallOptions): Promise<OperationResult> {
    return this.call("refresh", env, options, () => ({}));
  }

  drift(env: Environment, options: StateCallOptions): Promise<DriftResult> {
    return this.call("drift", env, options, () => ({ drifted: [...(this.drifted.get(env.name) ?? [])] }));
  }

  destroy(env: Environment, options: StateCallOptions): Promise<OperationResult> {
    return this.call("destroy", env, options, () => ({}));
  }

  async outputs(_env: Environment, _options?: EngineCallOptions & { reveal?: boolean }): Promise<Outputs> {
    return {};
  }

  async history(_env: Environment, _options?: EngineCallOptions): Promise<EngineHistoryEntry[]> {
    return [];
  }

  /** The graceful interrupt: records it; the caller's AbortSignal is what stops a call (unless `ignoreAbort`). */
  async cancel(env: Environment): Promise<void> {
    this.cancels.push(env.name);
  }

  /** Ends every call on the stack at once, `ignoreAbort` or not, with a CanceledError. */
  async kill(env: Environment): Promise<void> {
    this.kills.push(env.name);
    for (const call of [...this.live]) {
      if (call.stack === env.name) call.settle("killed", new CanceledError(`test engine: the ${call.op} on ${env.name} was killed`));
    }
  }

  // Internals ------------------------------------------------------------------------------------

  private call<T extends object>(op: TestOp, env: Environment, options: EngineCallOptions, extra: () => T): Promise<OperationResult & T> {
    const emit = (event: EngineEvent) => {
      try {
        options.onEvent?.(event);
      } catch {
        // a listener's failure is not the engine's
      }
    };
    const failure = this.takeFailure(op, env.name);
    const startedAt = Date.now();
    let settle!: Pending["settle"];
    const result = new Promise<OperationResult & T>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      let done = false;
      const onAbort = () => {
        if (this.ignoreAbort) return;
        const reason = options.signal?.reason;
        settle("canceled", reason instanceof DeployerError ? reason : new CanceledError(`test engine: the ${op} on ${env.name} was canceled`, { cause: reason }));
      };
      settle = (outcome, error) => {
        if (done) return;
        done = true;
        if (timer) clearTimeout(timer);
        options.signal?.removeEventListener("abort", onAbort);
        this.waiting.delete(pending);
        this.live.delete(pending);
        this.active--;
        this.activeByStack.set(env.name, (this.activeByStack.get(env.name) ?? 1) - 1);
        pending.outcome = outcome;
        pending.endedAt = Date.now();
        const steps: ResourceStep[] = Array.from({ length: this.stepsPerCall }, (_, i) => ({
          urn: `urn:pulumi:${env.name}::test::test:index:Thing::thing-${i}`,
          type: "test:index:Thing",
          op: "same",
          changedProperties: [],
        }));
        if (outcome === "succeeded") {
          for (const step of steps) emit({ type: "step", phase: "done", step });
          emit({ type: "summary", changes: { ...emptyChanges(), same: steps.length }, result: "succeeded" });
          resolve({ engine: this.kind, changes: { ...emptyChanges(), same: steps.length }, steps, diagnostics: [], durationMs: Date.now() - startedAt, ...extra() });
        } else {
          emit({ type: "summary", changes: emptyChanges(), result: outcome === "failed" ? "failed" : "canceled" });
          reject(error ?? new OperationFailedError(`test engine: the ${op} failed`));
        }
        endedResolve();
      };
      let endedResolve!: () => void;
      const ended = new Promise<void>((r) => (endedResolve = r));
      const pending: Pending = {
        op,
        stack: env.name,
        env,
        signal: options.signal,
        startedAt,
        handedOut: false,
        ended,
        settle: (outcome, error) => settle(outcome, error),
        release: () => settle("succeeded"),
        fail: (error) => settle("failed", error ?? new OperationFailedError(`test engine: the ${op} failed`)),
      };
      this.active++;
      this.maxActive = Math.max(this.maxActive, this.active);
      const onStack = (this.activeByStack.get(env.name) ?? 0) + 1;
      this.activeByStack.set(env.name, onStack);
      this.maxActivePerStack = Math.max(this.maxActivePerStack, onStack);
      this.calls.push(pending);
      this.live.add(pending);
      emit({ type: "started", operation: op, engine: this.kind, stack: env.name });
      if (options.signal?.aborted) {
        onAbort();
      } else {
        options.signal?.addEventListener("abort", onAbort, { once: true });
      }
      if (!done) {
        if (failure) {
          timer = setTimeout(() => settle("failed", failure), this.delayMs);
        } else if (this.held) {
          this.waiting.add(pending);
        } else {
          timer = setTimeout(() => settle("succeeded"), this.delayMs);
        }
      }
      this.notify(pending);
    });
    return result;
  }

  private takeFailure(op: TestOp, stack: string): Error | undefined {
    const i = this.failures.findIndex((f) => matches({ op, stack }, f.match));
    if (i < 0) return undefined;
    return this.failures.splice(i, 1)[0].error;
  }

  private notify(call: Pending): void {
    const i = this.watchers.findIndex((w) => matches(call, w.match));
    if (i < 0 || call.handedOut) return;
    call.handedOut = true;
    this.watchers.splice(i, 1)[0].resolve(call);
  }
}

function matches(call: { op: TestOp; stack: string }, match: CallMatch): boolean {
  return (match.op === undefined || match.op === call.op) && (match.stack === undefined || match.stack === call.stack);
}

/** A scanner with no findings, and a verifier whose checks all pass. */
export const passingScanner: ImageScanner = { findings: async () => ({ status: "complete", findings: [] }) };
export const passingVerifier: Verifier = { verify: async () => ({ ok: true, checks: [{ name: "test", ok: true, detail: "test verifier: ok" }] }) };

/**
 * The operations' collaborators around `engine` (used for every environment, whatever its `engine:`
 * says): scanner and verifier that pass, a no-op preflight, and a program evaluation with no
 * resources (the policy gate finds nothing). `overrides` replaces any of them.
 */
export function testDeps(store: Store, engine: Engine, overrides: Partial<OperationDeps> = {}): OperationDeps {
  return {
    store,
    engineFor: () => engine,
    scannerFor: () => passingScanner,
    verifierFor: () => passingVerifier,
    preflight: async () => undefined,
    evaluate: async (config) => ({ stack: config.settings.environment, resources: [], outputs: {} }),
    ...overrides,
  };
}

/**
 * A temporary directory of environment files: for each name, a copy of `environments/local.yaml`
 * (offline engine, no approvals) with its own VPC CIDR (10.<i+1>.0.0/16, so they do not overlap) and
 * whatever `edit(name, text)` makes of it. Returns the directory.
 */
export function testEnvDir(names: readonly string[], edit?: (name: string, text: string) => string): string {
  const dir = mkdtempSync(path.join(tmpdir(), "deployer-envs-"));
  mkdirSync(dir, { recursive: true });
  const local = readFileSync(path.join(DEFAULT_ENV_DIR, "local.yaml"), "utf8");
  names.forEach((name, i) => {
    let text = local.replace(/cidr: 10\.0\.0\.0\/16/, `cidr: 10.${i + 1}.0.0/16`);
    if (edit) text = edit(name, text);
    writeFileSync(path.join(dir, `${name}.yaml`), text);
  });
  return dir;
}
