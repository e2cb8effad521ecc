/**
 * How the pulumi engine runs the CLI: every `pulumi` command in a process group of its own, tracked
 * per stack, so that
 *
 * - a graceful cancel is exactly one SIGINT to `pulumi` itself, never a second one: a terminal's
 *   Ctrl-C reaches only the deployer (the CLI is not in the terminal's foreground group), and the
 *   SDK's own abort listener (which sends another SIGINT, the CLI's "terminate now") is never armed;
 * - an abort that came before the command started is not lost: the SDK only listens for `abort`,
 *   it never looks at `signal.aborted`;
 * - a forced cancel kills the whole tree (the CLI, its language host, the program and its provider
 *   processes) with one SIGKILL to the group;
 * - the deployer exiting while a command runs sends it the one graceful interrupt, instead of
 *   execa's SIGTERM (which the CLI takes as terminate, skipping its checkpoint).
 *
 * It stands in for the SDK's `PulumiCommand` (the object `LocalWorkspace` runs every command
 * through), with the same result and error types, so the SDK's own error sorting still applies.
 */
import { spawn } from "child_process";
import { readdirSync } from "fs";
import * as path from "path";
import type { PulumiCommand } from "@pulumi/pulumi/automation";
import type { PulumiCommandLike } from "./pulumi-cli";
import { procStat, procStatFields } from "../jobs/lease";

/** The SDK's result of one CLI run (`automation/cmd.js`, not in its type declarations). */
export interface CommandResult {
  readonly stdout: string;
  readonly stderr: string;
  readonly code: number;
  readonly err?: Error;
}

type OnData = (data: string) => void;
/** `PulumiCommand.run`, which the SDK declares internal. */
export type RunFn = (args: string[], cwd: string, additionalEnv: { [key: string]: string }, onOutput?: OnData, onError?: OnData, signal?: AbortSignal) => Promise<CommandResult>;

interface SdkInternals {
  CommandResult: new (stdout: string, stderr: string, code: number, err?: Error) => CommandResult;
  createCommandError: (result: CommandResult) => Error;
}

let internals: SdkInternals | undefined;
function sdk(): SdkInternals {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  internals ??= { CommandResult: require("@pulumi/pulumi/automation/cmd").CommandResult, createCommandError: require("@pulumi/pulumi/automation/errors").createCommandError };
  return internals;
}

/** One running `pulumi` command. */
export interface EngineProcess {
  readonly pid: number;
  readonly stack: string;
  readonly args: readonly string[];
  /** The graceful interrupt was sent (once at most). */
  interrupted: boolean;
  /** The group was killed. */
  killed: boolean;
  /** The processes the kill was sent to, each with its start time (a pid may be reused). */
  killedTree?: { pid: number; start?: string }[];
}

/** How one command ended, as a watcher sees it. */
export interface CommandOutcome {
  /** The exit code of the last matching command that ended, if one has. */
  code?: number;
  /** That command's group was killed. */
  killed: boolean;
  stop(): void;
}

/** The CLI processes the engine runs now, by stack. */
export class EngineProcesses {
  private readonly byStack = new Map<string, Set<EngineProcess>>();
  private readonly watchers = new Set<{ stack: string; command: string; outcome: CommandOutcome }>();
  private exitHookInstalled = false;

  /** Records how the stack's next `pulumi <command>` ends (the update itself, not the reads after it). */
  watch(stack: string, command: string): CommandOutcome {
    const watcher = { stack, command, outcome: { killed: false, stop: () => this.watchers.delete(watcher) } as CommandOutcome };
    this.watchers.add(watcher);
    return watcher.outcome;
  }

  /** Called by the runner when a command ends. */
  ended(p: EngineProcess, code: number): void {
    for (const w of this.watchers) {
      if (w.stack !== p.stack || p.args[0] !== w.command) continue;
      w.outcome.code = code;
      w.outcome.killed = p.killed;
    }
  }

