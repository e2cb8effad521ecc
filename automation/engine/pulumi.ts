/**
 * The pulumi engine: the Automation API (`LocalWorkspace` over the repository's Pulumi.yaml) driving
 * the pulumi CLI. Backend and secrets provider come from the environment file; each operation that
 * runs the program first writes the stack config from the deployment's ProgramConfig, so every
 * update's recorded config says what was deployed.
 *
 * The seam: `workspaceFactory` opens the stack and `pulumiCommand` finds the CLI. Tests replace both
 * and assert what each operation passes; nothing else here touches the CLI.
 */
import { existsSync, mkdirSync, readFileSync } from "fs";
import { hostname } from "os";
import * as path from "path";
import type {
  ConfigMap,
  DestroyOptions,
  OpMap,
  PulumiCommand,
  RefreshOptions,
  Stack,
  StackSettings,
  UpdateSummary,
  UpOptions,
} from "@pulumi/pulumi/automation";
import { automationApi } from "./pulumi-sdk";
import { completeStackConfig, stackConfig } from "../program/stack-config";
import { REPO_ROOT, type Environment } from "../environment";
import { CanceledError, ChangesFoundError, ConfigError, type DeployerError } from "../errors";
import { redactSecrets } from "../redact";
import {
  hasChanges,
  SECRET_MASK,
  summarize,
  type Availability,
  type ChangeSummary,
  type DriftResult,
  type Engine,
  type EngineCallOptions,
  type EngineHistoryEntry,
  type OperationResult,
  type Outputs,
  type ProgramCallOptions,
  type RecoveryReport,
  type StateCallOptions,
  type UpResult,
} from "./port";
import { checkPulumi, locatePulumi, type PulumiCommandLike } from "./pulumi-cli";
import { EngineProcesses, groupedCommand, type RunFn } from "./pulumi-process";
import { removeBrokenSidecars } from "./pulumi-diy-repair";
import { readBackendLocks, type BackendLock } from "./pulumi-locks";
import { withLeanUpdates, type UpdateOutcome } from "./pulumi-update";
import { procStat } from "../jobs/lease";
import { toCliError, toPulumiError } from "./pulumi-errors";
import { changesFromOpMap, EventCollector } from "./pulumi-events";

/** What the engine calls on a stack: a subset of the SDK's `Stack`, so a fake can stand in. */
export type StackLike = Pick<Stack, "preview" | "previewRefresh" | "history" | "cancel" | "exportStack"> & {
  /** The updates, run without the SDK's reads afterwards (pulumi-update.ts). */
  up(opts?: UpOptions): Promise<UpdateOutcome>;
  refresh(opts?: RefreshOptions): Promise<UpdateOutcome>;
  destroy(opts?: DestroyOptions): Promise<UpdateOutcome>;
  /** The stack settings file (`Pulumi.<stack>.yaml`), which holds the stack's config. */
  readonly workspace: Pick<Stack["workspace"], "stackSettings" | "saveStackSettings" | "pulumiCommand" | "workDir" | "envVars">;
};

/** What the workspace factory gets: everything `LocalWorkspace` needs to open one stack. */
export interface WorkspaceArgs {
  /** The environment's name: a plain stack name (file:// and s3:// backends have no organizations). */
  readonly stackName: string;
  /** The directory with Pulumi.yaml. */
  readonly workDir: string;
  /** PULUMI_BACKEND_URL, PULUMI_SKIP_UPDATE_CHECK, the caller's PULUMI_* and AWS_* variables and, for passphrase, its variable. */
  readonly envVars: Readonly<Record<string, string>>;
  /** `passphrase` or `awskms://…`, used when the stack is created. */
  readonly secretsProvider: string;
  /** Create the stack when it does not exist (preview, up); otherwise select it or fail with StackNotFoundError. */
  readonly create: boolean;
  readonly pulumiCommand: PulumiCommandLike;
  /**
   * This engine opened the stack (same backend and program) before without an error since: it exists,
   * and `stack select` (a CLI start) can be skipped, since every command names its stack.
   */
  readonly known?: boolean;
}

