/**
 * The offline engine: runs the program under Pulumi's mock runtime in a child process
 * (offline-child.ts) and diffs what it declares against a snapshot in the data directory. It creates
 * nothing in any cloud and touches no network; every result says `engine: "offline"`.
 *
 * On disk, per stack, in `<dataDir>/offline/<stack>/` (each file written atomically: temp + rename):
 *
 * - `world.json` — what "exists". Exactly `{"resources": {"<urn>": {"type", "inputs", "outputs"}}}`.
 *   An up writes applied resources here too; editing it by hand is how drift is made.
 * - `state.json` — what the engine believes: the same `resources` map, plus
 *     `"outputs": {"<key>": {"value", "secret"}}`  stack outputs; secret values stored as "[secret]",
 *     `"config": {"<key>": "<value>"}`            the stack config of the last full up (non-secret),
 *     `"version": "<tag>"`                       the deploy version of the last full up,
 *     `"historyVersion": <n>`                    the history entry that last wrote the file,
 *     `"updatedAt": "<ISO time>"`.
 * - `stack-config.json` — `{"config": {"<key>": "<value>"}}`: the stack's config, as pulumi keeps it in
 *   `Pulumi.<stack>.yaml`. An up writes it first (completeStackConfig), and a preview or up runs the
 *   program with what it then holds, so a key that outlived its deployment would change what runs, as
 *   it would on the real engine.
 * - `history.json` — `{"entries": [EngineHistoryEntry…]}`, oldest first; `version` counts from 1.
 *   Updates (failed ones too), refreshes and destroys are recorded; previews and drift checks are not,
 *   and a canceled operation writes nothing at all.
 *
 * Semantics, mirroring pulumi where it has one:
 * - preview/up diff the program's inputs against the state (diff.ts: a changed replace-on-change
 *   property replaces). A `same` resource is left untouched by up in both files, so a drifted world
 *   stays drifted until a refresh brings it into state and the next up corrects it.
 * - drift compares state with world and writes nothing; refresh copies world into state (resources
 *   only). A resource in the world but not in state is reported as kind/op `create`, and refresh adopts
 *   it into state (this is also how a crash between the world and state writes is recovered).
 * - a targeted up changes only the target URNs' resources (the stack outputs follow the program);
 *   a targeted destroy leaves the stack outputs alone.
 * - destroy deletes what the state knows, from state and world; a world-only resource stays.
 */
import { fork, type ChildProcess } from "child_process";
import { randomBytes } from "crypto";
import { promises as fsp } from "fs";
import * as path from "path";
import { createInterface } from "readline";
import type { ProgramConfig } from "../../infra/config";
import { assertStackName, programEntry, REPO_ROOT, type Environment } from "../environment";
import { CanceledError, ChangesFoundError, ConfigError, DeployerError, OperationFailedError } from "../errors";
import { offlineStackDir } from "../paths";
import type { Evaluation } from "../program/evaluate";
import { completeStackConfig, programConfigOf, stackConfig } from "../program/stack-config";
import { driftProperties, planStep, type SnapshotResource } from "./diff";
import type { ChildRequest, ChildResponse } from "./offline-child";
import {
  SECRET_MASK,
  emptyChanges,
  hasChanges,
  summarize,
  type Availability,
  type ChangeSummary,
  type Diagnostic,
  type DriftResult,
  type DriftedResource,
  type Engine,
  type EngineCallOptions,
  type EngineEvent,
  type EngineHistoryEntry,
  type OperationResult,
  type Outputs,
  type ProgramCallOptions,
  type RecoveryReport,
  type ResourceStep,
  type StateCallOptions,
  type UpResult,
} from "./port";

export interface OfflineEngineOptions {
  /** The deployer's data directory; snapshots go to `<dataDir>/offline/<stack>/`. */
  readonly dataDir: string;
  /** A module whose export (`export =` or default) is the program function. Default: the repo's infra entry. */
  readonly programPath?: string;
  /** Extra node arguments for the program process (`--max-old-space-size=…`). */
  readonly nodeArgs?: readonly string[];
  /** After an interrupt (SIGINT), how long the program process gets before SIGKILL. Default 2000 ms. */
  readonly killGraceMs?: number;
  /** How programs are evaluated; default `evaluateInChild`. The deployer passes a cached one (program/cache.ts). */
  readonly evaluate?: (config: ProgramConfig, options: EvaluateInChildOptions) => Promise<Evaluation>;
}

