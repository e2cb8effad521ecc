/**
 * Finding the pulumi CLI. A PATH scan first, because it answers in microseconds when the CLI is
 * missing (the common case on development and CI machines); `PulumiCommand.get` (which runs
 * `pulumi version` and checks it) only when there is something to run. Readiness asks
 * `checkPulumi`, which runs `pulumi version` itself: loading the SDK for it would cost the service
 * half a second and about 70 MB before it has run anything.
 */
import { execFile } from "child_process";
import { accessSync, constants, statSync } from "fs";
import * as path from "path";
import { promisify } from "util";
import type { PulumiCommand } from "@pulumi/pulumi/automation";
import * as semver from "semver";
import { automationApi } from "./pulumi-sdk";
import { EngineUnavailableError } from "../errors";
import { cliMissingMessage, cliTooOldMessage, firstErrorLines, MIN_PULUMI_VERSION, versionFailedError } from "./pulumi-errors";
import { pulumiBinDir } from "../tools";

/** What the engine needs of a located CLI. */
export type PulumiCommandLike = Pick<PulumiCommand, "command" | "version">;

const SKIP_VERSION_CHECK_VAR = "PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK";

/** The absolute path of the `pulumi` executable on `env.PATH`, or undefined. */
export function findPulumiOnPath(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const names = process.platform === "win32" ? ["pulumi.exe", "pulumi.cmd", "pulumi"] : ["pulumi"];
  for (const dir of (env.PATH ?? "").split(path.delimiter)) {
    if (dir === "") continue;
    for (const name of names) {
      const candidate = path.resolve(dir, name);
      try {
        if (!statSync(candidate).isFile()) continue;
        accessSync(candidate, constants.X_OK);
        return candidate;
      } catch {
        // not here
      }
    }
  }
  return undefined;
}

/**
 * The CLI to run: the one on `env.PATH`, else the one `npm run engine:install` built into the tools
 * cache (so `npm test`, `npm start` and the CLI need no PATH change after it).
 */
export function findPulumi(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const onPath = findPulumiOnPath(env);
  if (onPath !== undefined) return onPath;
  const built = path.join(pulumiBinDir(env), "pulumi");
  try {
    accessSync(built, constants.X_OK);
    return built;
  } catch {
    return undefined;
  }
}

/**
 * The CLI `findPulumi` finds, checked by the SDK (`skipVersionCheck: false`) and against
 * MIN_PULUMI_VERSION. Throws EngineUnavailableError when there is none or it is too old; other
 * failures of `pulumi version` propagate for `toCliError` to sort.
 */
export async function locatePulumi(env: NodeJS.ProcessEnv = process.env): Promise<PulumiCommand> {
  const found = findPulumi(env);
  if (found === undefined) throw new EngineUnavailableError(cliMissingMessage());
  // `root` makes the SDK run this exact binary and put its directory (with the bundled language
  // plugins) first on the child's PATH; it expects `<root>/bin/pulumi`.
  const binDir = path.dirname(found);
  const root = process.platform !== "win32" && path.basename(binDir) === "bin" ? path.dirname(binDir) : undefined;
  const command = await automationApi().PulumiCommand.get({ root, skipVersionCheck: false });
  const skip = Boolean(env[SKIP_VERSION_CHECK_VAR] ?? process.env[SKIP_VERSION_CHECK_VAR]);
  // SemVer.compare takes a string and parses it with the SDK's own semver.
  if (!skip && command.version !== null && command.version.compare(MIN_PULUMI_VERSION) < 0) {
    throw new EngineUnavailableError(cliTooOldMessage(command.version.format()));
  }
  return command;
}

/** How long `pulumi version` may take before the CLI counts as unusable. */
const VERSION_TIMEOUT_MS = 30_000;

/**
 * What `locatePulumi` checks, without the SDK: the CLI `findPulumi` finds answers `pulumi version`
 * with a version of at least MIN_PULUMI_VERSION (one it cannot parse is left for the SDK to judge
 * when something runs). Throws EngineUnavailableError, its message redacted with `redact`.
 */
export async function checkPulumi(env: NodeJS.ProcessEnv = process.env, redact: (text: string) => string = (t) => t): Promise<void> {
  const found = findPulumi(env);
  if (found === undefined) throw new EngineUnavailableError(cliMissingMessage());
  let stdout: string;
  try {
    ({ stdout } = await promisify(execFile)(found, ["version"], { env: { ...env, PULUMI_SKIP_UPDATE_CHECK: "true" }, timeout: VERSION_TIMEOUT_MS }));
  } catch (err) {
    const e = err as { code?: unknown; stderr?: unknown; killed?: boolean };
    if (e.code === "ENOENT") throw new EngineUnavailableError(cliMissingMessage());
    const stderr = typeof e.stderr === "string" ? firstErrorLines(redact(e.stderr)) : undefined;
    throw versionFailedError(stderr ?? (e.killed ? `no answer within ${VERSION_TIMEOUT_MS / 1000} s` : typeof e.code === "number" ? `it exited with code ${e.code}` : "it failed"));
  }
  const version = semver.parse(stdout.trim());
  const skip = Boolean(env[SKIP_VERSION_CHECK_VAR] ?? process.env[SKIP_VERSION_CHECK_VAR]);
  if (!skip && version !== null && semver.lt(version, MIN_PULUMI_VERSION)) throw new EngineUnavailableError(cliTooOldMessage(version.format()));
}