export type WorkspaceFactory = (args: WorkspaceArgs) => Promise<StackLike>;

export interface PulumiEngineOptions {
  /** Opens the stack. Default: `LocalWorkspace.createOrSelectStack` (or `selectStack`) on `repoRoot`. */
  readonly workspaceFactory?: WorkspaceFactory;
  /** Finds the CLI. Default: a PATH scan, then `PulumiCommand.get` with the version checks. */
  readonly pulumiCommand?: () => Promise<PulumiCommandLike>;
  /**
   * The base of relative file:// backends, and the program run for an environment that names none.
   * Default: the repository root.
   */
  readonly repoRoot?: string;
  /** The process environment read for PATH, the passphrase and the values to redact. Default: `process.env`. */
  readonly env?: NodeJS.ProcessEnv;
}

/** Opens a stack of a local program with the real Automation API. */
export const localWorkspaceFactory: WorkspaceFactory = async (args) => {
  const opts = {
    envVars: { ...args.envVars },
    secretsProvider: args.secretsProvider,
    // The located CLI, run in a process group of its own (pulumi-process.ts); reusing it also spares
    // the workspace another `pulumi version`.
    pulumiCommand: args.pulumiCommand as PulumiCommand,
  };
  const program = { stackName: args.stackName, workDir: args.workDir };
  const { LocalWorkspace, Stack } = automationApi();
  if (args.known) {
    const ws = await LocalWorkspace.create({ ...opts, workDir: args.workDir });
    // Every command the engine runs passes `--stack`: selecting it first would change nothing.
    ws.selectStack = async () => undefined;
    return withLeanUpdates(await Stack.select(args.stackName, ws));
  }
  return withLeanUpdates(await (args.create ? LocalWorkspace.createOrSelectStack(program, opts) : LocalWorkspace.selectStack(program, opts)));
};

/** `file://<relative>` resolved against `root`; absolute, `~` and non-file URLs unchanged. */
export function resolveBackendUrl(backend: string, root: string): string {
  if (!backend.startsWith("file://")) return backend;
  const p = backend.slice("file://".length);
  if (p.startsWith("/") || p.startsWith("~") || path.isAbsolute(p)) return backend;
  return `file://${path.resolve(root, p)}`;
}

interface RunSpec {
  readonly operation: string;
  readonly env: Environment;
  readonly options: EngineCallOptions & { readonly expectNoChanges?: boolean };
  /** Create the stack when missing. */
  readonly create: boolean;
  /** Written to stack config before the operation runs, when given. */
  readonly config?: ProgramCallOptions["config"];
}

interface RunContext {
  readonly stack: StackLike;
  readonly collector: EventCollector;
  /** Wraps the SDK call of an operation that changes the stack (PulumiEngine.applied). */
  readonly applied: (name: string, call: () => Promise<OpMap | undefined>) => Promise<OpMap | undefined>;
  /** Options every Automation API operation gets. */
  readonly common: { readonly onEvent: EventCollector["onEvent"]; readonly signal?: AbortSignal; readonly color: "never"; readonly suppressProgress: true; readonly suppressOutputs: true };
}

export class PulumiEngine implements Engine {
  readonly kind = "pulumi" as const;
  /** The CLI processes running now, per stack: what cancel interrupts and kill kills. */
  readonly processes = new EngineProcesses();
  private readonly workspaceFactory: WorkspaceFactory;
  /** The stacks this engine opened (backend, program, name) with no failure since: they exist. */
  private readonly knownStacks = new Set<string>();
  private readonly locate: () => Promise<PulumiCommandLike>;
  private readonly repoRoot: string;
  private readonly env: NodeJS.ProcessEnv;
  private located?: Promise<PulumiCommandLike>;
  /** Whether `locate` is locatePulumi (not a command given by the caller), which checkPulumi can stand in for. */
  private readonly locatesItself: boolean;
  /** checkPulumi's answer once it passed (as `located` is kept): readiness asks often, the CLI stays. */
  private checked?: Promise<void>;

