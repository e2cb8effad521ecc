/**
 * `npm run moto:install`: a Python virtual environment at `motoDir()` with a pinned `moto[server]`,
 * the AWS API server the tests point the deployer's own AWS calls at (STS, ECR, ECS, ELBv2, S3, KMS).
 *
 * Idempotent: a stamp file in the venv records the pinned version once the install has succeeded, and
 * a later run that finds the stamp and a working `moto_server` does nothing. Progress goes to stderr;
 * the last line on stdout is the path of `moto_server`.
 *
 * `DEPLOYER_PYTHON` names the interpreter that creates the venv (default `python3`).
 */
import { spawnSync } from "child_process";
import { existsSync, readFileSync, rmSync, writeFileSync } from "fs";
import * as path from "path";
import { motoDir } from "../automation/tools";

/** The moto release the tests are written against. Bump it together with the tests in test/automation/moto-*.spec.ts. */
export const PINNED_MOTO_VERSION = "5.2.5";

const STAMP = ".deployer-moto-version";

function stderrLog(line: string): void {
  process.stderr.write(`moto:install: ${line}\n`);
}

/** Runs a command with its output on stderr (stdout is kept for the result line); throws with its exit status. */
function run(command: string, args: readonly string[]): void {
  const res = spawnSync(command, args, { stdio: ["ignore", process.stderr, process.stderr] });
  if (res.error) throw new Error(`${command} could not be started: ${res.error.message}`);
  if (res.status !== 0) throw new Error(`${command} ${args.join(" ")} exited with ${res.status ?? res.signal}`);
}

/** True when the venv's `moto_server` exists and its Python imports the pinned moto with its server extras. */
function serverWorks(dir: string, server: string): boolean {
  if (!existsSync(server)) return false;
  const res = spawnSync(path.join(dir, "bin", "python"), ["-c", "import moto, moto.server; print(moto.__version__)"], { encoding: "utf8" });
  return res.status === 0 && res.stdout.trim() === PINNED_MOTO_VERSION;
}

/** Installs (or finds installed) moto; returns the path of `moto_server`. `log` gets the progress lines (default: stderr). */
export function install(env: NodeJS.ProcessEnv = process.env, log: (line: string) => void = stderrLog): string {
  const dir = motoDir(env);
  const server = path.join(dir, "bin", "moto_server");
  const stamp = path.join(dir, STAMP);
  const stamped = existsSync(stamp) ? readFileSync(stamp, "utf8").trim() : undefined;
  if (stamped === PINNED_MOTO_VERSION && serverWorks(dir, server)) {
    log(`moto ${PINNED_MOTO_VERSION} already installed in ${dir}`);
    return server;
  }

  const python = env.DEPLOYER_PYTHON || "python3";
  // A venv made for another version, or left half-built by an interrupted run, is rebuilt from scratch.
  if (existsSync(dir)) {
    log(`removing ${dir} (${stamped === undefined ? "no complete install" : `moto ${stamped}`})`);
    rmSync(dir, { recursive: true, force: true });
  }
  log(`creating a virtual environment in ${dir} with ${python}`);
  run(python, ["-m", "venv", dir]);
  const pip = path.join(dir, "bin", "pip");
  log(`installing moto[server]==${PINNED_MOTO_VERSION}`);
  run(pip, ["install", "--disable-pip-version-check", "--no-input", "--quiet", `moto[server]==${PINNED_MOTO_VERSION}`]);
  if (!serverWorks(dir, server)) throw new Error(`${server} does not run after the install`);
  writeFileSync(stamp, `${PINNED_MOTO_VERSION}\n`);
  log(`moto ${PINNED_MOTO_VERSION} installed`);
  return server;
}

if (require.main === module) {
  try {
    process.stdout.write(`${install()}\n`);
  } catch (err) {
    stderrLog(err instanceof Error ? err.message : String(err));
    process.exitCode = 1;
  }
}