  add(p: EngineProcess): void {
    let set = this.byStack.get(p.stack);
    if (!set) this.byStack.set(p.stack, (set = new Set()));
    set.add(p);
    this.installExitHook();
  }

  remove(p: EngineProcess): void {
    const set = this.byStack.get(p.stack);
    set?.delete(p);
    if (set?.size === 0) this.byStack.delete(p.stack);
  }

  of(stack: string): EngineProcess[] {
    return [...(this.byStack.get(stack) ?? [])];
  }

  /** Sends the graceful interrupt to each command of the stack that has not had it. */
  interrupt(stack: string): number {
    let n = 0;
    for (const p of this.of(stack)) if (interrupt(p)) n++;
    return n;
  }

  /**
   * Kills each command of the stack with its whole tree: the CLI's process group, and every process
   * descended from it (the CLI starts its language host and provider plugins in process groups of
   * their own, which a signal to its group does not reach).
   */
  kill(stack: string): number {
    let n = 0;
    for (const p of this.of(stack)) {
      p.killed = true;
      const tree = descendantsOf(p.pid);
      p.killedTree = [p.pid, ...tree].map((pid) => ({ pid, start: procStat(pid)?.startTime }));
      for (const target of [-p.pid, ...tree.map((pid) => -pid), ...tree]) {
        try {
          process.kill(target, "SIGKILL");
        } catch {
          // already gone, or not a group leader
        }
      }
      n++;
    }
    return n;
  }

  /** When the deployer exits with commands still running, each gets its graceful interrupt. */
  private installExitHook(): void {
    if (this.exitHookInstalled) return;
    this.exitHookInstalled = true;
    everyRegistry.add(this);
    if (everyRegistry.size === 1) process.once("exit", () => everyRegistry.forEach((r) => r.interruptAll()));
  }

  killAll(): void {
    for (const stack of [...this.byStack.keys()]) this.kill(stack);
  }

  private interruptAll(): void {
    for (const set of this.byStack.values()) for (const p of set) interrupt(p);
  }
}

/** The registries of this process, interrupted together by one exit hook. */
const everyRegistry = new Set<EngineProcesses>();

/** Kills the process group of every CLI command this process runs (a forced stop of the deployer). */
export function killAllEngineProcesses(): void {
  for (const registry of everyRegistry) registry.killAll();
}

/** Every process descended from `root` (from /proc; empty where there is none). */
export function descendantsOf(root: number): number[] {
  const children = new Map<number, number[]>();
  let names: string[];
  try {
    names = readdirSync("/proc");
  } catch {
    return [];
  }
  for (const name of names) {
    if (!/^\d+$/.test(name)) continue;
    const fields = procStatFields(name);
    if (fields === undefined) continue; // gone meanwhile
    const ppid = Number(fields[1]);
    const list = children.get(ppid) ?? [];
    list.push(Number(name));
    children.set(ppid, list);
  }
  const out: number[] = [];
  const walk = (pid: number) => {
    for (const child of children.get(pid) ?? []) {
      out.push(child);
      walk(child);
    }
  };
  walk(root);
  return out;
}

/** Whether the process the kill was sent to still runs (a zombie, or a new process on its pid, does not). */
function stillRuns(target: { pid: number; start?: string }): boolean {
  const stat = procStat(target.pid);
  return stat !== undefined && stat.state !== "Z" && stat.state !== "X" && (target.start === undefined || stat.startTime === target.start);
}

/**
 * Resolves once every process of a killed tree has exited. SIGKILL is delivered at once, but a
 * process with many threads takes a moment to exit, and the CLI's own exit is only the first: the
 * language host and the plugins run in groups of their own. There is no event for the exit of a
 * process that is not our child, so this looks at /proc, every 10 ms, for at most `limitMs`.
 */