  constructor(options: PulumiEngineOptions = {}) {
    this.env = options.env ?? process.env;
    this.repoRoot = path.resolve(options.repoRoot ?? REPO_ROOT);
    this.workspaceFactory = options.workspaceFactory ?? localWorkspaceFactory;
    this.locate = options.pulumiCommand ?? (() => locatePulumi(this.env));
    this.locatesItself = options.pulumiCommand === undefined;
  }

  async available(): Promise<Availability> {
    try {
      // Before its first operation, without loading the SDK (checkPulumi): readiness asks this at start.
      if (this.located === undefined && this.locatesItself) await this.checkOnce();
      else await this.cli();
      return { ok: true };
    } catch (err) {
      return { ok: false, reason: toCliError(err, (t) => this.redact(t)).message };
    }
  }

  async preview(env: Environment, options: ProgramCallOptions): Promise<OperationResult> {
    return this.run({ operation: "preview", env, options, create: true, config: options.config }, async ({ stack, common, collector }) => {
      const res = await stack.preview({ ...common, ...programOptions(options), diff: false });
      return { changes: changesOf(res.changeSummary, collector) };
    });
  }

  async up(env: Environment, options: ProgramCallOptions): Promise<UpResult> {
    if (options.expectNoChanges) {
      // `up --expect-no-changes` only fails after applying; the port promises to fail instead of
      // applying, so look first. The up keeps the flag as a guard against a change in between.
      const look = await this.preview(env, { ...options, onEvent: undefined });
      if (hasChanges(look.changes)) {
        throw new ChangesFoundError(`up of ${env.name} would change resources where none were expected`, { details: { changes: look.changes } });
      }
    }
    return this.run({ operation: "up", env, options, create: true, config: options.config }, async ({ stack, common, collector, applied }) => {
      const ops = await applied("up", () => stack.up({ ...common, ...programOptions(options), diff: false }).then((r) => r.summary?.resourceChanges ?? collector.summary));
      // The outputs the engine reported for the stack once the program registered them (masked, a
      // nested secret included), as `stack output` would print them; read from the backend only when
      // none came, or when the update was targeted (the stack's own outputs are not then rewritten).
      const targeted = (options.target?.length ?? 0) > 0;
      const outputs = collector.stackOutputs !== undefined && !targeted ? mergeOutputs(collector.stackOutputs) : await this.readOutputs(stack, env, false, collector);
      return { changes: changesOf(ops, collector), outputs, resourceOutputs: collector.resourceOutputs() };
    });
  }

  async refresh(env: Environment, options: StateCallOptions): Promise<OperationResult> {
    return this.run({ operation: "refresh", env, options, create: false, config: options.config }, async ({ stack, common, collector, applied }) => {
      const ops = await applied("refresh", () => stack.refresh({ ...common, ...targetOptions(options.target) }).then((r) => r.summary?.resourceChanges ?? collector.summary));
      return { changes: changesOf(ops, collector) };
    });
  }

  async drift(env: Environment, options: StateCallOptions): Promise<DriftResult> {
    return this.run({ operation: "drift", env, options, create: false, config: options.config }, async ({ stack, common, collector }) => {
      // `refresh --preview-only`: reads what exists, reports, never writes state.
      const res = await stack.previewRefresh({ ...common, ...targetOptions(options.target) });
      return { changes: changesOf(res.changeSummary, collector), drifted: collector.driftedResources() };
    });
  }

  async destroy(env: Environment, options: StateCallOptions): Promise<OperationResult> {
    return this.run({ operation: "destroy", env, options, create: false, config: options.config }, async ({ stack, common, collector, applied }) => {
      const ops = await applied("destroy", () => stack.destroy({ ...common, ...targetOptions(options.target), diff: false }).then((r) => r.summary?.resourceChanges ?? collector.summary));
      return { changes: changesOf(ops, collector) };
    });
  }

