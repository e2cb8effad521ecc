/**
 * `npm run engine:install`: provides the pulumi CLI, its Node.js language host and the dynamic
 * provider launcher the pulumi engine needs, and prints (as its last line on stdout) the directory
 * that holds `pulumi`.
 *
 * - A `pulumi` on PATH whose version is supported, with `pulumi-language-nodejs` beside it, is used
 *   as it is.
 * - Otherwise the CLI is built with `go build` from the Go module proxy at the pinned version
 *   (tools/pulumi/go.mod), with the deployer's own language host (tools/pulumi/language-nodejs),
 *   into the tools cache (`DEPLOYER_TOOLS_DIR`, default ~/.cache/pulumi-aws-deployer). A second run
 *   finds the build's stamp and reuses it.
 *
 * Progress goes to stderr. Exit 0 with the directory, or 1 with the reason.
 */
import { execFileSync, spawnSync } from "child_process";
import { createHash } from "crypto";
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "fs";
import * as path from "path";
import { findPulumiOnPath } from "../automation/engine/pulumi-cli";
import { MIN_PULUMI_VERSION } from "../automation/engine/pulumi-errors";
import { PINNED_PULUMI_VERSION, pulumiBinDir } from "../automation/tools";

const MODULE_DIR = path.join(__dirname, "pulumi");
const MODULE_FILES = ["go.mod", "go.sum", "tools.go", "language-nodejs/main.go"];

/**
 * The launcher the engine runs for a dynamic provider (`pulumi-resource-pulumi-nodejs`): node on
 * @pulumi/pulumi's dynamic-provider entry point, resolved from the program's directory.
 */
const DYNAMIC_PROVIDER_LAUNCHER = `#!/bin/sh
# Runs the dynamic providers of a Node.js Pulumi program (written by npm run engine:install).
script=$(node -e "process.stdout.write(require.resolve('@pulumi/pulumi/cmd/dynamic-provider'))") || exit 1
exec node "$script" "$@"
`;

function log(message: string): void {
  process.stderr.write(`engine:install: ${message}\n`);
}

function compareVersions(a: string, b: string): number {
  const pa = a.replace(/^v/, "").split(/[.-]/).map((x) => Number.parseInt(x, 10) || 0);
  const pb = b.replace(/^v/, "").split(/[.-]/).map((x) => Number.parseInt(x, 10) || 0);
  for (let i = 0; i < 3; i++) if ((pa[i] ?? 0) !== (pb[i] ?? 0)) return (pa[i] ?? 0) - (pb[i] ?? 0);
  return 0;
}

function versionOf(pulumi: string): string | undefined {
  const res = spawnSync(pulumi, ["version"], { encoding: "utf8", env: { ...process.env, PULUMI_SKIP_UPDATE_CHECK: "true" } });
  return res.status === 0 ? res.stdout.trim().replace(/^v/, "") : undefined;
}

/** A supported CLI already on PATH, with its language host beside it or on PATH. */
function usableOnPath(): string | undefined {
  const found = findPulumiOnPath(process.env);
  if (found === undefined || found.startsWith(pulumiBinDir())) return undefined;
  const version = versionOf(found);
  if (version === undefined || compareVersions(version, MIN_PULUMI_VERSION) < 0) {
    log(`${found} is version ${version ?? "unknown"}; ${MIN_PULUMI_VERSION} or newer is needed, building ${PINNED_PULUMI_VERSION} instead`);
    return undefined;
  }
  const dir = path.dirname(found);
  if (!existsSync(path.join(dir, "pulumi-language-nodejs")) && findOnPath("pulumi-language-nodejs") === undefined) {
    log(`${found} has no pulumi-language-nodejs beside it or on PATH; building ${PINNED_PULUMI_VERSION} instead`);
    return undefined;
  }
  log(`using ${found} (version ${version})`);
  return dir;
}

