/**
 * Sorts the Automation API's failures into the deployer's errors (automation/errors.ts). The SDK
 * already sorts the CLI's exit into `CommandError` subclasses (`createCommandError`); this adds what
 * the deployer needs on top: a missing or too old CLI, a canceled operation, changes where none were
 * expected, and a short message that never carries engine noise or secret values.
 */
import type { CommandError } from "@pulumi/pulumi/automation";
import { automationApi } from "./pulumi-sdk";
import {
  CanceledError,
  ChangesFoundError,
  ConflictError,
  DeployerError,
  EngineUnavailableError,
  NotFoundError,
  OperationFailedError,
} from "../errors";
import { hasChanges, type ChangeSummary } from "./port";

/**
 * The oldest CLI the engine runs with. Everything it uses (`config set-all`, `refresh --preview-only`,
 * `--event-log` with detailed diffs, `stack history --json`) predates it; older CLIs are untested.
 */
export const MIN_PULUMI_VERSION = "3.100.0";

export const INSTALL_URL = "https://www.pulumi.com/docs/install/";

/** The one message for a CLI that cannot be found. */
export function cliMissingMessage(): string {
  return `the pulumi CLI is not installed or not on PATH: install it from ${INSTALL_URL} (version >= ${MIN_PULUMI_VERSION}), or use an environment with \`engine: offline\``;
}

export function cliTooOldMessage(found: string): string {
  return `the pulumi CLI on PATH is version ${found}; version >= ${MIN_PULUMI_VERSION} is required: upgrade it from ${INSTALL_URL}, or use an environment with \`engine: offline\``;
}

export interface FailureContext {
  /** preview, up, refresh, drift, destroy, outputs, history, cancel. */
  readonly operation: string;
  readonly stack: string;
  /** The backend URL, to say where a stack was looked for. */
  readonly backend: string;
  /** The caller's signal fired: whatever the CLI said, the operation was canceled. */
  readonly aborted?: boolean;
  readonly expectNoChanges?: boolean;
  /** What the operation reported before failing (events), to tell "changes found" apart. */
  readonly changes?: ChangeSummary;
  /** Error diagnostics the engine reported while the operation ran, already redacted. */
  readonly errors?: readonly string[];
  /** Replaces secret values; applied to everything that goes into a message. */
  readonly redact: (text: string) => string;
}

interface CommandResultLike {
  readonly stdout?: string;
  readonly stderr?: string;
  readonly code?: number;
  readonly err?: { readonly code?: unknown; readonly stderr?: unknown; readonly stdout?: unknown; readonly exitCode?: unknown };
}

/** The SDK keeps the CLI's result on a private field; read it structurally. */
function commandResultOf(err: CommandError): CommandResultLike {
  return (err as unknown as { commandResult?: CommandResultLike }).commandResult ?? {};
}

/** True when spawning the CLI failed because there is no such executable. */
export function isSpawnNotFound(err: unknown): boolean {
  if (err instanceof automationApi().CommandError) return commandResultOf(err).err?.code === "ENOENT";
  return (err as { code?: unknown } | null)?.code === "ENOENT";
}

/** The CLI's own stderr when the SDK kept it apart; else the text the SDK recorded as stderr. */
function stderrOf(err: CommandError): string {
  const result = commandResultOf(err);
  const raw = result.err?.stderr;
  return typeof raw === "string" && raw.length > 0 ? raw : result.stderr ?? "";
}

/**
 * The CLI's stdout (where its Diagnostics are). The SDK's own runner keeps it on the execa error
 * (`err.stdout`) and leaves `commandResult.stdout` empty on failure; the engine's runner fills both.
 */
function stdoutOf(err: CommandError): string {
  const result = commandResultOf(err);
  if (result.stdout) return result.stdout;
  const raw = result.err?.stdout;
  return typeof raw === "string" ? raw : "";
}

function exitCodeOf(err: CommandError): number | undefined {
  const result = commandResultOf(err);
  const code = result.err?.exitCode ?? result.code;
  return typeof code === "number" && code >= 0 ? code : undefined;
}