  async outputs(env: Environment, options: EngineCallOptions & { reveal?: boolean } = {}): Promise<Outputs> {
    return this.query("outputs", env, options, (stack) => this.readOutputs(stack, env, options.reveal === true));
  }

  async history(env: Environment, options: EngineCallOptions = {}): Promise<EngineHistoryEntry[]> {
    // showSecrets false: secret config values stay encrypted in what the CLI prints.
    return this.query("history", env, options, async (stack) => (await stack.history(undefined, undefined, false)).map(toHistoryEntry));
  }

  /**
   * The graceful interrupt, alone: one SIGINT to each CLI process running on the stack. Never
   * `pulumi cancel`, which on file:// and s3:// backends deletes the update's lock and sends the
   * running update nothing.
   */
  async cancel(env: Environment): Promise<void> {
    this.processes.interrupt(env.name);
  }

  /** Kills the process tree (CLI, language host, program, providers) of each command on the stack. */
  async kill(env: Environment): Promise<void> {
    this.processes.kill(env.name);
  }

  async recover(env: Environment, options: EngineCallOptions & { clearPendingCreates?: boolean } = {}): Promise<RecoveryReport> {
    // The caller (the queue's unlock) has established that no deployer process holds the stack, so a
    // lock in the backend belongs to a dead update.
    const notes: string[] = [];
    const locks = await this.locks(env);
    const liveHere = this.processes.of(env.name).length > 0 || (locks ?? []).some(heldByLiveProcessHere);
    // What a CLI killed mid-write left unreadable is mended first, unless a pulumi command still runs.
    if (!liveHere) {
      for (const file of await this.removeBrokenSidecars(env)) {
        notes.push(`removed ${file}, a metadata file of the backend that the killed update left cut short (every read of the file beside it failed on it)`);
      }
    }
    const pending = await this.query("recover", env, options, async (stack) => pendingOperationsOf(await stack.exportStack()));
    let lockCleared = false;
    if (locks === undefined) {
      notes.push("the backend's locks could not be read, so none was cleared");
    } else if (locks.length === 0) {
      notes.push("no lock was held in the backend");
    } else if (this.processes.of(env.name).length > 0) {
      notes.push(`the backend lock was left in place: this process still runs a pulumi command on ${env.name}`);
    } else if (locks.some(heldByLiveProcessHere)) {
      // An update whose deployer died goes on in its own process group until it ends.
      const live = locks.filter(heldByLiveProcessHere).map((l) => `pid ${l.pid}`).join(", ");
      notes.push(`the backend lock was left in place: the update holding it (${live} on this host) is still running; unlock again once it has ended`);
    } else {
      // `pulumi cancel` on a DIY backend deletes the stack's lock files; look again to say what it did.
      await this.query("recover", env, options, (stack) => stack.cancel());
      const after = await this.locks(env);
      lockCleared = after !== undefined && after.length === 0;
      for (const l of locks) notes.push(`${lockCleared ? "cleared" : "could not clear"} ${describeLock(l)}`);
    }
    const creates = pending.filter((p) => p.kind === "creating");
    let refresh: OperationResult | undefined;
    if (creates.length > 0 && options.clearPendingCreates) {
      refresh = await this.run({ operation: "refresh", env, options, create: false }, async ({ stack, common, collector }) => {
        const res = await stack.refresh({ ...common, clearPendingCreates: true });
        return { changes: changesOf(res.summary?.resourceChanges ?? collector.summary, collector) };
      });
    } else if (creates.length > 0) {
      notes.push(`${creates.length} pending create(s) left in the state: they may exist in AWS without the state knowing; unlock again with clearPendingCreates after checking, or import them`);
    }
    return { engine: "pulumi", pendingOperations: pending, lockCleared, refresh, notes };
  }

