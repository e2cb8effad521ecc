/**
 * What the real-engine suites share: the CLI check (skip with one line on a developer machine
 * without it, fail under CI=true), environments of the stand-in program (test/e2e/program), the
 * variables the engine runs with, and looks at the backend and at processes.
 */
import { existsSync, readdirSync, readFileSync, rmSync } from "fs";
import * as path from "path";
import { parseEnvironment, REPO_ROOT, type Environment } from "../../automation/environment";
import { findPulumi } from "../../automation/engine/pulumi-cli";
import { procStat } from "../../automation/jobs/lease";

export const PROGRAM_DIR = path.join(REPO_ROOT, "test", "e2e", "program");
export const PROJECT = "pulumi-aws-deployer";
export const PASSPHRASE = "e2e-only-passphrase";

/** Skips the suite when there is no pulumi CLI, and fails it instead when CI=true. */
export function requirePulumi(ctx: Mocha.Context): string {
  const found = findPulumi();
  if (found !== undefined) return found;
  const why = "no pulumi CLI on PATH or in the tools cache (run `npm run engine:install`)";
  if (process.env.CI === "true") throw new Error(`the real-engine suites must run in CI, but there is ${why}`);
  console.log(`    skipped: ${why}`);
  ctx.skip();
}

/** The variables the engine runs the CLI with: never a plugin download, a PULUMI_HOME of its own. */
export function engineEnv(work: string, extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  return {
    ...process.env,
    PULUMI_CONFIG_PASSPHRASE: PASSPHRASE,
    PULUMI_HOME: path.join(work, "pulumi-home"),
    PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION: "true",
    PULUMI_SKIP_UPDATE_CHECK: "true",
    ...extra,
  };
}

export interface StandInOptions {
  readonly backend: string;
  /** The file the program writes (its `output` resource). */
  readonly output: string;
  readonly secretsProvider?: string;
  readonly accountId?: string;
  /** More tags: E2EMarkers, E2EDelayMs, E2EThrow (see the program). */
  readonly tags?: Record<string, string>;
  readonly engine?: "pulumi" | "offline";
  readonly deploy?: string;
  /** The VPC range; environments of one account in one directory must not overlap. */
  readonly cidr?: string;
}

/** The environment file of a stack of the stand-in program. */
export function standInYaml(o: StandInOptions): string {
  const tags = { Owner: "e2e", E2EOutput: o.output, ...(o.tags ?? {}) };
  return `
engine: ${o.engine ?? "pulumi"}
program: test/e2e/program
backend: ${o.backend}
secretsProvider: ${o.secretsProvider ?? "passphrase"}
aws: { region: us-east-1, accountId: "${o.accountId ?? "000000000000"}" }
network: { cidr: ${o.cidr ?? "10.99.0.0/16"}, availabilityZones: 2, natGateways: none }
app:
  name: web
  image: 000000000000.dkr.ecr.us-east-1.amazonaws.com/web
  port: 8080
  cpu: 256
  memory: 512
  desiredCount: 1
  autoscaling: { min: 1, max: 1, cpuTarget: 70 }
  healthCheck: { path: /health }
${o.deploy ?? ""}
tags: ${JSON.stringify(tags)}
`;
}

export function standIn(name: string, o: StandInOptions): Environment {
  return parseEnvironment(name, standInYaml(o), `${name}.yaml`);
}

let stackCount = 0;
/**
 * A stack name no earlier run used (the stand-in's stack files live beside its Pulumi.yaml), short
 * enough for the app's load balancer name: at most 16 characters.
 */
export function uniqueStack(prefix: string): string {
  const suffix = `${(process.pid % 1296).toString(36)}${Math.floor(Math.random() * 46656).toString(36)}${(stackCount++).toString(36)}`;
  return `${prefix.slice(0, 16 - suffix.length)}${suffix}`;
}

/** Removes the stack settings files (Pulumi.<stack>.yaml) a run wrote beside the program. */
export function removeStackFiles(stacks: readonly string[]): void {
  for (const s of stacks) rmSync(path.join(PROGRAM_DIR, `Pulumi.${s}.yaml`), { force: true });
}

export function stackSettingsText(stack: string): string {
  return readFileSync(path.join(PROGRAM_DIR, `Pulumi.${stack}.yaml`), "utf8");
}

/** The lock files a file:// backend holds for the stack. */
export function lockFiles(stateDir: string, stack: string): string[] {
  const dir = path.join(stateDir, ".pulumi", "locks", "organization", PROJECT, stack);
  return existsSync(dir) ? readdirSync(dir) : [];
}

/** The stack's checkpoint in a file:// backend (the latest state). */
export function checkpoint(stateDir: string, stack: string): { checkpoint: { latest?: { resources?: { urn: string }[]; pending_operations?: unknown[] } } } {
  const file = path.join(stateDir, ".pulumi", "stacks", PROJECT, `${stack}.json`);
  return JSON.parse(readFileSync(file, "utf8"));
}

/** Whether a process runs (a zombie, dead but not yet reaped, does not). */
export function isRunning(pid: number): boolean {
  const state = procStat(pid)?.state;
  return state !== undefined && state !== "Z" && state !== "X";
}

/** Pids of the processes in a process group. */
export function groupMembers(pgid: number): number[] {
  const out: number[] = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (Number(fields[2]) === pgid && fields[0] !== "Z") out.push(Number(name));
    } catch {
      // gone
    }
  }
  return out;
}

/** Resolves when `predicate` holds, checking on every engine event (no sleeps). */
export function when<T>(subscribe: (listener: (e: T) => void) => void, predicate: (e: T) => boolean): Promise<T> {
  return new Promise((resolve) => subscribe((e) => predicate(e) && resolve(e)));
}
