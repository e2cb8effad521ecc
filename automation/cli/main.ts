/**
 * The CLI: `npm run <op> -- --stack <env> [options]`. `runCli` is the whole program minus
 * process.exit, so tests drive it in-process; the bottom of the file wires it to the real process.
 *
 * Exit codes: 0 done, 1 operation failed, 2 usage or config error, 3 drift or changes found where none
 * were expected, 4 blocked by a gate or awaiting approval, 5 engine unavailable.
 */
import { killAllEngineProcesses } from "../engine/pulumi-process";
import { Command, CommanderError, Option } from "commander";
import { hostname } from "os";
import * as path from "path";
import { versionSchema } from "../../infra/config";
import { createDeps } from "../deps";
import type { DriftResult, EngineEvent, OperationResult, Outputs } from "../engine/port";
import { loadEnvironment, type Environment } from "../environment";
import { ConfigError, DeployerError, EngineUnavailableError, GateError, toDeployerError } from "../errors";
import { executeJob, type JobParams } from "../jobs/execute";
import { assertMutationMayRunNow } from "../jobs/guard";
import { cliOwner, osUser, withStackLease } from "../jobs/lease";
import type { OperationDeps } from "../operations/context";
import type { DeployOutcome } from "../operations/deploy";
import { history } from "../operations/history";
import { DEFAULT_OUTPUTS_FILE, outputs } from "../operations/outputs";
import type { PreviewReport } from "../operations/preview";
import { validate } from "../operations/validate";
import { connectStore, DATABASE_URL_VARIABLE, type Job, type JobOperation, type Store } from "../store";
import { redactDeep, shortSecretVariables, shortSecretWarning } from "../redact";
import { changeLine, eventLine, outputLines, resourceTree, table, violationLines } from "./render";

export interface CliIo {
  readonly stdout: (text: string) => void;
  readonly stderr: (text: string) => void;
  readonly env: NodeJS.ProcessEnv;
  /** Whether stdout is a terminal. */
  readonly isTTY: boolean;
  /** The working directory relative paths (--env-dir, --file) resolve against. */
  readonly cwd?: string;
  /** Replace the operations' collaborators (tests). */
  readonly deps?: (store: Store) => OperationDeps;
  /** Cancels the running operation (the process wires SIGINT here). */
  readonly signal?: AbortSignal;
}

export const EXIT = { ok: 0, failed: 1, usage: 2, changes: 3, blocked: 4, engineUnavailable: 5 } as const;

interface Common {
  stack: string;
  json?: boolean;
  envDir?: string;
}

interface RunOptions extends Common {
  version?: string;
  target?: string[];
  allowDestroy?: string[];
  message?: string;
  yes?: boolean;
  expectNoChanges?: boolean;
  to?: string;
  reason?: string;
  confirm?: string;
  file?: string;
  limit?: string;
}

function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

/** Validates `--version` like every other input: allowlisted before anything runs. */
export function parseVersion(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  const r = versionSchema.safeParse(value);
  if (!r.success) throw new ConfigError(`--version: "${printable(value)}" ${r.error.issues[0].message}`, { details: { field: "version" } });
  return r.data;
}

/** Targets must be URNs of this stack. */
export function parseTargets(env: Environment, targets: readonly string[] | undefined, flag = "--target"): string[] | undefined {
  if (targets === undefined || targets.length === 0) return undefined;
  const prefix = `urn:pulumi:${env.name}::`;
  for (const t of targets) {
    if (!t.startsWith(prefix) || !/^urn:pulumi:[a-z0-9-]+::[A-Za-z0-9._-]+::[A-Za-z0-9:/$._-]+::[A-Za-z0-9._:/-]+$/.test(t) || t.length > 1024) {
      throw new ConfigError(`${flag}: "${printable(t)}" is not a URN of stack ${env.name} (urn:pulumi:${env.name}::<project>::<type>::<name>)`, { details: { field: flag.slice(2) } });
    }
  }
  return [...targets];
}

function printable(s: string): string {
  const p = s.replace(/[^\x20-\x7e]/g, "?");
  return p.length > 80 ? `${p.slice(0, 80)}…` : p;
}

function resolveVersion(env: Environment, flag: string | undefined): string {
  const version = parseVersion(flag) ?? env.settings.app.version;
  if (version === undefined) throw new ConfigError(`--version is required: ${env.file} sets no app.version`, { details: { field: "version" } });
  return version;
}