  /** A file:// backend's metadata sidecars of the stack that do not parse, removed (pulumi-diy-repair.ts). */
  private async removeBrokenSidecars(env: Environment): Promise<string[]> {
    const backend = resolveBackendUrl(env.backend, this.repoRoot);
    if (!backend.startsWith("file://")) return [];
    return removeBrokenSidecars(backend.slice("file://".length), projectNameOf(this.programDir(env)), env.name);
  }

  /** The locks the stack's backend holds now, or undefined when the backend cannot be read. */
  private async locks(env: Environment): Promise<BackendLock[] | undefined> {
    try {
      return await readBackendLocks(resolveBackendUrl(env.backend, this.repoRoot), projectNameOf(this.programDir(env)), env.name, this.env);
    } catch {
      return undefined;
    }
  }

  /** The located CLI, once per engine; a failure is retried on the next call (the CLI may get installed). */
  /** checkPulumi, run again only after it failed. */
  private checkOnce(): Promise<void> {
    this.checked ??= checkPulumi(this.env, (t) => this.redact(t)).catch((err: unknown) => {
      this.checked = undefined;
      throw err;
    });
    return this.checked;
  }

  private cli(): Promise<PulumiCommandLike> {
    if (!this.located) {
      this.located = this.locate().catch((err: unknown) => {
        this.located = undefined;
        throw toCliError(err, (t) => this.redact(t));
      });
    }
    return this.located;
  }

  /** Extra values to scrub: the passphrase file's content, which no env var holds. */
  private extraSecrets(): string[] {
    const file = this.env.PULUMI_CONFIG_PASSPHRASE_FILE;
    if (!file) return [];
    try {
      const content = readFileSync(file, "utf8");
      return [content, content.trim()].filter((v) => v !== "");
    } catch {
      return [];
    }
  }

  private redact(text: string): string {
    return redactSecrets(text, this.env, this.extraSecrets());
  }

  /** Which stack `knownStacks` means: its backend, its program and its name. */
  private stackKey(env: Environment): string {
    return JSON.stringify([resolveBackendUrl(env.backend, this.repoRoot), this.programDir(env), env.name]);
  }

  /** The directory with the Pulumi.yaml the environment runs. */
  private programDir(env: Environment): string {
    return env.program ?? this.repoRoot;
  }

  /** The variables each CLI run gets, and the checks that need no CLI. */
  private workspaceEnv(env: Environment): Record<string, string> {
    const vars: Record<string, string> = {};
    // The caller's settings for the CLI and for AWS (credentials, region, AWS_ENDPOINT_URL…), which
    // may not be this process's own (the CLI and the service pass theirs).
    for (const [key, value] of Object.entries(this.env)) {
      if (value !== undefined && (key.startsWith("PULUMI_") || key.startsWith("AWS_"))) vars[key] = value;
    }
    delete vars.PULUMI_CONFIG_PASSPHRASE;
    delete vars.PULUMI_CONFIG_PASSPHRASE_FILE;
    vars.PULUMI_BACKEND_URL = resolveBackendUrl(env.backend, this.repoRoot);
    vars.PULUMI_SKIP_UPDATE_CHECK = "true";
    // The program runs through ts-node without type-checking: `npm run build` type-checks once.
    vars.PULUMI_NODEJS_TRANSPILE_ONLY = "true";
    if (env.secretsProvider === "passphrase") {
      const passphrase = this.env.PULUMI_CONFIG_PASSPHRASE;
      const file = this.env.PULUMI_CONFIG_PASSPHRASE_FILE;
      if (passphrase !== undefined) vars.PULUMI_CONFIG_PASSPHRASE = passphrase;
      else if (file !== undefined && file !== "") {
        if (!existsSync(file)) {
          throw new ConfigError(`PULUMI_CONFIG_PASSPHRASE_FILE names ${file}, which does not exist (stack ${env.name} uses the passphrase secrets provider)`, {
            details: { variable: "PULUMI_CONFIG_PASSPHRASE_FILE" },
          });
        }
        vars.PULUMI_CONFIG_PASSPHRASE_FILE = file;
      } else {
        throw new ConfigError(
          `stack ${env.name} uses the passphrase secrets provider (${env.file}): set PULUMI_CONFIG_PASSPHRASE (or PULUMI_CONFIG_PASSPHRASE_FILE, the path of a file holding it) in the deployer's environment`,
          { details: { variable: "PULUMI_CONFIG_PASSPHRASE" } },
        );
      }
    }
    return vars;
  }