export interface WorldFile {
  resources: Record<string, SnapshotResource>;
}

export interface StateFile extends WorldFile {
  outputs?: Outputs;
  config?: Record<string, string>;
  version?: string;
  historyVersion?: number;
  updatedAt?: string;
}

export interface HistoryFile {
  entries: EngineHistoryEntry[];
}

const CHILD_MODULE = require.resolve("./offline-child");
const REGISTER = path.join(REPO_ROOT, "automation", "register.js");
const STDERR_TAIL_LINES = 20;

/** The per-call context the operations share. */
interface Call {
  readonly stack: string;
  readonly dir: string;
  /** The program module the environment runs (its `program`), when it names one. */
  readonly program?: string;
  readonly signal: AbortSignal;
  /** Aborted by `kill`: the program process is killed at once (SIGKILL), not interrupted. */
  readonly killSignal: AbortSignal;
  readonly diagnostics: Diagnostic[];
  emit(event: EngineEvent): void;
}

interface Plan {
  readonly evaluation: Evaluation;
  readonly world: WorldFile;
  /** The state the plan was computed against (the refreshed one when `refresh`). */
  readonly base: StateFile;
  readonly steps: ResourceStep[];
  readonly desired: Map<string, SnapshotResource>;
  readonly targeted: boolean;
}

export class OfflineEngine implements Engine {
  readonly kind = "offline" as const;
  /** The operations running per stack: `cancel` aborts them, `kill` also kills their program processes. */
  private readonly running = new Map<string, Set<{ readonly controller: AbortController; readonly kill: AbortController }>>();

  constructor(private readonly options: OfflineEngineOptions) {}

  async available(): Promise<Availability> {
    return { ok: true };
  }

  preview(env: Environment, options: ProgramCallOptions): Promise<OperationResult> {
    return this.run(env, "preview", options, async (call) => {
      const plan = await this.plan(call, options);
      const changes = summarize(plan.steps);
      if (options.expectNoChanges && hasChanges(changes)) throw changesFound(call.stack, changes);
      return { changes, steps: plan.steps };
    });
  }

  up(env: Environment, options: ProgramCallOptions): Promise<UpResult> {
    return this.run(env, "up", options, async (call, startTime) => {
      let plan: Plan;
      try {
        plan = await this.plan(call, options, true);
      } catch (err) {
        // A program that fails is a failed update, as pulumi records it; a cancel leaves no trace.
        if (err instanceof OperationFailedError && !call.signal.aborted) {
          await this.appendHistory(call.dir, { kind: "update", result: "failed", startTime, config: stackConfig(options.config) }).catch(() => undefined);
        }
        throw err;
      }
      const changes = summarize(plan.steps);
      if (options.expectNoChanges && hasChanges(changes)) throw changesFound(call.stack, changes);
      throwIfAborted(call.signal);

      const state = cloneSnapshot(plan.base);
      const world = cloneSnapshot(plan.world);
      applySteps(plan, state, world);
      await this.appendHistory(call.dir, {
        kind: "update",
        result: "succeeded",
        startTime,
        changes,
        config: stackConfig(options.config),
      }, async (n) => {
        // Stack outputs follow the program even on a targeted up, as the engine re-registers them:
        // a fast-path rollback must report the task definition it restored.
        state.outputs = plan.evaluation.outputs as Outputs;
        if (!plan.targeted) {
          state.config = stackConfig(options.config);
          state.version = options.config.version;
        }
        state.historyVersion = n;
        state.updatedAt = new Date().toISOString();
        // World first: a crash in between looks like resources that exist but are not in state, which
        // drift reports and refresh adopts.
        await writeJson(path.join(call.dir, "world.json"), world);
        await writeJson(path.join(call.dir, "state.json"), state);
      });
      for (const step of plan.steps) call.emit({ type: "step", phase: "done", step });
      const resourceOutputs: Record<string, Record<string, unknown>> = {};
      for (const step of plan.steps) {
        const r = plan.desired.get(step.urn);
        if (r && (step.op === "create" || step.op === "update" || step.op === "replace")) resourceOutputs[step.urn] = r.outputs;
      }
      return { changes, steps: plan.steps, outputs: maskOutputs(state.outputs ?? {}), resourceOutputs };
    });
  }