/** The CLI on a stack that requires approvals: preview only, unless a permitted principal bypasses. */
function approvalRule(env: Environment, actor: string, yes: boolean | undefined): (() => Promise<void>) | undefined {
  const required = env.deploy.approvals.required;
  if (required === 0) return undefined;
  if (yes && env.deploy.approvals.bypass.includes(actor)) return undefined;
  return async () => {
    throw new GateError(
      `${env.name} requires ${required} approval${required === 1 ? "" : "s"}: the preview above is what would change. ` +
        `Request the deployment through the service (POST /v1/stacks/${env.name}/deployments)` +
        (env.deploy.approvals.bypass.length ? `, or run with --yes as one of: ${env.deploy.approvals.bypass.join(", ")}` : ""),
    );
  };
}

export async function runCli(argv: readonly string[], io: CliIo): Promise<number> {
  let exitCode: number = EXIT.ok;
  const json = argv.includes("--json");
  const cwd = io.cwd ?? process.cwd();
  const out = (line = "") => io.stdout(`${line}\n`);
  /** `DEBUG=1`: the stack trace under the one-line error (the original error's, when it was wrapped). */
  const debugTrace = (e: DeployerError) => {
    if (io.env.DEBUG && io.env.DEBUG !== "0") io.stderr(`${(e.cause instanceof Error ? e.cause : e).stack ?? ""}\n`);
  };
  const shortSecrets = shortSecretVariables(io.env);
  if (shortSecrets.length > 0) io.stderr(`warning: ${shortSecretWarning(shortSecrets)}\n`);
  let store: Store | undefined;
  let deps: OperationDeps | undefined;
  const openDeps = async (): Promise<OperationDeps> => {
    if (deps) return deps;
    // One data dir for the store and the engine's snapshots, relative to the CLI's cwd.
    const dataDir = path.resolve(cwd, io.env.DEPLOYER_DATA_DIR || ".deployer");
    // The service's PostgreSQL when it runs as several replicas: the CLI's lease is the same row.
    store = await connectStore({ dataDir, databaseUrl: io.env[DATABASE_URL_VARIABLE] });
    deps = io.deps ? io.deps(store) : createDeps({ store, dataDir, env: io.env });
    return deps;
  };
  const load = (o: Common) => loadEnvironment(o.stack, { envDir: o.envDir === undefined ? undefined : path.resolve(cwd, o.envDir) });
  /** Loads the environment and checks its engine can run here, before any other argument matters. */
  const loadRunnable = async (o: Common) => {
    const env = load(o);
    const deps = await openDeps();
    const engine = deps.engineFor(env);
    const availability = await engine.available();
    if (!availability.ok) throw new EngineUnavailableError(availability.reason ?? `the ${engine.kind} engine is not available`);
    return env;
  };

  /** Runs one job under the stack's lease, printing progress; returns the finished job and result. */
  const runJob = async (env: Environment, operation: JobOperation, what: JobParams, fields: Partial<Job> = {}) => {
    const deps = await openDeps();
    const engine = deps.engineFor(env);
    return withStackLease(deps.store, env.name, cliOwner(), async (leaseLost) => {
      // Under the lease, so no service job can start or end between the check and the run.
      await assertMutationMayRunNow(deps.store, env.name, operation);
      const job = await deps.store.createJob({ stack: env.name, operation, requestedBy: osUser(), source: "cli", engine: engine.kind, status: "running", startedAt: new Date().toISOString(), ...fields });
      const signal = io.signal ? AbortSignal.any([io.signal, leaseLost]) : leaseLost;
      const done = await executeJob(deps, env, job, what, {
        signal,
        onEvent: (event) => {
          if (json) return;
          const line = event.type === "phase" ? `» ${event.message}` : event.type === "check" ? `${event.skipped ? "-" : event.ok ? "✓" : "✗"} ${event.name}: ${event.detail}` : event.type === "log" ? `${event.level}: ${event.message}` : eventLine(event as EngineEvent);
          if (line !== undefined) out(line);
        },
      });
      await auditCliRun(deps.store, done.job, done.error);
      return done;
    });
  };

  const finish = (job: Job, error: DeployerError | undefined, body: Record<string, unknown>, text: () => void) => {
    if (json) out(JSON.stringify({ job: publicJob(job), ...body, ...(error ? { error: { code: error.code, message: error.message } } : {}) }, null, 2));
    else {
      text();
      out(`${job.operation} ${job.status} (${job.id}${job.version ? `, version ${job.version}` : ""}, ${job.engine} engine)`);
      if (error) {
        io.stderr(`error: ${error.message}\n`);
        debugTrace(error);
      }
    }
    if (error) exitCode = error.constructor === DeployerError ? EXIT.failed : error.exitCode;
  };

  const printChanges = (r: OperationResult | undefined, title = "changes") => {
    if (!r) return;
    out();
    out(...table([[title, changeLine(r.changes)]]));
  };
  const printOutputs = (o: Outputs | undefined) => {
    if (!o || Object.keys(o).length === 0) return;
    out();
    out("outputs:");
    for (const line of outputLines(o)) out(`  ${line}`);
  };

  const program = new Command()
    .name("deployer")
    .description("Deploys an environment's AWS stack with Pulumi.")
    .exitOverride()
    .configureOutput({ writeOut: io.stdout, writeErr: io.stderr });

  const command = (name: string, description: string) =>
    program
      .command(name)
      .description(description)
      .requiredOption("-s, --stack <env>", "environment name (a file in the environments directory)")
      .option("--env-dir <dir>", "directory of environment files (default environments/)")
      .option("--json", "print one JSON document on stdout and nothing else");
  const versionOption = () => new Option("--version <tag>", "deploy version (image tag); default app.version");

  command("validate", "evaluate the program under mocks and run the policy rules; no engine, no cloud")
    .addOption(versionOption())
    .action(async (o: RunOptions) => {
      const env = load(o);
      const result = await validate(env, { version: parseVersion(o.version) });
      if (json) {
        out(JSON.stringify({
          stack: result.stack,
          version: result.version,
          resources: result.resources.map((r) => ({ type: r.type, name: r.name, urn: r.urn, parent: r.parent ?? null, inputs: r.inputs })),
          violations: result.violations,
        }, null, 2));
      } else {
        out(`${env.name}: ${result.resources.length} resources (version ${result.version})`);
        for (const line of resourceTree(result.resources)) out(`  ${line}`);
        out(result.violations.length === 0 ? "policies: no violations" : `policies: ${result.violations.length} violation${result.violations.length === 1 ? "" : "s"}`);
        for (const line of violationLines(result.violations)) out(`  ${line}`);
      }
      exitCode = result.violations.length ? EXIT.blocked : EXIT.ok;
    });

  command("preview", "show what an up would change, and the review gates' findings")
    .addOption(versionOption())
    .option("--target <urn>", "limit to this resource (repeatable)", collect)
    .option("--expect-no-changes", "exit 3 when anything would change")
    .action(async (o: RunOptions) => {
      const env = await loadRunnable(o);
      const version = resolveVersion(env, o.version);
      const target = parseTargets(env, o.target);
      const { job, result, error } = await runJob(env, "preview", { operation: "preview", params: { version, target } }, { version, target });
      const report = result as PreviewReport | undefined;
      finish(job, error, { changes: report?.changes, steps: report?.steps, findings: report?.findings }, () => {
        printChanges(report);
        for (const f of report?.findings ?? []) out(`  ✗ ${f.message}`);
      });
      if (!error && report && o.expectNoChanges && report.changes.create + report.changes.update + report.changes.delete + report.changes.replace > 0) exitCode = EXIT.changes;
      if (!error && report && report.findings.length > 0) exitCode = EXIT.blocked;
    });

  command("up", "preview, review, apply, verify and record a deployment")
    .addOption(versionOption())
    .option("--target <urn>", "limit to this resource (repeatable)", collect)
    .option("--allow-destroy <urn>", "allow this protected resource to be deleted or replaced (repeatable)", collect)
    .option("-m, --message <text>", "a note recorded with the deployment")
    .option("-y, --yes", "bypass approvals (only principals listed in deploy.approvals.bypass)")
    .action(async (o: RunOptions) => {
      const env = await loadRunnable(o);
      const version = resolveVersion(env, o.version);
      const target = parseTargets(env, o.target);
      const allowDestroy = parseTargets(env, o.allowDestroy, "--allow-destroy");
      const beforeApply = approvalRule(env, osUser(), o.yes);
      const { job, result, error } = await runJob(env, "up", { operation: "up", params: { version, target, allowDestroy, beforeApply } }, { version, target, message: o.message?.slice(0, 1000) });
      const outcome = result as DeployOutcome | undefined;
      finish(job, error, { outputs: outcome?.outputs }, () => {
        printChanges(outcome ? { changes: job.changes ?? outcome.job.changes! } as OperationResult : undefined);
        printOutputs(outcome?.outputs);
      });
    });

  command("rollback", "restore an earlier good deployment's version and config (never rebuilds)")
    .option("--to <id-or-version>", "the deployment to restore; default the previous good one")
    .option("--reason <text>", "why, recorded with the rollback")
    .option("-y, --yes", "bypass approvals (only principals listed in deploy.approvals.bypass)")
    .action(async (o: RunOptions) => {
      const env = await loadRunnable(o);
      if (o.to !== undefined && !/^(job_[0-9A-Za-z]{10,40}|[A-Za-z0-9][A-Za-z0-9._-]{0,127})$/.test(o.to)) {
        throw new ConfigError(`--to: "${printable(o.to)}" is neither a deployment id nor a version`, { details: { field: "to" } });
      }
      const beforeApply = approvalRule(env, osUser(), o.yes);
      const { job, result, error } = await runJob(env, "rollback", { operation: "rollback", params: { to: o.to, reason: o.reason?.slice(0, 1000), beforeApply } }, { reason: o.reason?.slice(0, 1000) });
      const outcome = result as DeployOutcome | undefined;
      finish(job, error, { outputs: outcome?.outputs }, () => {
        if (job.rollbackTo) out(`restored ${job.version} from ${job.rollbackTo}${job.rollbackOf ? `, replacing ${job.rollbackOf}` : ""}`);
        printChanges(job.changes ? ({ changes: job.changes } as OperationResult) : undefined);
        printOutputs(outcome?.outputs);
      });
    });

  command("refresh", "update the state from what exists")
    .action(async (o: RunOptions) => {
      const env = await loadRunnable(o);
      const { job, result, error } = await runJob(env, "refresh", { operation: "refresh" });
      finish(job, error, { changes: (result as OperationResult | undefined)?.changes }, () => printChanges(result as OperationResult | undefined, "refreshed"));
    });

  command("drift", "compare the state with what exists; exit 3 when they differ (changes nothing)")
    .action(async (o: RunOptions) => {
      const env = await loadRunnable(o);
      const { job, result, error } = await runJob(env, "drift", { operation: "drift" });
      const report = result as DriftResult | undefined;
      finish(job, error, { drifted: report?.drifted }, () => {
        if (!report) return;
        if (report.drifted.length === 0) out("no drift: the state matches what exists");
        for (const d of report.drifted) {
          out(`${d.kind === "delete" ? "-" : d.kind === "create" ? "+" : "~"} ${d.urn}`);
          for (const p of d.properties) out(`    ${p.path}: ${JSON.stringify(p.state) ?? "(absent)"} → ${JSON.stringify(p.live) ?? "(absent)"}`);
        }
      });
      if (!error && report && report.drifted.length > 0) {
        exitCode = EXIT.changes;
        if (!json) io.stderr(`drift: ${report.drifted.length} resource${report.drifted.length === 1 ? "" : "s"} differ from the state; run refresh to accept, or up to restore\n`);
      }
    });

  command("destroy", "delete every resource of the stack")
    .option("-y, --yes", "confirm (required)")
    .option("--confirm <stack>", "in production, the stack name again")
    .option("--allow-destroy <urn>", "allow this protected resource to be deleted (repeatable)", collect)
    .action(async (o: RunOptions) => {
      const env = await loadRunnable(o);
      if (!o.yes) throw new ConfigError(`destroy deletes every resource of ${env.name}: add --yes to confirm`, { details: { field: "yes" } });
      if (env.settings.production && o.confirm !== env.name) throw new ConfigError(`${env.name} is production: add --confirm ${env.name} as well`, { details: { field: "confirm" } });
      const allowDestroy = parseTargets(env, o.allowDestroy, "--allow-destroy");
      const approve = approvalRule(env, osUser(), o.yes);
      if (approve) await approve();
      const { job, result, error } = await runJob(env, "destroy", { operation: "destroy", params: { allowDestroy } });
      finish(job, error, { changes: (result as OperationResult | undefined)?.changes }, () => printChanges(result as OperationResult | undefined, "destroyed"));
    });

  command("outputs", "print the stack's outputs (secrets masked) and write them to a JSON file")
    .option("--file <path>", `where to write them (default ${DEFAULT_OUTPUTS_FILE})`)
    .action(async (o: RunOptions) => {
      const env = await loadRunnable(o);
      const deps = await openDeps();
      const file = path.resolve(cwd, o.file ?? DEFAULT_OUTPUTS_FILE);
      const values = await outputs(env, deps.engineFor(env), { file });
      if (json) out(JSON.stringify({ stack: env.name, outputs: values, file }, null, 2));
      else {
        for (const line of outputLines(values)) out(line);
        out(`written to ${path.relative(cwd, file) || file}`);
      }
    });

  command("history", "the stack's deployments, newest first")
    .option("--limit <n>", "how many", "20")
    .action(async (o: RunOptions) => {
      const env = load(o);
      const limit = Number(o.limit);
      if (!Number.isInteger(limit) || limit < 1 || limit > 500) throw new ConfigError("--limit: must be a whole number from 1 to 500", { details: { field: "limit" } });
      const entries = await history((await openDeps()).store, env.name, { limit });
      if (json) out(JSON.stringify({ stack: env.name, deployments: entries }, null, 2));
      else {
        if (entries.length === 0) out(`${env.name}: no deployments yet`);
        const rows = entries.map((e) => [
          e.createdAt.replace("T", " ").slice(0, 19),
          e.operation,
          e.version ?? "-",
          e.status,
          e.requestedBy,
          e.changes ? `+${e.changes.create} ~${e.changes.update} ±${e.changes.replace} -${e.changes.delete}` : "",
          e.engine,
          e.rollbackOf ? `rollback of ${e.rollbackOf}` : e.error ? e.error.message.split("\n")[0].slice(0, 60) : "",
          e.id,
        ]);
        if (rows.length) for (const line of table([["when (UTC)", "operation", "version", "result", "who", "changes", "engine", "note", "id"], ...rows])) out(line);
      }
    });

  try {
    await program.parseAsync(argv as string[], { from: "user" });
    return exitCode;
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.code === "commander.helpDisplayed" || err.code === "commander.help") return EXIT.ok;
      return EXIT.usage; // commander printed the message
    }
    const e = toDeployerError(err);
    if (json) out(JSON.stringify({ error: { code: e.code, message: e.message } }));
    io.stderr(`error: ${e.message}\n`);
    debugTrace(e);
    return e.constructor === DeployerError ? EXIT.failed : e.exitCode;
  } finally {
    await store?.close();
  }
}