  private async open(env: Environment, create: boolean): Promise<StackLike> {
    const envVars = this.workspaceEnv(env);
    const pulumiCommand = groupedCommand(await this.cli(), env.name, this.processes);
    const backend = envVars.PULUMI_BACKEND_URL;
    // A DIY backend directory must exist before the CLI logs in to it.
    if (backend.startsWith("file://") && !backend.startsWith("file://~")) mkdirSync(backend.slice("file://".length), { recursive: true });
    const key = this.stackKey(env);
    const stack = await this.workspaceFactory({ stackName: env.name, workDir: this.programDir(env), envVars, secretsProvider: env.secretsProvider, create, pulumiCommand, known: this.knownStacks.has(key) });
    this.knownStacks.add(key);
    return stack;
  }

  /**
   * The stack's outputs, secret values masked at any depth unless `reveal`. The CLI prints masked
   * values without `--show-secrets`; the SDK's `outputs()` keeps only the revealed print and marks
   * a key secret only when its whole value is, so a secret inside an object would come back as text.
   */
  private async readOutputs(stack: StackLike, env: Environment, reveal: boolean, collector?: EventCollector): Promise<Outputs> {
    const ws = stack.workspace;
    const runner = ws.pulumiCommand as unknown as { run: RunFn };
    const read = async (showSecrets: boolean): Promise<Record<string, unknown>> => {
      const args = ["stack", "output", "--json", "--stack", env.name, ...(showSecrets ? ["--show-secrets"] : [])];
      const res = await runner.run(args, ws.workDir, { ...ws.envVars });
      return JSON.parse(res.stdout || "{}") as Record<string, unknown>;
    };
    try {
      const masked = await read(false);
      return mergeOutputs(masked, reveal ? await read(true) : undefined);
    } catch (err) {
      if (!collector) throw err;
      // The update itself is what happened; an output read that fails afterwards does not undo it.
      collector.warn(`the update succeeded, but its outputs could not be read: ${toPulumiError(err, { operation: "outputs", stack: env.name, backend: env.backend, redact: (t) => this.redact(t) }).message}`);
      return {};
    }
  }

  private failure(operation: string, env: Environment, signal: AbortSignal | undefined, extra?: { expectNoChanges?: boolean; changes?: ChangeSummary; errors?: string[] }) {
    return (err: unknown): DeployerError =>
      toPulumiError(err, { operation, stack: env.name, backend: env.backend, aborted: signal?.aborted === true, redact: (t) => this.redact(t), ...extra });
  }

  /** Reads that run no program: history, cancel, export. */
  private async query<T>(operation: string, env: Environment, options: EngineCallOptions, body: (stack: StackLike) => Promise<T>): Promise<T> {
    throwIfAborted(operation, env, options.signal);
    const fail = this.failure(operation, env, options.signal);
    try {
      return await body(await this.open(env, false));
    } catch (err) {
      // Whatever failed, the next open selects the stack again (it may be gone).
      this.knownStacks.delete(this.stackKey(env));
      throw fail(err);
    }
  }

