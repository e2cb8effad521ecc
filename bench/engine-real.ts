/**
 * engine.real: what the deployer adds to the pulumi CLI itself. The stand-in program
 * (test/e2e/program, a dynamic provider, no cloud) on a file:// backend, one stack, moto for the
 * deployer's own AWS calls (the account preflight). Alternating, in the same run:
 *
 * - a no-change preview: `npm run preview` (the deployer's CLI), `POST …/previews` on the service (to
 *   the job's `end` event), and `pulumi preview` run directly on the same stack and backend;
 * - a one-resource up (a new version changes one file): `npm run up -- --yes`, `POST …/deployments`,
 *   and `pulumi up --yes` directly (its own preview, then the update; its config set beforehand with
 *   `pulumi config set`, untimed).
 *
 * Budget (DESIGN): the deployer adds at most 15 % or 500 ms, whichever is larger, to the CLI alone.
 * Also the program's start-up as the language host runs it (defect 9 of the issue): node requiring
 * the program under the repository's register hook (SWC, the repo's tsconfig), as Pulumi.yaml's
 * nodeargs make the engine run it, against Pulumi's own TypeScript path (ts-node with the
 * TypeScript compiler, transpile-only).
 */
import { spawn } from "child_process";
import { writeFileSync } from "fs";
import * as path from "path";
import { findPulumi } from "../automation/engine/pulumi-cli";
import { startMoto } from "../tools/moto-server";
import type { Benchmark } from "./lib/bench";
import { ServiceProcess, withLog, writeTokens } from "./lib/fixtures";
import { httpJson } from "./lib/http";
import { REPO_ROOT, runToExit } from "./lib/proc";
import { median } from "./lib/stats";

const RUNS = 3;
const STACK = "benchreal";
const PROGRAM = path.join(REPO_ROOT, "test", "e2e", "program");

function envYaml(backend: string, output: string): string {
  return `engine: pulumi
program: test/e2e/program
backend: ${backend}
secretsProvider: passphrase
aws: { region: us-east-1, accountId: "123456789012" }
network: { cidr: 10.77.0.0/16, availabilityZones: 2, natGateways: none }
app: { name: web, build: { context: examples/app }, port: 8080, cpu: 256, memory: 512, desiredCount: 1, autoscaling: { min: 1, max: 1, cpuTarget: 70 }, healthCheck: { path: /health } }
tags: { Owner: bench, E2EOutput: ${JSON.stringify(output)} }
`;
}

/** Runs the pulumi CLI to its exit; its wall time in ms. */
function pulumi(cli: string, args: readonly string[], env: NodeJS.ProcessEnv): Promise<number> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const child = spawn(cli, [...args, "--stack", STACK, "--non-interactive"], { cwd: PROGRAM, env, stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    child.stderr!.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    child.once("error", reject);
    child.once("exit", (code) => (code === 0 ? resolve(performance.now() - started) : reject(new Error(`pulumi ${args.join(" ")} exited ${code}: ${stderr.slice(-300)}`))));
  });
}