/**
 * A CLI run in the audit trail, as the service records its requests: the OS user as the actor,
 * `cli <op>`, the stack, the job and its result. A store that cannot take it does not fail the run.
 */
async function auditCliRun(store: Store, job: Job, error: DeployerError | undefined): Promise<void> {
  try {
    await store.appendAudit(
      redactDeep({
        actor: job.requestedBy,
        action: `cli ${job.operation}`,
        stack: job.stack,
        jobId: job.id,
        address: `cli@${hostname()}`,
        result: job.status === "succeeded" ? "allowed" : "failed",
        details: { source: "cli", status: job.status, ...(job.version !== undefined ? { version: job.version } : {}), ...(error ? { error: error.code } : {}) },
      }),
    );
  } catch {
    // the run's own record (the job) is what matters here
  }
}

/** The job as printed: no step list (it can be long) and nothing internal. */
function publicJob(job: Job): Record<string, unknown> {
  const { steps: _steps, requestHash: _hash, idempotencyKey: _key, ...rest } = job;
  return rest;
}

if (require.main === module) {
  const controller = new AbortController();
  let interrupts = 0;
  // The engine's processes run in process groups of their own, so a terminal's Ctrl-C reaches only
  // this process, which passes exactly one graceful interrupt on (pulumi takes a second as "stop now").
  process.on("SIGINT", () => {
    interrupts++;
    if (interrupts === 1) {
      process.stderr.write("interrupting: asking the engine to stop gracefully (Ctrl-C again to force)\n");
      controller.abort();
    } else {
      process.stderr.write("forcing: killing the engine's processes\n");
      killAllEngineProcesses();
      process.exit(130);
    }
  });
  runCli(process.argv.slice(2), {
    stdout: (t) => process.stdout.write(t),
    stderr: (t) => process.stderr.write(t),
    env: process.env,
    isTTY: Boolean(process.stdout.isTTY),
    signal: controller.signal,
  }).then(
    (code) => process.exit(code),
    (err) => {
      process.stderr.write(`error: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exit(EXIT.failed);
    },
  );
}
