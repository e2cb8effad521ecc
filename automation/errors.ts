/**
 * The deployer's errors: one base class, subclasses that only set their name, code and exit code, and
 * one function (`toDeployerError`) that sorts anything thrown into them. Callers use `instanceof`,
 * never string matching. `code` is the HTTP error code of the design; `exitCode` the CLI's.
 */

export type ErrorCode =
  | "invalid_request"
  | "not_found"
  | "conflict"
  | "forbidden"
  | "engine_unavailable"
  | "blocked"
  | "changes_found"
  | "operation_failed"
  | "canceled"
  | "timed_out"
  | "plan_changed"
  | "rate_limited"
  | "store_busy"
  | "store_unavailable"
  | "internal";

export class DeployerError extends Error {
  readonly code: ErrorCode = "internal";
  readonly exitCode: number = 1;
  /** Structured detail safe to show a caller (never engine output or secrets). */
  readonly details?: unknown;
  constructor(message: string, options?: { cause?: unknown; details?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.details = options?.details;
  }
}

/** A bad environment file, flag or request value. Nothing ran. */
export class ConfigError extends DeployerError {
  override readonly code = "invalid_request";
  override readonly exitCode = 2;
}

/** The named stack, deployment or job does not exist. */
export class NotFoundError extends DeployerError {
  override readonly code = "not_found";
  override readonly exitCode = 2;
}

/** Another operation holds the stack (a lease held elsewhere, or Pulumi's own concurrent update). */
export class ConflictError extends DeployerError {
  override readonly code = "conflict";
  override readonly exitCode: number = 1;
}

/**
 * The stack takes no mutation now: blocked after an interrupted job until an admin recovers it, or a
 * job of it awaits approval. 409 over HTTP; the CLI exits 4 (blocked).
 */
export class StackBlockedError extends ConflictError {
  override readonly exitCode = 4;
}

/**
 * The database is locked by another process (SQLite's SQLITE_BUSY, past the store's short busy
 * timeout): nothing was written; retry. 503 with Retry-After over HTTP.
 */
export class StoreBusyError extends DeployerError {
  override readonly code = "store_busy";
  override readonly exitCode = 1;
}

/** Whether an error is SQLite refusing a write because another connection holds the lock. */
export function isStoreBusy(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === "string" && (code.startsWith("SQLITE_BUSY") || code.startsWith("SQLITE_LOCKED"));
}

/**
 * The database cannot be reached (a network store: the server is down, restarting or refusing
 * connections, the connection was cut). Whether anything was written is unknown only for the
 * statement in flight; retry later. The message names the server without its credentials.
 */
export class StoreUnavailableError extends DeployerError {
  override readonly code = "store_unavailable";
  override readonly exitCode = 1;
}

/** Whether an error is the store being unreachable (`StoreUnavailableError`). */
export function isStoreUnavailable(err: unknown): boolean {
  return err instanceof StoreUnavailableError;
}

/**
 * A job's final outcome could not be written to the database after every retry; it was kept on disk
 * (`details.file`) and is applied to the job before anything counts it as interrupted (store/outcomes.ts).
 */
export class OutcomeKeptError extends DeployerError {}

/** A queue cap (per stack, per principal) is reached: 429 over HTTP, naming the cap. Nothing was queued. */
export class QueueFullError extends DeployerError {
  override readonly code = "rate_limited";
  override readonly exitCode = 1;
}

/** The pulumi CLI is missing or too old, or the engine cannot run here. */
export class EngineUnavailableError extends DeployerError {
  override readonly code = "engine_unavailable";
  override readonly exitCode = 5;
}

/** A review gate, policy, image scan or approval rule stopped the operation before it changed anything. */
export class GateError extends DeployerError {
  override readonly code = "blocked";
  override readonly exitCode = 4;
}

/** Drift or changes were found where none were expected. */
export class ChangesFoundError extends DeployerError {
  override readonly code = "changes_found";
  override readonly exitCode = 3;
}

/** The engine ran and the operation failed (a failed step, failed verification, preflight mismatch). */
export class OperationFailedError extends DeployerError {
  override readonly code = "operation_failed";
  override readonly exitCode = 1;
}

export class CanceledError extends DeployerError {
  override readonly code = "canceled";
  override readonly exitCode = 1;
}

export class TimedOutError extends DeployerError {
  override readonly code = "timed_out";
  override readonly exitCode = 1;
}

/** An approved change no longer matches what the fresh preview would apply. */
export class PlanChangedError extends DeployerError {
  override readonly code = "plan_changed";
  override readonly exitCode = 4;
}

/** Coerces anything thrown into a DeployerError, keeping the original as `cause`. */
export function toDeployerError(err: unknown): DeployerError {
  if (err instanceof DeployerError) return err;
  if (err instanceof Error) return new DeployerError(err.message, { cause: err });
  return new DeployerError(String(err), { cause: err });
}