const ANSI = /\x1b\[[0-9;]*[A-Za-z]/g;
/** Error lines that only say that something failed, not what. */
const GENERIC = /^(update|preview|refresh|destroy|import) failed\.?$|^an error occurred|^one or more errors occurred/i;
// Older CLIs: "no changes were expected but changes occurred"; from about 3.230: "no changes were
// expected for update but changes were proposed".
const NO_CHANGES_EXPECTED = /no changes were expected (for \w+ )?but changes (occurred|were proposed)/i;
/** @pulumi/pulumi's line before a program's own exception: it says only that the program threw. */
const UNHANDLED = /^Running program '[^']*' failed with an unhandled exception:?$/i;

/**
 * The line of an engine error that says what went wrong: past the runner's "failed with an unhandled
 * exception" preamble, the program's own message (`Error: …`), without its stack.
 */
export function meaningfulLine(message: string): string {
  const lines = message.replace(ANSI, "").split(/\r?\n/).map((l) => l.trim()).filter((l) => l !== "");
  const start = lines.length > 1 && UNHANDLED.test(lines[0].replace(/^error:\s*/i, "")) ? 1 : 0;
  return (lines[start] ?? "").replace(/^error:\s*/i, "");
}

/**
 * The first meaningful `error:` lines of engine output, each with its continuation lines (`* …`),
 * generic "update failed" lines dropped. Undefined when there are none.
 */
export function firstErrorLines(text: string, maxLines = 4, maxChars = 600): string | undefined {
  const lines = text.replace(ANSI, "").split(/\r?\n/);
  const found: string[] = [];
  for (let i = 0; i < lines.length && found.length < maxLines; i++) {
    const m = /^\s*error:\s*(.*)$/i.exec(lines[i]);
    if (!m) continue;
    let message = m[1].trim();
    // The runner's preamble says only that the program threw; its message is on the next line.
    if (UNHANDLED.test(message) && i + 1 < lines.length) message = lines[++i].trim();
    if (message === "" || GENERIC.test(message)) continue;
    found.push(message);
    // Continuation lines: "1 error occurred:\n\t* creating bucket: AccessDenied".
    for (let j = i + 1; j < lines.length && found.length < maxLines; j++) {
      const next = lines[j].trim();
      if (next === "" || /^\s*(error|warning|info):/i.test(lines[j]) || !/^[*-]|^\s/.test(lines[j])) break;
      found.push(next);
      i = j;
    }
  }
  if (found.length === 0) return undefined;
  const joined = found.join("; ");
  return joined.length > maxChars ? `${joined.slice(0, maxChars - 1)}…` : joined;
}

function shortDetail(err: CommandError, ctx: FailureContext): string {
  const fromEvents = ctx.errors?.map(meaningfulLine).find((e) => e !== "" && !GENERIC.test(e));
  if (fromEvents) return truncate(ctx.redact(fromEvents), 600);
  // Redacted before they are cut to length, so no part of a secret survives a cut.
  const fromStderr = firstErrorLines(ctx.redact(stderrOf(err)));
  if (fromStderr) return fromStderr;
  const fromStdout = firstErrorLines(ctx.redact(stdoutOf(err)));
  if (fromStdout) return fromStdout;
  const code = exitCodeOf(err);
  return code === undefined ? "the pulumi CLI failed" : `the pulumi CLI exited with code ${code}`;
}

function truncate(s: string, max: number): string {
  return s.length > max ? `${s.slice(0, max - 1)}…` : s;
}

/**
 * The raw failure, scrubbed and bounded, kept as `cause` for whoever debugs; the raw SDK error (whose
 * message embeds the CLI's whole output and arguments) is never attached.
 */
function scrubbedCause(err: unknown, ctx: FailureContext): Error {
  const text = err instanceof automationApi().CommandError ? `${stderrOf(err)}\n${stdoutOf(err)}` : err instanceof Error ? err.message : String(err);
  // Redact first: a cut through a secret would leave half of it unrecognisable.
  const redacted = ctx.redact(text.replace(ANSI, "").trim());
  const cause = new Error(redacted.length > 4000 ? `…${redacted.slice(-4000)}` : redacted);
  cause.name = err instanceof Error ? err.name : "Error";
  return cause;
}

