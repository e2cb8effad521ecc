/**
 * `pulumi up`, `refresh` and `destroy` run as the SDK's `Stack` runs them (the same arguments, its own
 * engine event stream and command runner), without the reads the SDK runs after each: `stack output`
 * twice and `stack history` after an up, `stack history` after a refresh or a destroy. Each of those is
 * one more CLI start (0.4–0.5 s on these machines) on every deployment. The engine (pulumi.ts) takes
 * the counts from the engine's summary event and the outputs from its event for the stack resource.
 *
 * It uses two methods of the SDK's `Stack` that its type declarations leave out (`setupEventLog` and
 * `runPulumiCmd`, in `@pulumi/pulumi/automation/stack.js` at 3.248.0); the real-engine suites
 * (test/e2e) run it on every CI run, and an SDK without them is refused by name.
 */
import * as path from "path";
import { rm } from "fs";
import type { DestroyOptions, EngineEvent, OpMap, RefreshOptions, Stack, UpOptions } from "@pulumi/pulumi/automation";

/** What an update returns here: the CLI's output and, when known, the engine's counts. */
export interface UpdateOutcome {
  readonly stdout: string;
  readonly stderr: string;
  readonly summary?: { readonly resourceChanges?: OpMap };
}

type EventLog = {
  logFile: string;
  logPromise?: Promise<{ tail: { quit(): Promise<void> }; rl: { close(): void } }>;
  server?: { forceShutdown(): void };
};

interface StackInternals {
  readonly name: string;
  readonly workspace: { readonly pulumiVersion?: string; readonly program?: unknown };
  setupEventLog(command: string, onEvent: (event: EngineEvent) => void, pulumiVersion: string | undefined): Promise<EventLog>;
  runPulumiCmd(args: string[], onOutput?: (out: string) => void, onError?: (err: string) => void, signal?: AbortSignal): Promise<{ stdout: string; stderr: string }>;
}

/** The options the engine passes (pulumi.ts); any other is refused, so that none is dropped silently. */
const KNOWN = new Set(["onEvent", "signal", "color", "suppressProgress", "suppressOutputs", "diff", "target", "targetDependents", "expectNoChanges", "refresh", "clearPendingCreates"]);

type AnyOptions = UpOptions & RefreshOptions & DestroyOptions;

function argsFor(command: "up" | "refresh" | "destroy", opts: AnyOptions): string[] {
  const unknown = Object.keys(opts).filter((k) => (opts as Record<string, unknown>)[k] !== undefined && !KNOWN.has(k));
  if (unknown.length > 0) throw new Error(`pulumi-update: ${command} does not pass ${unknown.join(", ")}`);
  const args = [command, "--yes", "--skip-preview"];
  if (opts.expectNoChanges) args.push("--expect-no-changes");
  if (command !== "refresh" && opts.refresh) args.push("--refresh");
  if (command === "refresh" && opts.clearPendingCreates) args.push("--clear-pending-creates");
  if (opts.diff) args.push("--diff");
  for (const urn of opts.target ?? []) args.push("--target", urn);
  if (opts.targetDependents) args.push("--target-dependents");
  if (opts.color) args.push("--color", opts.color);
  if (opts.suppressOutputs) args.push("--suppress-outputs");
  if (opts.suppressProgress) args.push("--suppress-progress");
  return args;
}

async function runUpdate(stack: StackInternals, command: "up" | "refresh" | "destroy", opts: AnyOptions = {}): Promise<UpdateOutcome> {
  const args = argsFor(command, opts);
  let log: EventLog | undefined;
  if (opts.onEvent) {
    log = await stack.setupEventLog(command, opts.onEvent, stack.workspace.pulumiVersion);
    args.push("--event-log", log.logFile);
  }
  args.push("--exec-kind", "auto.local");
  try {
    const result = await stack.runPulumiCmd(args, opts.onOutput, opts.onError, opts.signal);
    return { stdout: result.stdout, stderr: result.stderr };
  } finally {
    // As the SDK's own cleanUp: stop tailing (CLIs before 3.206), stop the events server, remove the log.
    const tail = await log?.logPromise;
    if (tail) {
      await tail.tail.quit();
      tail.rl.close();
    }
    log?.server?.forceShutdown();
    if (log && !log.logFile.startsWith("tcp://")) rm(path.dirname(log.logFile), { recursive: true, force: true }, () => undefined);
  }
}

/** The SDK's stack, with `up`, `refresh` and `destroy` that run no reads afterwards. */
export function withLeanUpdates<S extends Stack>(stack: S): S & { up(opts?: UpOptions): Promise<UpdateOutcome>; refresh(opts?: RefreshOptions): Promise<UpdateOutcome>; destroy(opts?: DestroyOptions): Promise<UpdateOutcome> } {
  const internals = stack as unknown as StackInternals;
  if (typeof internals.setupEventLog !== "function" || typeof internals.runPulumiCmd !== "function") {
    throw new Error("this @pulumi/pulumi has no Stack.setupEventLog / Stack.runPulumiCmd (automation/engine/pulumi-update.ts needs them)");
  }
  if (internals.workspace.program !== undefined) throw new Error("pulumi-update runs local programs only, not inline ones");
  return Object.assign(Object.create(stack) as S, {
    up: (opts?: UpOptions) => runUpdate(internals, "up", opts),
    refresh: (opts?: RefreshOptions) => runUpdate(internals, "refresh", opts),
    destroy: (opts?: DestroyOptions) => runUpdate(internals, "destroy", opts),
  });
}