  /** One operation: open, write config, run, translate events, sort failures. */
  private async run<T extends { changes: ChangeSummary }>(spec: RunSpec, body: (ctx: RunContext) => Promise<T>): Promise<OperationResult & T> {
    const { operation, env, options } = spec;
    const signal = options.signal;
    throwIfAborted(operation, env, signal);
    const started = Date.now();
    const collector = new EventCollector(options.onEvent, (t) => this.redact(t));
    let begun = false;
    try {
      const stack = await this.open(env, spec.create);
      throwIfAborted(operation, env, signal);
      emitSafely(options.onEvent, { type: "started", operation, engine: "pulumi", stack: env.name });
      begun = true;
      if (spec.config) await writeStackConfig(stack, env.name, stackConfig(spec.config));
      throwIfAborted(operation, env, signal);
      const common = { onEvent: collector.onEvent, signal, color: "never", suppressProgress: true, suppressOutputs: true } as const;
      const result = await body({ stack, collector, common, applied: (name, call) => this.applied(env, name, collector, call) });
      emitSafely(options.onEvent, { type: "summary", changes: result.changes, result: "succeeded" });
      return { engine: "pulumi", steps: collector.resourceSteps(), diagnostics: collector.diagnostics, durationMs: Date.now() - started, ...result };
    } catch (err) {
      this.knownStacks.delete(this.stackKey(env));
      const seen = changesOf(collector.summary, collector);
      const mapped = this.failure(operation, env, signal, { expectNoChanges: options.expectNoChanges, changes: seen, errors: collector.errors() })(err);
      if (begun) emitSafely(options.onEvent, { type: "summary", changes: seen, result: mapped instanceof CanceledError ? "canceled" : "failed" });
      throw mapped;
    }
  }

  /**
   * Runs an operation that changes the stack (`up`, `refresh`, `destroy`) and tells apart the
   * update's own failure from anything after the command (the event stream's clean-up): when the
   * update command succeeded, its result is what happened. A killed command is a forced cancel.
   * Resolves to the engine's counts (undefined when the SDK could not read them).
   */
  private async applied(env: Environment, name: string, collector: EventCollector, call: () => Promise<OpMap | undefined>): Promise<OpMap | undefined> {
    const finished = this.processes.watch(env.name, name);
    try {
      return await call();
    } catch (err) {
      if (finished.code === 0) {
        collector.warn(`the ${name} succeeded, but reading its summary afterwards failed: ${this.redact((err instanceof Error ? err.message : String(err)).split("\n")[0])}`);
        return collector.summary;
      }
      if (finished.killed) throw new CanceledError(`${name} of ${env.name} was killed (forced cancel)`, { cause: scrub(err, (t) => this.redact(t)) });
      throw err;
    } finally {
      finished.stop();
    }
  }
}

/** The engine's summary counts; the steps' when it sent none (the SDK then reports `{}`). */
function changesOf(ops: OpMap | undefined, collector: EventCollector): ChangeSummary {
  return ops && Object.keys(ops).length > 0 ? changesFromOpMap(ops, collector.stackOp) : summarize(collector.resourceSteps());
}

function describeLock(l: BackendLock): string {
  // A lock the killed CLI was still writing (its temporary file) counts as a lock for the CLI too.
  return l.cutShort ? `the backend lock ${l.key}, which the killed update left cut short` : `the backend lock of ${l.username}@${l.hostname} (pid ${l.pid}) from ${l.timestamp}`;
}

/** A lock taken by a pulumi process on this host that still runs (a zombie does not). */
function heldByLiveProcessHere(lock: BackendLock): boolean {
  if (lock.pid === null || lock.hostname !== hostname()) return false;
  const state = procStat(lock.pid)?.state;
  return state !== undefined && state !== "Z" && state !== "X";
}

/** A failure as a cause that carries no engine output beyond its first line, redacted. */
function scrub(err: unknown, redact: (text: string) => string): Error {
  return new Error(redact((err instanceof Error ? err.message : String(err)).split("\n")[0].slice(0, 300)));
}

/** Writes the stack's config whole: keys a deployment does not set are removed, not left behind. */
export async function writeStackConfig(stack: StackLike, stackName: string, values: Record<string, string>): Promise<void> {
  let current: StackSettings = {};
  try {
    current = await stack.workspace.stackSettings(stackName);
  } catch {
    // No settings file yet (a new stack, or one created elsewhere): there is nothing to keep.
  }
  const config = completeStackConfig(current.config ?? {}, values);
  await stack.workspace.saveStackSettings(stackName, { ...current, config });
}