  drift(env: Environment, options: StateCallOptions): Promise<DriftResult> {
    return this.run(env, "drift", options, async (call) => {
      const [state, world] = await Promise.all([readState(call.dir), readWorld(call.dir)]);
      const { steps, drifted } = compare(state, world, targetSet(call.stack, options.target, [state.resources, world.resources]));
      for (const step of steps) call.emit({ type: "step", phase: "pre", step });
      return { changes: summarize(steps), steps, drifted };
    });
  }

  refresh(env: Environment, options: StateCallOptions): Promise<OperationResult> {
    return this.run(env, "refresh", options, async (call, startTime) => {
      const [state, world] = await Promise.all([readState(call.dir), readWorld(call.dir)]);
      const targets = targetSet(call.stack, options.target, [state.resources, world.resources]);
      const { steps } = compare(state, world, targets);
      const next = refreshed(state, world, targets);
      const changes = summarize(steps);
      throwIfAborted(call.signal);
      await this.appendHistory(call.dir, { kind: "refresh", result: "succeeded", startTime, changes, config: configOf(options.config, state) }, async (n) => {
        next.historyVersion = n;
        next.updatedAt = new Date().toISOString();
        await writeJson(path.join(call.dir, "state.json"), next);
      });
      for (const step of steps) call.emit({ type: "step", phase: "done", step });
      return { changes, steps };
    });
  }

  destroy(env: Environment, options: StateCallOptions): Promise<OperationResult> {
    return this.run(env, "destroy", options, async (call, startTime) => {
      const [state, world] = await Promise.all([readState(call.dir), readWorld(call.dir)]);
      const targets = targetSet(call.stack, options.target, [state.resources]);
      const steps: ResourceStep[] = [];
      // Children were recorded after their parents: delete in reverse.
      for (const urn of Object.keys(state.resources).reverse()) {
        if (targets && !targets.has(urn)) continue;
        steps.push({ urn, type: state.resources[urn].type, op: "delete", changedProperties: [] });
      }
      for (const step of steps) call.emit({ type: "step", phase: "pre", step });
      const changes = summarize(steps);
      throwIfAborted(call.signal);
      const next = cloneSnapshot(state);
      const nextWorld = cloneSnapshot(world);
      for (const { urn } of steps) {
        delete next.resources[urn];
        delete nextWorld.resources[urn];
      }
      if (!targets) next.outputs = {};
      await this.appendHistory(call.dir, { kind: "destroy", result: "succeeded", startTime, changes, config: configOf(options.config, state) }, async (n) => {
        next.historyVersion = n;
        next.updatedAt = new Date().toISOString();
        await writeJson(path.join(call.dir, "world.json"), nextWorld);
        await writeJson(path.join(call.dir, "state.json"), next);
      });
      for (const step of steps) call.emit({ type: "step", phase: "done", step });
      return { changes, steps };
    });
  }

  /** The offline engine never holds clear secret values, so `reveal` still shows them masked. */
  async recover(env: Environment): Promise<RecoveryReport> {
    assertStackName(env.name);
    // Snapshots are written whole (temp file + rename) and the world before the state, so a crash
    // leaves no half-applied operation and no lock: at worst resources in the world the state does
    // not know, which drift reports and refresh adopts.
    return { engine: "offline", pendingOperations: [], lockCleared: false, notes: ["the offline engine keeps no lock and no pending operations; run drift to see whether the world moved"] };
  }