function findOnPath(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? "").split(path.delimiter)) {
    if (dir !== "" && existsSync(path.join(dir, name))) return path.join(dir, name);
  }
  return undefined;
}

/** What the build depends on: the pinned module, the language host's source and the launcher. */
function sourceHash(): string {
  const h = createHash("sha256");
  for (const f of MODULE_FILES) h.update(f).update(readFileSync(path.join(MODULE_DIR, f)));
  h.update(DYNAMIC_PROVIDER_LAUNCHER);
  return h.digest("hex");
}

interface Stamp {
  readonly version: string;
  readonly source: string;
}

function readStamp(file: string): Stamp | undefined {
  try {
    return JSON.parse(readFileSync(file, "utf8")) as Stamp;
  } catch {
    return undefined;
  }
}

function goAvailable(): boolean {
  return spawnSync("go", ["version"], { encoding: "utf8" }).status === 0;
}

function build(binDir: string, source: string): void {
  if (!goAvailable()) throw new Error("no `go` on PATH: install Go 1.25 or newer, or install the pulumi CLI from https://www.pulumi.com/docs/install/");
  const root = path.dirname(binDir);
  const staging = `${binDir}.building-${process.pid}`;
  rmSync(staging, { recursive: true, force: true });
  mkdirSync(staging, { recursive: true });
  const ldflags = `-X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v${PINNED_PULUMI_VERSION}`;
  const goEnv = { ...process.env, GOFLAGS: "-mod=readonly -buildvcs=false" };
  const started = Date.now();
  log(`building pulumi v${PINNED_PULUMI_VERSION} from the Go module proxy (the first build takes several minutes)`);
  execFileSync("go", ["build", "-ldflags", ldflags, "-o", path.join(staging, "pulumi"), "github.com/pulumi/pulumi/pkg/v3/cmd/pulumi"], { cwd: MODULE_DIR, env: goEnv, stdio: ["ignore", "inherit", "inherit"] });
  log("building pulumi-language-nodejs (the deployer's own language host)");
  execFileSync("go", ["build", "-ldflags", ldflags, "-o", path.join(staging, "pulumi-language-nodejs"), "./language-nodejs"], { cwd: MODULE_DIR, env: goEnv, stdio: ["ignore", "inherit", "inherit"] });
  const launcher = path.join(staging, "pulumi-resource-pulumi-nodejs");
  writeFileSync(launcher, DYNAMIC_PROVIDER_LAUNCHER);
  chmodSync(launcher, 0o755);
  // Swap the finished build in whole: a concurrent reader never sees half of one.
  mkdirSync(root, { recursive: true });
  const old = `${binDir}.old-${process.pid}`;
  if (existsSync(binDir)) renameSync(binDir, old);
  renameSync(staging, binDir);
  rmSync(old, { recursive: true, force: true });
  writeFileSync(path.join(root, "stamp.json"), JSON.stringify({ version: PINNED_PULUMI_VERSION, source } satisfies Stamp));
  log(`built in ${Math.round((Date.now() - started) / 1000)} s`);
}

function main(): number {
  try {
    if (process.env.DEPLOYER_ENGINE_BUILD !== "1") {
      const onPath = usableOnPath();
      if (onPath !== undefined) {
        process.stdout.write(`${onPath}\n`);
        return 0;
      }
    }
    const binDir = pulumiBinDir();
    const source = sourceHash();
    const stamp = readStamp(path.join(path.dirname(binDir), "stamp.json"));
    const reusable = stamp?.version === PINNED_PULUMI_VERSION && stamp.source === source && versionOf(path.join(binDir, "pulumi")) === PINNED_PULUMI_VERSION;
    if (reusable) log(`reusing the build in ${binDir}`);
    else build(binDir, source);
    process.stdout.write(`${binDir}\n`);
    return 0;
  } catch (err) {
    log(`failed: ${err instanceof Error ? err.message : String(err)}`);
    return 1;
  }
}

process.exitCode = main();
