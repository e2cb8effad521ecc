/**
 * What every operation receives: the environment, its job record, the collaborators it calls (engine,
 * store, checks) and a way to report progress. Operations are plain async functions of this context;
 * the CLI and the service run them the same way (automation/jobs/execute.ts).
 */
import type { ProgramConfig } from "../../infra/config";
import type { ImageCatalog } from "../checks/image-exists";
import type { ImageScanner } from "../checks/image-scan";
import type { Verifier } from "../checks/verify";
import type { Engine, EngineEvent } from "../engine/port";
import type { Environment } from "../environment";
import type { Evaluation } from "../program/evaluate";
import { redactSecrets } from "../redact";
import type { Job, Store } from "../store";

/** What a job streams: the engine's events plus the deployer's own phases and checks. */
export type JobEvent =
  | EngineEvent
  | { readonly type: "phase"; readonly phase: string; readonly message: string }
  | { readonly type: "check"; readonly name: string; readonly ok: boolean; readonly skipped?: boolean; readonly detail: string }
  | { readonly type: "log"; readonly level: "info" | "warning" | "error"; readonly message: string };

export interface OperationDeps {
  readonly store: Store;
  readonly engineFor: (env: Environment) => Engine;
  readonly scannerFor: (env: Environment) => ImageScanner;
  /** Whether a recorded image can still be pulled (a rollback asks before it changes anything). Default: not asked. */
  readonly imagesFor?: (env: Environment) => ImageCatalog;
  readonly verifierFor: (env: Environment) => Verifier;
  /** Checks that must pass before an engine touches the stack (the caller's AWS account, …). */
  readonly preflight: (env: Environment, engine: Engine) => Promise<void>;
  /** Evaluates the program under mocks, outside this process, for the policy gate: the environment's `program` directory when given, else infra/. */
  readonly evaluate: (config: ProgramConfig, signal?: AbortSignal, program?: string) => Promise<Evaluation>;
}

export interface OperationContext {
  readonly env: Environment;
  readonly job: Job;
  readonly deps: OperationDeps;
  readonly signal?: AbortSignal;
  readonly emit: (event: JobEvent) => void;
}

/** Emits a phase line. */
export function phase(ctx: OperationContext, name: string, message: string): void {
  ctx.emit({ type: "phase", phase: name, message });
}

/** Events pass through here on their way to the store and the listeners: secrets never get further. */
export function scrubEvent(event: JobEvent): JobEvent {
  if (event.type === "diagnostic") return { ...event, diagnostic: { ...event.diagnostic, message: redactSecrets(event.diagnostic.message) } };
  if (event.type === "log" || event.type === "phase") return { ...event, message: redactSecrets(event.message) };
  if (event.type === "check") return { ...event, detail: redactSecrets(event.detail) };
  return event;
}