  async outputs(env: Environment, _options?: EngineCallOptions & { reveal?: boolean }): Promise<Outputs> {
    const state = await readState(this.stackDir(env));
    return maskOutputs(state.outputs ?? {});
  }

  async history(env: Environment, _options?: EngineCallOptions): Promise<EngineHistoryEntry[]> {
    const history = await readHistory(this.stackDir(env));
    return [...history.entries].reverse();
  }

  async cancel(env: Environment): Promise<void> {
    for (const { controller } of this.running.get(env.name) ?? []) controller.abort(new CanceledError(`the operation on ${env.name} was canceled`));
  }

  /**
   * SIGKILLs the program processes of the operations running on the stack (the offline engine's only
   * child processes: the program under mocks runs alone in its process and starts none of its own)
   * and aborts the operations, which reject with CanceledError once the processes are gone.
   */
  async kill(env: Environment): Promise<void> {
    for (const { controller, kill } of this.running.get(env.name) ?? []) {
      kill.abort(new CanceledError(`the operation on ${env.name} was killed`));
      controller.abort(new CanceledError(`the operation on ${env.name} was killed`));
    }
  }

  private stackDir(env: Environment): string {
    assertStackName(env.name);
    return offlineStackDir(env.name, this.options.dataDir);
  }

  /**
   * Runs one operation: links the caller's signal to a controller `cancel` can reach, emits
   * `started` and `summary`, and turns anything thrown into a DeployerError.
   */
  private async run<T extends { changes: ChangeSummary; steps: ResourceStep[] }>(
    env: Environment,
    operation: string,
    options: EngineCallOptions,
    body: (call: Call, startTime: string) => Promise<T>,
  ): Promise<T & { engine: "offline"; diagnostics: Diagnostic[]; durationMs: number }> {
    const started = Date.now();
    const startTime = new Date(started).toISOString();
    const dir = this.stackDir(env);
    const controller = new AbortController();
    const onAbort = () => controller.abort(options.signal?.reason);
    if (options.signal?.aborted) controller.abort(options.signal.reason);
    else options.signal?.addEventListener("abort", onAbort, { once: true });
    const handle = { controller, kill: new AbortController() };
    const set = this.running.get(env.name) ?? new Set();
    set.add(handle);
    this.running.set(env.name, set);

    const diagnostics: Diagnostic[] = [];
    const emit = (event: EngineEvent) => {
      try {
        options.onEvent?.(event);
      } catch {
        // A listener's failure is the listener's problem, never the operation's.
      }
    };
    const call: Call = {
      stack: env.name,
      dir,
      program: env.program === undefined ? undefined : programEntry(env.program),
      signal: controller.signal,
      killSignal: handle.kill.signal,
      diagnostics,
      emit: (event) => {
        if (event.type === "diagnostic") diagnostics.push(event.diagnostic);
        emit(event);
      },
    };
    emit({ type: "started", operation, engine: "offline", stack: env.name });
    try {
      throwIfAborted(controller.signal);
      const result = await body(call, startTime);
      emit({ type: "summary", changes: result.changes, result: "succeeded" });
      return { ...result, engine: "offline", diagnostics, durationMs: Date.now() - started };
    } catch (err) {
      const error = classify(err, controller.signal, `${operation} of ${env.name} was canceled`);
      const changes = error instanceof ChangesFoundError ? (error.details as { changes: ChangeSummary }).changes : emptyChanges();
      emit({ type: "summary", changes, result: error instanceof CanceledError ? "canceled" : "failed" });
      throw error;
    } finally {
      options.signal?.removeEventListener("abort", onAbort);
      set.delete(handle);
      if (set.size === 0) this.running.delete(env.name);
    }
  }

