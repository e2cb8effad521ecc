/**
 * The engine port: the one small interface `automation/` drives an engine through. Two
 * implementations: `pulumi` (the Automation API) and `offline` (the program under Pulumi's mock
 * runtime, diffed against a local snapshot). Every call takes the environment and one options object
 * with `onEvent` and an `AbortSignal`, and returns a typed result that says which engine produced it.
 */
import type { ProgramConfig } from "../../infra/config";
import type { Environment } from "../environment";

export type EngineKind = "pulumi" | "offline";

/** What a step does to one resource. */
export type StepOp = "create" | "update" | "delete" | "replace" | "same" | "read" | "refresh" | "import";

export interface ChangeSummary {
  create: number;
  update: number;
  delete: number;
  replace: number;
  same: number;
}

export interface ResourceStep {
  readonly urn: string;
  readonly type: string;
  readonly op: StepOp;
  /** Top-level or dotted property paths that change (`tags.Owner`, `containerDefinitions`). */
  readonly changedProperties: readonly string[];
}

export interface Diagnostic {
  readonly severity: "debug" | "info" | "warning" | "error";
  readonly message: string;
  readonly urn?: string;
}

export interface OutputValue {
  /** The value; for secret outputs this is the string "[secret]" unless the caller asked to reveal. */
  readonly value: unknown;
  readonly secret: boolean;
}

export type Outputs = Record<string, OutputValue>;

/** Streamed while an operation runs. Messages never carry secret values. */
export type EngineEvent =
  | { readonly type: "started"; readonly operation: string; readonly engine: EngineKind; readonly stack: string }
  | { readonly type: "step"; readonly phase: "pre" | "done" | "failed"; readonly step: ResourceStep }
  | { readonly type: "diagnostic"; readonly diagnostic: Diagnostic }
  | { readonly type: "summary"; readonly changes: ChangeSummary; readonly result: "succeeded" | "failed" | "canceled" };

export interface EngineCallOptions {
  readonly onEvent?: (event: EngineEvent) => void;
  readonly signal?: AbortSignal;
}

export interface ProgramCallOptions extends EngineCallOptions {
  /** What to run: settings, version (image tag) and optional digest pin. */
  readonly config: ProgramConfig;
  /** Limit the operation to these URNs (and, for pulumi, their dependents when `targetDependents`). */
  readonly target?: readonly string[];
  readonly targetDependents?: boolean;
  /** Fail instead of applying when the operation would change anything. */
  readonly expectNoChanges?: boolean;
  /** Refresh state before previewing/updating. */
  readonly refresh?: boolean;
}

export interface StateCallOptions extends EngineCallOptions {
  /** The config currently deployed; the pulumi engine writes it before refresh/destroy so providers configure. */
  readonly config?: ProgramConfig;
  readonly target?: readonly string[];
}

export interface OperationResult {
  readonly engine: EngineKind;
  readonly changes: ChangeSummary;
  readonly steps: readonly ResourceStep[];
  readonly diagnostics: readonly Diagnostic[];
  readonly durationMs: number;
}

export interface UpResult extends OperationResult {
  /** The stack's outputs after the update (a targeted update may leave them as they were). */
  readonly outputs: Outputs;
  /**
   * Outputs of each resource the update created, updated or replaced, by URN (secret values masked).
   * How a caller reads what a targeted update produced, e.g. the digest of an image it pushed.
   */
  readonly resourceOutputs: Readonly<Record<string, Record<string, unknown>>>;
}

/** A property that differs between what the engine believes (state) and what exists (live). */
export interface PropertyDrift {
  readonly path: string;
  readonly kind: "add" | "update" | "delete";
  /** Values are omitted when the property is secret. */
  readonly state?: unknown;
  readonly live?: unknown;
}

export interface DriftedResource {
  readonly urn: string;
  readonly type: string;
  /** update: properties differ; delete: gone from the live world; create: exists but not in state. */
  readonly kind: "update" | "delete" | "create";
  readonly properties: readonly PropertyDrift[];
}

export interface DriftResult extends OperationResult {
  readonly drifted: readonly DriftedResource[];
}

/** One update in the engine's own history (pulumi's `stack history`; the offline snapshot log). */
export interface EngineHistoryEntry {
  readonly version: number;
  readonly kind: string;
  readonly result: string;
  readonly startTime: string;
  readonly endTime?: string;
  readonly changes?: Partial<ChangeSummary>;
  /** Non-secret config values of that update. */
  readonly config?: Record<string, string>;
}

/** What an admin recovery of a stack found and did at the engine (after a crash or a stale lock). */
export interface RecoveryReport {
  readonly engine: EngineKind;
  /** Operations the engine's state says were in flight (creates, updates, deletes that never finished). */
  readonly pendingOperations: readonly { readonly urn: string; readonly type: string; readonly kind: string }[];
  /** Whether a lock left in the backend by a dead update was cleared. */
  readonly lockCleared: boolean;
  /** The refresh run with pending creates cleared, when asked and needed. */
  readonly refresh?: OperationResult;
  /** What the admin should know (e.g. pending creates left in place because nobody asked to clear them). */
  readonly notes: readonly string[];
}

export interface Availability {
  readonly ok: boolean;
  /** Why not, and what to do about it. */
  readonly reason?: string;
}

export interface Engine {
  readonly kind: EngineKind;
  /** Whether this engine can run here (the pulumi CLI installed and recent enough, …). Fast. */
  available(): Promise<Availability>;
  preview(env: Environment, options: ProgramCallOptions): Promise<OperationResult>;
  up(env: Environment, options: ProgramCallOptions): Promise<UpResult>;
  /** Brings state in line with what exists. */
  refresh(env: Environment, options: StateCallOptions): Promise<OperationResult>;
  /** Refresh in preview mode: reports drift, never changes state. */
  drift(env: Environment, options: StateCallOptions): Promise<DriftResult>;
  destroy(env: Environment, options: StateCallOptions): Promise<OperationResult>;
  /** The stack's current outputs; secret values masked unless `reveal`. */
  outputs(env: Environment, options?: EngineCallOptions & { reveal?: boolean }): Promise<Outputs>;
  history(env: Environment, options?: EngineCallOptions): Promise<EngineHistoryEntry[]>;
  /** Asks a running operation on the stack to stop (the engine's graceful interrupt). */
  cancel(env: Environment): Promise<void>;
  /**
   * Admin recovery once no deployer process holds the stack: reports pending operations, clears a
   * stale backend lock, and with `clearPendingCreates` refreshes with pending creates dropped.
   */
  recover?(env: Environment, options: EngineCallOptions & { clearPendingCreates?: boolean }): Promise<RecoveryReport>;
  /**
   * Kills the processes of the operations running on the stack now, without waiting for them to stop
   * (a forced cancel, after a graceful one did not end them). The interrupted operations reject with
   * `CanceledError`. Engines that cannot do this leave it out.
   */
  kill?(env: Environment): Promise<void>;
}

export const SECRET_MASK = "[secret]";

export function emptyChanges(): ChangeSummary {
  return { create: 0, update: 0, delete: 0, replace: 0, same: 0 };
}

/** Counts steps into a summary (`read`/`refresh`/`import` count as same). */
export function summarize(steps: readonly ResourceStep[]): ChangeSummary {
  const c = emptyChanges();
  for (const s of steps) {
    if (s.op === "create" || s.op === "update" || s.op === "delete" || s.op === "replace") c[s.op]++;
    else c.same++;
  }
  return c;
}

/** True when applying would change anything. */
export function hasChanges(c: ChangeSummary): boolean {
  return c.create + c.update + c.delete + c.replace > 0;
}