/**
 * With expectNoChanges, the CLI fails when it finds changes: its own words say so, or (older CLIs)
 * changes were reported and nothing else went wrong.
 */
function changesWereTheFailure(err: CommandError, ctx: FailureContext): boolean {
  if (NO_CHANGES_EXPECTED.test(stderrOf(err)) || ctx.errors?.some((e) => NO_CHANGES_EXPECTED.test(e))) return true;
  const otherErrors = (ctx.errors ?? []).filter((e) => !GENERIC.test(e.replace(/^error:\s*/i, "").trim()));
  return otherErrors.length === 0 && ctx.changes !== undefined && hasChanges(ctx.changes);
}

/** Sorts anything an Automation API call threw into a DeployerError. */
export function toPulumiError(err: unknown, ctx: FailureContext): DeployerError {
  if (err instanceof DeployerError) return err;
  const cause = scrubbedCause(err, ctx);
  const where = ctx.redact(ctx.backend);
  if (ctx.aborted) return new CanceledError(`${ctx.operation} of ${ctx.stack} was canceled`, { cause });
  const { ConcurrentUpdateError, StackNotFoundError, StackAlreadyExistsError } = automationApi();
  if (err instanceof ConcurrentUpdateError) {
    return new ConflictError(`another update is running on ${ctx.stack}`, { cause, details: { stack: ctx.stack } });
  }
  if (err instanceof StackNotFoundError) {
    return new NotFoundError(`stack ${ctx.stack} does not exist in ${where}`, { cause, details: { stack: ctx.stack } });
  }
  if (err instanceof StackAlreadyExistsError) {
    return new ConflictError(`stack ${ctx.stack} already exists in ${where}`, { cause, details: { stack: ctx.stack } });
  }
  if (err instanceof automationApi().CommandError) {
    if (isSpawnNotFound(err)) return new EngineUnavailableError(cliMissingMessage(), { cause });
    if (ctx.expectNoChanges && changesWereTheFailure(err, ctx)) {
      return new ChangesFoundError(`${ctx.operation} of ${ctx.stack} found changes where none were expected`, { cause, details: { changes: ctx.changes } });
    }
    return new OperationFailedError(`${ctx.operation} of ${ctx.stack} failed: ${shortDetail(err, ctx)}`, { cause, details: { exitCode: exitCodeOf(err) } });
  }
  if (isSpawnNotFound(err)) return new EngineUnavailableError(cliMissingMessage(), { cause });
  const message = err instanceof Error ? err.message : String(err);
  return new DeployerError(`${ctx.operation} of ${ctx.stack}: ${truncate(ctx.redact(message.split(/\r?\n/)[0]), 300)}`, { cause });
}

/**
 * Sorts a failure to locate the CLI: not there (or not runnable), or a version the SDK refuses.
 * `PulumiCommand.get` throws a `CommandError` when `pulumi version` cannot run, and a plain `Error`
 * when the version check fails.
 */
/** `pulumi version` ran and failed (`detail`: its first error lines, redacted, or how it ended). */
export function versionFailedError(detail: string): EngineUnavailableError {
  return new EngineUnavailableError(
    `the pulumi CLI on PATH could not run \`pulumi version\` (${detail}): reinstall it from ${INSTALL_URL} (version >= ${MIN_PULUMI_VERSION}), or use an environment with \`engine: offline\``,
  );
}

export function toCliError(err: unknown, redact: (text: string) => string): DeployerError {
  if (err instanceof DeployerError) return err;
  if (isSpawnNotFound(err)) return new EngineUnavailableError(cliMissingMessage());
  if (err instanceof automationApi().CommandError) {
    return versionFailedError(firstErrorLines(redact(stderrOf(err))) ?? (exitCodeOf(err) === undefined ? "it failed" : `it exited with code ${exitCodeOf(err)}`));
  }
  const message = err instanceof Error ? err.message : String(err);
  return new EngineUnavailableError(
    `the pulumi CLI on PATH failed the version check (${truncate(redact(message.split(/\r?\n/)[0]), 300)}): version >= ${MIN_PULUMI_VERSION} is required, from ${INSTALL_URL}`,
  );
}