/** The project name in a program directory's Pulumi.yaml. */
export function projectNameOf(dir: string): string {
  const text = readFileSync(path.join(dir, "Pulumi.yaml"), "utf8");
  const m = /^name:\s*["']?([^"'\s#]+)/m.exec(text);
  if (!m) throw new ConfigError(`${path.join(dir, "Pulumi.yaml")} has no project name`, { details: { field: "program" } });
  return m[1];
}

/**
 * The outputs as the port reports them: `masked` is the CLI's print without `--show-secrets`
 * (secret values, at any depth, are "[secret]"), `revealed` the print with it. A key whose value
 * is or holds a secret is secret, and masked whole unless revealed, as the offline engine has it.
 */
export function mergeOutputs(masked: Record<string, unknown>, revealed?: Record<string, unknown>): Outputs {
  const out: Outputs = {};
  for (const [key, value] of Object.entries(masked)) {
    const secret = holdsSecret(value);
    const shown = revealed && key in revealed ? revealed[key] : secret ? SECRET_MASK : value;
    out[key] = { value: shown, secret };
  }
  return out;
}

function holdsSecret(v: unknown): boolean {
  if (v === SECRET_MASK) return true;
  if (Array.isArray(v)) return v.some(holdsSecret);
  if (v !== null && typeof v === "object") return Object.values(v).some(holdsSecret);
  return false;
}

function emitSafely(emit: EngineCallOptions["onEvent"], event: Parameters<NonNullable<EngineCallOptions["onEvent"]>>[0]): void {
  try {
    emit?.(event);
  } catch {
    // A listener's failure is not the operation's.
  }
}

function throwIfAborted(operation: string, env: Environment, signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new CanceledError(`${operation} of ${env.name} was canceled`);
}

function targetOptions(target: readonly string[] | undefined): { target?: string[] } {
  return target && target.length > 0 ? { target: [...target] } : {};
}

function programOptions(options: ProgramCallOptions) {
  return {
    ...targetOptions(options.target),
    targetDependents: options.targetDependents === true && (options.target?.length ?? 0) > 0 ? true : undefined,
    expectNoChanges: options.expectNoChanges === true ? true : undefined,
    refresh: options.refresh === true ? true : undefined,
  };
}

/** Plain (non-secret) values; `path: false` keeps the settings JSON one string value. */
export function toConfigMap(values: Record<string, string>): ConfigMap {
  const map: ConfigMap = {};
  for (const [key, value] of Object.entries(values)) map[key] = { value, secret: false };
  return map;
}


function iso(d: Date | string | undefined): string | undefined {
  if (d === undefined || d === null) return undefined;
  const date = d instanceof Date ? d : new Date(d);
  return Number.isNaN(date.getTime()) ? String(d) : date.toISOString();
}

export function toHistoryEntry(s: UpdateSummary): EngineHistoryEntry {
  const config: Record<string, string> = {};
  for (const [key, v] of Object.entries(s.config ?? {})) {
    if (!v.secret && typeof v.value === "string") config[key] = v.value;
  }
  const entry: EngineHistoryEntry = {
    version: s.version,
    kind: s.kind,
    result: s.result,
    startTime: iso(s.startTime) ?? "",
    endTime: iso(s.endTime),
    changes: s.resourceChanges ? changesFromOpMap(s.resourceChanges) : undefined,
    config,
  };
  return entry;
}

/** The operations an exported deployment says were in flight (`pending_operations`). */
export function pendingOperationsOf(exported: { deployment?: unknown }): RecoveryReport["pendingOperations"] {
  const ops = (exported.deployment as { pending_operations?: { resource?: { urn?: string; type?: string }; type?: string }[] } | undefined)?.pending_operations ?? [];
  return ops.map((op) => ({ urn: op.resource?.urn ?? "", type: op.resource?.type ?? "", kind: op.type ?? "unknown" }));
}