export const engineReal: Benchmark = {
  name: "engine.real",
  aliases: ["engine-real"],
  title: "the deployer on the real pulumi CLI vs the CLI run directly, same stack and backend",
  rows: {
    "preview.cli": "a no-change preview through the deployer's CLI (npm run preview) minus `pulumi preview` directly; median − median",
    "preview.service": "a no-change preview through the service (POST …/previews to `end`) minus `pulumi preview` directly; median − median",
    "up.cli": "a one-resource up through the deployer's CLI (npm run up -- --yes) minus `pulumi up --yes` directly; median − median",
    "up.service": "a one-resource up through the service (POST …/deployments to `end`) minus `pulumi up --yes` directly; median − median",
    "program.startup": "the stand-in program's start-up as the engine runs it (node with the repository's SWC register hook), against Pulumi's TypeScript path (ts-node + tsc, transpile-only); median of 3",
  },
  timeoutMs: 20 * 60_000,
  compiled: true,
  async run(ctx) {
    const cli = findPulumi();
    if (cli === undefined) throw new Error("no pulumi CLI: run `npm run engine:install`");
    const dir = ctx.tempDir("real");
    const moto = await startMoto();
    ctx.defer(() => moto.stop());
    const envDir = path.join(dir, "envs");
    require("fs").mkdirSync(envDir);
    const backend = `file://${path.join(dir, "state")}`;
    writeFileSync(path.join(envDir, `${STACK}.yaml`), envYaml(backend, path.join(dir, "world", "output.txt")));
    ctx.defer(() => require("fs").rmSync(path.join(PROGRAM, `Pulumi.${STACK}.yaml`), { force: true }));
    const common: Record<string, string> = {
      ...moto.env,
      PULUMI_CONFIG_PASSPHRASE: "bench-only",
      PULUMI_HOME: path.join(dir, "pulumi-home"),
      PULUMI_SKIP_UPDATE_CHECK: "true",
      PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION: "true",
      DEPLOYER_DATA_DIR: path.join(dir, "cli-data"),
    };
    const direct = { ...process.env, ...common, PULUMI_BACKEND_URL: backend, PULUMI_NODEJS_TRANSPILE_ONLY: "true", PATH: `${path.dirname(cli)}${path.delimiter}${process.env.PATH}` };
    const deployerCli = async (op: string, ...args: string[]) => {
      const r = await runToExit(["-r", "./automation/register.js", "automation/cli/main.ts", op, "--stack", STACK, "--env-dir", envDir, ...args], 5 * 60_000, common);
      if (r.code !== 0) throw new Error(`${op} exited ${r.code}: ${r.stderr.slice(-300)}`);
      return r.ms;
    };
    const token = writeTokens(dir);
    const service = await ServiceProcess.start({ dir, token, envDir, env: { ...common, DEPLOYER_DATA_DIR: path.join(dir, "cli-data") } });
    ctx.defer(() => service.stop());
    const serviceJob = async (kind: "previews" | "deployments", version: string) => {
      const t0 = performance.now();
      const job = await withLog(service.spawned.logFile, httpJson<{ id: string }>(`${service.url}/v1/stacks/${STACK}/${kind}`, { method: "POST", headers: service.headers, body: { version }, expect: 202 }));
      return (await service.waitSucceeded(job.id, 5 * 60_000)) - t0;
    };

    // The first up creates the stack; everything after it changes one file per version.
    await deployerCli("up", "--version", "0.0.1", "--yes");
    let n = 1;
    const nextVersion = () => `0.1.${n++}`;
    let current = "0.0.1";
    const times = { previewCli: [] as number[], previewSvc: [] as number[], previewDirect: [] as number[], upCli: [] as number[], upSvc: [] as number[], upDirect: [] as number[] };
    for (let i = 0; i < RUNS; i++) {
      ctx.checkAborted();
      times.previewCli.push(await deployerCli("preview", "--version", current));
      times.previewDirect.push(await pulumi(cli, ["preview"], direct));
      times.previewSvc.push(await serviceJob("previews", current));

      current = nextVersion();
      times.upCli.push(await deployerCli("up", "--version", current, "--yes"));
      current = nextVersion();
      await pulumi(cli, ["config", "set", "pulumi-aws-deployer:version", current], direct);
      // `pulumi up` as a person runs it: its own preview, then the update (the deployer's up also
      // previews first, for its review gates).
      times.upDirect.push(await pulumi(cli, ["up", "--yes"], direct));
      current = nextVersion();
      times.upSvc.push(await serviceJob("deployments", current));
      ctx.log(`run ${i + 1}: preview cli ${Math.round(times.previewCli[i])} / service ${Math.round(times.previewSvc[i])} / direct ${Math.round(times.previewDirect[i])} ms; up cli ${Math.round(times.upCli[i])} / service ${Math.round(times.upSvc[i])} / direct ${Math.round(times.upDirect[i])} ms`);
    }
    const row = (metric: string, ours: number[], base: number[], baseWhat: string) => {
      const b = median(base);
      ctx.row(metric, {
        what: this.rows[metric],
        unit: "ms",
        figure: median(ours) - b,
        // 15 % of the CLI's own time, or 500 ms, whichever is larger.
        budget: { op: "<=", value: Math.max(0.15 * b, 500) },
        baseline: b,
        baselineWhat: baseWhat,
        runs: ours.map((x, i) => x - base[i]),
        note: `deployer ${ours.map(Math.round).join(", ")} ms; pulumi directly ${base.map(Math.round).join(", ")} ms; budget max(15 % of ${Math.round(b)}, 500) ms`,
      });
    };
    row("preview.cli", times.previewCli, times.previewDirect, "`pulumi preview` on the same stack and backend");
    row("preview.service", times.previewSvc, times.previewDirect, "`pulumi preview` on the same stack and backend");
    row("up.cli", times.upCli, times.upDirect, "`pulumi up --yes` (its preview, then the update) of a one-resource change");
    row("up.service", times.upSvc, times.upDirect, "`pulumi up --yes` (its preview, then the update) of a one-resource change");

    // The program's start-up as the engine runs it, against Pulumi's own TypeScript path.
    const startup = async (args: string[], env: Record<string, string>) => (await runToExit(args, 120_000, env)).ms;
    const load = `require(${JSON.stringify(path.join(PROGRAM, "index.ts"))})`;
    const swc: number[] = [];
    const tsc: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      swc.push(await startup(["-r", "./automation/register.js", "-e", load], {}));
      tsc.push(await startup(["-e", `require("ts-node").register({ transpileOnly: true, project: ${JSON.stringify(path.join(REPO_ROOT, "tsconfig.json"))} }); ${load}`], {}));
    }
    ctx.row("program.startup", {
      what: this.rows["program.startup"],
      unit: "ms",
      figure: median(swc),
      baseline: median(tsc),
      baselineWhat: "the same program through ts-node with the TypeScript compiler (Pulumi's `typescript: true`)",
      runs: swc,
      note: `SWC hook ${swc.map(Math.round).join(", ")} ms; TypeScript ${tsc.map(Math.round).join(", ")} ms (node start, @pulumi/pulumi and the program loaded; no engine)`,
    });
  },
};