  /** Evaluates the program and diffs it against the state (refreshed first, in memory, when asked). */
  private async plan(call: Call, options: ProgramCallOptions, persistConfig = false): Promise<Plan> {
    if (options.config.settings.environment !== call.stack) {
      throw new ConfigError(`config is for environment "${options.config.settings.environment}", not stack "${call.stack}"`, { details: { field: "config" } });
    }
    // The program runs with what the stack's config holds once this deployment's is written; an up
    // keeps it (a preview leaves nothing behind, so a fresh stack's preview writes no file).
    const written = completeStackConfig(await readStackConfig(call.dir), stackConfig(options.config));
    if (persistConfig) await writeJson(path.join(call.dir, "stack-config.json"), { config: written });
    const evaluation = await this.evaluate(call, programConfigOf(written, options.config.settings));
    throwIfAborted(call.signal);
    const [state, world] = await Promise.all([readState(call.dir), readWorld(call.dir)]);

    const desired = new Map<string, SnapshotResource>();
    const parents = new Map<string, string | undefined>();
    for (const r of evaluation.resources) {
      if (desired.has(r.urn)) throw new OperationFailedError(`the program declares ${r.urn} twice`);
      desired.set(r.urn, { type: r.type, inputs: r.inputs, outputs: r.outputs });
      parents.set(r.urn, r.parent);
    }
    let targets = targetSet(call.stack, options.target, [state.resources, Object.fromEntries(desired)]);
    if (targets && options.targetDependents) targets = withDescendants(targets, parents);
    const base = options.refresh ? refreshed(state, world, targets) : state;

    const steps: ResourceStep[] = [];
    for (const [urn, r] of desired) {
      const old = base.resources[urn];
      if (targets && !targets.has(urn)) {
        steps.push({ urn, type: r.type, op: "same", changedProperties: [] });
        continue;
      }
      // A type change under the same URN cannot be an in-place update.
      const planned = old && old.type !== r.type ? { op: "replace" as const, changedProperties: ["type"] } : planStep(r.type, old, r.inputs);
      steps.push({ urn, type: r.type, op: planned.op, changedProperties: planned.changedProperties });
    }
    for (const urn of Object.keys(base.resources).reverse()) {
      if (desired.has(urn)) continue;
      const op = targets && !targets.has(urn) ? "same" : "delete";
      steps.push({ urn, type: base.resources[urn].type, op, changedProperties: [] });
    }
    for (const step of steps) call.emit({ type: "step", phase: "pre", step });
    return { evaluation, world, base, steps, desired, targeted: targets !== undefined };
  }

  private evaluate(call: Call, config: ProgramConfig): Promise<Evaluation> {
    return (this.options.evaluate ?? evaluateInChild)(config, {
      signal: call.signal,
      kill: call.killSignal,
      programPath: this.options.programPath ?? call.program,
      nodeArgs: this.options.nodeArgs,
      killGraceMs: this.options.killGraceMs,
      onDiagnostic: (diagnostic) => call.emit({ type: "diagnostic", diagnostic }),
    });
  }

  /** Appends a history entry; `write` runs with its version number before the history file is written. */
  private async appendHistory(
    dir: string,
    entry: Omit<EngineHistoryEntry, "version" | "endTime">,
    write?: (version: number) => Promise<void>,
  ): Promise<number> {
    const history = await readHistory(dir);
    const version = (history.entries[history.entries.length - 1]?.version ?? 0) + 1;
    await write?.(version);
    history.entries.push({ version, ...entry, endTime: new Date().toISOString() });
    await writeJson(path.join(dir, "history.json"), history);
    return version;
  }
}

export interface EvaluateInChildOptions {
  readonly signal?: AbortSignal;
  /** Aborting it SIGKILLs the program process at once (a forced cancel); the run rejects with CanceledError. */
  readonly kill?: AbortSignal;
  /** A module whose export is the program function; default: the repo's infra entry. */
  readonly programPath?: string;
  readonly nodeArgs?: readonly string[];
  /** After the SIGINT an abort sends, how long before SIGKILL. Default 2000 ms. */
  readonly killGraceMs?: number;
  /** What the program prints: `pulumi.log` lines with their severity, other stdout as info, stderr as warning. */
  readonly onDiagnostic?: (diagnostic: Diagnostic) => void;
}

/**
 * Evaluates the program under mocks in a child process (offline-child.ts) and resolves to the
 * evaluation, secret values masked. An abort sends SIGINT, then SIGKILL after a grace, and rejects
 * with CanceledError once the process is gone; a program error or crash rejects with
 * OperationFailedError carrying the program's message without its stack trace.
 */