export async function treeExited(tree: readonly { pid: number; start?: string }[], limitMs = 10_000): Promise<boolean> {
  const deadline = Date.now() + limitMs;
  for (;;) {
    if (!tree.some(stillRuns)) return true;
    if (Date.now() > deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** One SIGINT to the CLI process itself (not its group: the CLI passes the cancel on by RPC). */
function interrupt(p: EngineProcess): boolean {
  if (p.interrupted || p.killed) return false;
  p.interrupted = true;
  try {
    process.kill(p.pid, "SIGINT");
    return true;
  } catch {
    return false;
  }
}

/**
 * A `PulumiCommand` for one stack's workspace whose `run` spawns the CLI in its own process group
 * and registers it in `processes`.
 */
export function groupedCommand(located: PulumiCommandLike, stack: string, processes: EngineProcesses): PulumiCommand {
  const command: PulumiCommandLike & { run: RunFn } = {
    command: located.command,
    version: located.version,
    run: (args, cwd, additionalEnv, onOutput, onError, signal) => runGrouped(located.command, stack, processes, { args, cwd, additionalEnv, onOutput, onError, signal }),
  };
  return command as unknown as PulumiCommand;
}

interface RunArgs {
  readonly args: string[];
  readonly cwd: string;
  readonly additionalEnv: { [key: string]: string };
  readonly onOutput?: (data: string) => void;
  readonly onError?: (data: string) => void;
  readonly signal?: AbortSignal;
}

/** Runs one CLI command as the SDK's `PulumiCommand.run` does, in a group of its own. */
export function runGrouped(executable: string, stack: string, processes: EngineProcesses, run: RunArgs): Promise<CommandResult> {
  const args = run.args.includes("--non-interactive") ? [...run.args] : [...run.args, "--non-interactive"];
  const env: NodeJS.ProcessEnv = { ...process.env, ...run.additionalEnv, PULUMI_AUTOMATION_API: "true" };
  // The CLI's directory first on PATH, so it finds the language host and plugins installed with it.
  if (path.isAbsolute(executable)) env.PATH = `${path.dirname(executable)}${path.delimiter}${run.additionalEnv.PATH ?? process.env.PATH ?? ""}`;
  const { CommandResult: Result, createCommandError } = sdk();

  return new Promise<CommandResult>((resolve, reject) => {
    let stdout = "";
    let stderr = "";
    const child = spawn(executable, args, { cwd: run.cwd, env, detached: true, stdio: ["ignore", "pipe", "pipe"] });
    let entry: EngineProcess | undefined;
    const onAbort = () => {
      if (entry) interrupt(entry);
    };
    child.once("spawn", () => {
      entry = { pid: child.pid!, stack, args, interrupted: false, killed: false };
      processes.add(entry);
      if (run.signal?.aborted) onAbort();
      else run.signal?.addEventListener("abort", onAbort, { once: true });
    });
    child.stdout.setEncoding("utf8").on("data", (d: string) => {
      stdout += d;
      run.onOutput?.(d);
    });
    child.stderr.setEncoding("utf8").on("data", (d: string) => {
      stderr += d;
      run.onError?.(d);
    });
    let settled = false;
    const settle = (code: number, err?: Error) => {
      if (settled) return;
      settled = true;
      run.signal?.removeEventListener("abort", onAbort);
      if (entry) {
        processes.remove(entry);
        processes.ended(entry, code);
      }
      const result = new Result(stdout, stderr, code, err);
      if (code === 0 && err === undefined) resolve(result);
      else reject(createCommandError(result));
    };
    child.once("error", (err) => settle(-2, Object.assign(err, { stdout, stderr })));
    child.once("close", (code, signal) => {
      const status = code ?? (signal ? 128 + (signalNumber(signal) ?? 0) : -1);
      // A forced cancel has ended only when nothing of the tree runs any more.
      if (entry?.killedTree) void treeExited(entry.killedTree).then(() => settle(status));
      else settle(status);
    });
  });
}

function signalNumber(signal: NodeJS.Signals): number | undefined {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return (require("os") as typeof import("os")).constants.signals[signal];
}
