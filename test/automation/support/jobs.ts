/** Running operations the way the CLI and the service do: a job row, then `executeJob`. */
import type { Environment } from "../../../automation/environment";
import { executeJob, type ExecuteOptions, type ExecuteResult, type JobParams } from "../../../automation/jobs/execute";
import type { JobEvent, OperationDeps } from "../../../automation/operations/context";
import type { Job } from "../../../automation/store";

export interface RanJob extends ExecuteResult {
  /** Every event the job streamed, in order. */
  readonly events: JobEvent[];
}

/** Creates a running job for `what` (recording its version and targets like the CLI) and executes it. */
export async function runJob(deps: OperationDeps, env: Environment, what: JobParams, options: ExecuteOptions & { fields?: Partial<Job> } = {}): Promise<RanJob> {
  const params = "params" in what ? (what.params as { version?: string; target?: readonly string[] }) : {};
  const job = await deps.store.createJob({
    stack: env.name,
    operation: what.operation,
    requestedBy: "tester",
    source: "cli",
    engine: deps.engineFor(env).kind,
    status: "running",
    startedAt: new Date().toISOString(),
    ...(params.version !== undefined ? { version: params.version } : {}),
    ...(params.target !== undefined ? { target: params.target } : {}),
    ...options.fields,
  });
  const events: JobEvent[] = [];
  const result = await executeJob(deps, env, job, what, {
    ...options,
    onEvent: (event, seq) => {
      events.push(event);
      options.onEvent?.(event, seq);
    },
  });
  return { ...result, events };
}

/** Runs `what` and fails the test with the job's error unless it succeeded. */
export async function runOk(deps: OperationDeps, env: Environment, what: JobParams, options: ExecuteOptions & { fields?: Partial<Job> } = {}): Promise<RanJob> {
  const ran = await runJob(deps, env, what, options);
  if (ran.job.status !== "succeeded") throw new Error(`${what.operation} ${ran.job.status}: ${ran.error?.message ?? "(no error)"}`);
  return ran;
}

/** The resource steps the job's events reported, with the phase. */
export function stepEvents(events: readonly JobEvent[]): { phase: string; urn: string; type: string; op: string }[] {
  return events.flatMap((e) => (e.type === "step" ? [{ phase: e.phase, urn: e.step.urn, type: e.step.type, op: e.step.op }] : []));
}