export function evaluateInChild(config: ProgramConfig, options: EvaluateInChildOptions = {}): Promise<Evaluation> {
  const { signal, kill } = options;
  if (signal?.aborted || kill?.aborted) return Promise.reject(new CanceledError("the program run was canceled"));
  // TypeScript (the sources, or a .ts program given for tests) loads through the transpile-only hook.
  const typescript = CHILD_MODULE.endsWith(".ts") || options.programPath?.endsWith(".ts") === true;
  const execArgv = [...(typescript ? ["-r", REGISTER] : []), ...(options.nodeArgs ?? [])];
  let child: ChildProcess;
  try {
    child = fork(CHILD_MODULE, [], { execArgv, stdio: ["ignore", "pipe", "pipe", "ipc"] });
  } catch (err) {
    return Promise.reject(new OperationFailedError(`could not start the program process: ${(err as Error).message}`, { cause: err }));
  }
  const stderrTail: string[] = [];
  const diagnose = (line: string, fallback: Diagnostic["severity"]) => {
    if (line.trim() === "" || !options.onDiagnostic) return;
    const m = RUNTIME_LOG.exec(line);
    options.onDiagnostic(m ? { severity: m[1] as Diagnostic["severity"], message: m[2] } : { severity: fallback, message: line });
  };
  createInterface({ input: child.stdout! }).on("line", (line) => diagnose(line, "info"));
  createInterface({ input: child.stderr! }).on("line", (line) => {
    stderrTail.push(line);
    if (stderrTail.length > STDERR_TAIL_LINES) stderrTail.shift();
    diagnose(line, "warning");
  });

  return new Promise<Evaluation>((resolve, reject) => {
    let response: ChildResponse | undefined;
    let killTimer: NodeJS.Timeout | undefined;
    let spawnError: Error | undefined;
    const onAbort = () => {
      child.kill("SIGINT");
      killTimer = setTimeout(() => child.kill("SIGKILL"), options.killGraceMs ?? 2000);
      killTimer.unref();
    };
    const onKill = () => child.kill("SIGKILL");
    signal?.addEventListener("abort", onAbort, { once: true });
    kill?.addEventListener("abort", onKill, { once: true });
    child.on("message", (message: ChildResponse) => {
      response ??= message;
    });
    child.on("error", (err) => {
      spawnError ??= err;
    });
    // `close` comes after the exit and after stdout/stderr are drained, so the diagnostics are complete.
    child.on("close", (code, exitSignal) => {
      signal?.removeEventListener("abort", onAbort);
      kill?.removeEventListener("abort", onKill);
      if (killTimer) clearTimeout(killTimer);
      if (signal?.aborted || kill?.aborted) return reject(new CanceledError("the program run was canceled"));
      if (response?.type === "result") return resolve(response.evaluation);
      if (response?.type === "error") return reject(new OperationFailedError(`the program failed: ${response.message}`));
      if (spawnError) return reject(new OperationFailedError(`could not run the program process: ${spawnError.message}`, { cause: spawnError }));
      const detail = crashDetail(stderrTail);
      reject(new OperationFailedError(`the program process exited ${exitSignal ? `on ${exitSignal}` : `with code ${code}`}${detail ? `: ${detail}` : ""}`));
    });
    const request: ChildRequest = { type: "evaluate", config, programPath: options.programPath };
    child.send(request, (err) => {
      if (err) spawnError ??= err;
    });
  });
}

function throwIfAborted(signal: AbortSignal): void {
  if (signal.aborted) throw new CanceledError("the operation was canceled");
}

function classify(err: unknown, signal: AbortSignal, what: string): DeployerError {
  if (signal.aborted) return new CanceledError(what, { cause: err });
  if (err instanceof DeployerError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new OperationFailedError(`offline engine: ${message}`, { cause: err });
}

function changesFound(stack: string, changes: ChangeSummary): ChangesFoundError {
  const parts = (["create", "update", "replace", "delete"] as const).filter((k) => changes[k] > 0).map((k) => `${changes[k]} to ${k}`);
  return new ChangesFoundError(`${stack}: changes found where none were expected (${parts.join(", ")})`, { details: { changes } });
}

const RUNTIME_LOG = /^(debug|info|warning|error): \[runtime\] (.*)$/;

/** The first meaningful lines of what a crashed program process printed, without stack frames. */
function crashDetail(lines: readonly string[]): string {
  return lines
    .filter((l) => l.trim() !== "" && !/^\s+at\s/.test(l) && !/^\s*\^+\s*$/.test(l) && !/^Node\.js v/.test(l))
    .slice(0, 3)
    .join(" | ")
    .slice(0, 500);
}

/** Targets as a set, or undefined for "everything". Unknown URNs are refused: they name nothing. */
function targetSet(stack: string, target: readonly string[] | undefined, known: readonly Record<string, unknown>[]): Set<string> | undefined {
  if (!target || target.length === 0) return undefined;
  const unknown = target.filter((urn) => !known.some((k) => Object.prototype.hasOwnProperty.call(k, urn)));
  if (unknown.length > 0) {
    throw new ConfigError(`target ${unknown[0].slice(0, 300)} is not a resource of stack ${stack}${unknown.length > 1 ? ` (and ${unknown.length - 1} more)` : ""}`, {
      details: { field: "target" },
    });
  }
  return new Set(target);
}

function withDescendants(targets: Set<string>, parents: Map<string, string | undefined>): Set<string> {
  const out = new Set(targets);
  for (const urn of parents.keys()) {
    for (let p = parents.get(urn); p !== undefined; p = parents.get(p)) {
      if (targets.has(p)) {
        out.add(urn);
        break;
      }
    }
  }
  return out;
}

/** The up's changes applied to copies of state and world: created/updated/replaced get the program's resource, deleted go. */
function applySteps(plan: Plan, state: StateFile, world: WorldFile): void {
  if (!plan.targeted) {
    // Keep the program's order so a later destroy deletes children before parents.
    const ordered: Record<string, SnapshotResource> = {};
    for (const step of plan.steps) {
      if (step.op === "delete") continue;
      const mine = step.op === "same" ? state.resources[step.urn] : undefined;
      const r = mine ?? plan.desired.get(step.urn);
      if (r) ordered[step.urn] = r;
    }
    state.resources = ordered;
  }
  for (const step of plan.steps) {
    const r = plan.desired.get(step.urn);
    if (step.op === "delete") {
      delete state.resources[step.urn];
      delete world.resources[step.urn];
    } else if ((step.op === "create" || step.op === "update" || step.op === "replace") && r) {
      state.resources[step.urn] = r;
      world.resources[step.urn] = r;
    }
  }
}

/** State vs world: drifted resources and the steps a refresh would take (what happens to state). */
function compare(state: StateFile, world: WorldFile, targets: Set<string> | undefined): { steps: ResourceStep[]; drifted: DriftedResource[] } {
  const steps: ResourceStep[] = [];
  const drifted: DriftedResource[] = [];
  for (const [urn, r] of Object.entries(state.resources)) {
    if (targets && !targets.has(urn)) continue;
    const live = world.resources[urn];
    if (!live) {
      steps.push({ urn, type: r.type, op: "delete", changedProperties: [] });
      drifted.push({ urn, type: r.type, kind: "delete", properties: [] });
      continue;
    }
    const properties = driftProperties(r, live);
    if (properties.length === 0) {
      steps.push({ urn, type: r.type, op: "same", changedProperties: [] });
      continue;
    }
    steps.push({ urn, type: r.type, op: "update", changedProperties: properties.map((p) => p.path) });
    drifted.push({ urn, type: r.type, kind: "update", properties });
  }
  for (const [urn, live] of Object.entries(world.resources)) {
    if (state.resources[urn] || (targets && !targets.has(urn))) continue;
    steps.push({ urn, type: live.type, op: "create", changedProperties: [] });
    drifted.push({ urn, type: live.type, kind: "create", properties: [] });
  }
  return { steps, drifted };
}

/** A copy of the state with the (targeted) resources as the world has them. */
function refreshed(state: StateFile, world: WorldFile, targets: Set<string> | undefined): StateFile {
  const next = cloneSnapshot(state);
  for (const urn of Object.keys(state.resources)) {
    if (targets && !targets.has(urn)) continue;
    if (world.resources[urn]) next.resources[urn] = world.resources[urn];
    else delete next.resources[urn];
  }
  for (const [urn, live] of Object.entries(world.resources)) {
    if (!state.resources[urn] && (!targets || targets.has(urn))) next.resources[urn] = live;
  }
  return next;
}

function configOf(config: ProgramConfig | undefined, state: StateFile): Record<string, string> | undefined {
  return config ? stackConfig(config) : state.config;
}

function maskOutputs(outputs: Outputs): Outputs {
  const out: Outputs = {};
  for (const [key, o] of Object.entries(outputs)) out[key] = { value: o.secret ? SECRET_MASK : o.value, secret: o.secret };
  return out;
}

function cloneSnapshot<T extends WorldFile>(s: T): T {
  return structuredClone(s);
}

// --- files -----------------------------------------------------------------------------------------

async function readJson(file: string): Promise<unknown | undefined> {
  let text: string;
  try {
    text = await fsp.readFile(file, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new OperationFailedError(`${file} is not valid JSON: ${(err as Error).message}`, { cause: err });
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function checkResources(file: string, doc: unknown): Record<string, SnapshotResource> {
  if (!isObject(doc) || !isObject(doc.resources)) throw new OperationFailedError(`${file}: must be an object with "resources": {"<urn>": {"type", "inputs", "outputs"}}`);
  for (const [urn, r] of Object.entries(doc.resources)) {
    if (!isObject(r) || typeof r.type !== "string" || !isObject(r.inputs) || !isObject(r.outputs)) {
      throw new OperationFailedError(`${file}: resources["${urn.slice(0, 300)}"] must have "type" (string), "inputs" and "outputs" (objects)`);
    }
  }
  return doc.resources as Record<string, SnapshotResource>;
}

async function readState(dir: string): Promise<StateFile> {
  const file = path.join(dir, "state.json");
  const doc = await readJson(file);
  if (doc === undefined) return { resources: {} };
  const resources = checkResources(file, doc);
  return { ...(doc as StateFile), resources };
}

async function readStackConfig(dir: string): Promise<Record<string, string>> {
  const file = path.join(dir, "stack-config.json");
  const doc = await readJson(file);
  if (doc === undefined) return {};
  const config = isObject(doc) ? doc.config : undefined;
  if (!isObject(config) || !Object.values(config).every((v) => typeof v === "string")) throw new OperationFailedError(`${file}: must be {"config": {"<key>": "<string>"}}`);
  return config as Record<string, string>;
}

async function readWorld(dir: string): Promise<WorldFile> {
  const file = path.join(dir, "world.json");
  const doc = await readJson(file);
  if (doc === undefined) return { resources: {} };
  return { resources: checkResources(file, doc) };
}

async function readHistory(dir: string): Promise<HistoryFile> {
  const file = path.join(dir, "history.json");
  const doc = await readJson(file);
  if (doc === undefined) return { entries: [] };
  if (!isObject(doc) || !Array.isArray(doc.entries)) throw new OperationFailedError(`${file}: must be an object with "entries": [...]`);
  return doc as unknown as HistoryFile;
}

/** Writes JSON atomically: a temp file in the same directory, flushed, then renamed over the target. */
async function writeJson(file: string, value: unknown): Promise<void> {
  await fsp.mkdir(path.dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`;
  const handle = await fsp.open(tmp, "w", 0o600);
  try {
    await handle.writeFile(`${JSON.stringify(value, null, 2)}\n`, "utf8");
    await handle.sync();
  } finally {
    await handle.close();
  }
  try {
    await fsp.rename(tmp, file);
  } catch (err) {
    await fsp.rm(tmp, { force: true });
    throw err;
  }
}
