/**
 * queue: 1,000 deployments on the no-op bench engine across 50 stacks through the real JobQueue and
 * SQLite store (and the service's environment loader), submitted in bursts of 50 with at most 200
 * outstanding (4 per stack), in a process of their own (bench/children/queue-run.ts). Jobs/s from the first submit to the last job done; the most
 * running on one stack and in total (the queue's own events and the engine's count); the process's
 * CPU time per job. A 100-job warm-up first, then 3 runs, each over a new store; fewer (at least one)
 * when the warm-up says 3 would not fit in 30 s, and a run is stopped at 20 s (its jobs/s is then the
 * rate over its second half, a steady state past filling the backlog, which the note says).
 */
import * as path from "path";
import { compiledChild } from "./lib/compile";
import type { Benchmark } from "./lib/bench";
import { writeEnvDir } from "./lib/fixtures";
import { IpcChild } from "./lib/proc";
import { max, median } from "./lib/stats";

const JOBS = 1_000;
const STACKS = 50;
const CAP = 8;
const RUNS = 3;
/** Jobs submitted and not yet done, at most: 4 per stack. */
const BACKLOG = 200;
const RUN_BUDGET_MS = 30_000;
const RUN_DEADLINE_MS = 20_000;

interface QueueRun {
  jobs: number;
  finished: number;
  complete: boolean;
  wallMs: number;
  submitMs: number;
  jobsPerSec: number;
  cpuMsPerJob: number;
  submitCpuMsPerJob: number;
  runCpuMsPerJob: number;
  maxRunning: number;
  maxOnStack: number;
  engineMaxActive: number;
  engineMaxPerStack: number;
  medianSubmitToDoneMs: number;
  statuses: Record<string, number>;
  queueErrors: number;
}

export const queueThroughput: Benchmark = {
  name: "queue",
  title: `${JOBS} jobs on a no-op engine across ${STACKS} stacks through the real queue and store (cap ${CAP})`,
  rows: {
    throughput: `jobs/s, ${JOBS} no-op deployments across ${STACKS} stacks, submit of the first to the end of the last, at most ${BACKLOG} outstanding (median of up to ${RUNS} runs)`,
    "max-per-stack": "the most jobs ever running at once on one stack, over all runs",
    "max-running": `the most jobs ever running at once, over all runs (cap: maxConcurrent ${CAP})`,
    overhead: "CPU time of the queue's process per job: submit, dispatch, lease, events and rows in SQLite, the deploy operation around a no-op engine (median of runs)",
  },
  timeoutMs: 90_000,
  async run(ctx) {
    const dir = ctx.tempDir("queue");
    const stacks = Array.from({ length: STACKS }, (_, i) => `q${String(i + 1).padStart(2, "0")}`);
    const envDir = writeEnvDir(dir, stacks);
    const child = new IpcChild(compiledChild("queue-run"));
    ctx.defer(() => child.stop());
    const runOnce = async (jobs: number, label: string, deadlineMs: number): Promise<QueueRun> => {
      ctx.checkAborted();
      const r = await child.call<QueueRun>("run", { jobs, stacks, cap: CAP, backlog: BACKLOG, envDir, dataDir: path.join(dir, label), deadlineMs }, deadlineMs + 15_000);
      const ok = r.statuses.succeeded ?? 0;
      if (ok !== r.finished || r.finished === 0) throw new Error(`${label}: ${ok} of ${r.finished} finished jobs succeeded (${JSON.stringify(r.statuses)})`);
      if (r.queueErrors > 0) throw new Error(`${label}: the queue reported ${r.queueErrors} errors`);
      ctx.log(
        `${label}: ${Math.round(r.jobsPerSec)} jobs/s${r.complete ? "" : ` (stopped at ${Math.round(deadlineMs / 1000)} s: ${r.finished} of ${jobs} done)`}, ` +
          `${r.cpuMsPerJob.toFixed(2)} ms CPU/job, max ${r.maxRunning} running, ${r.maxOnStack} on one stack`,
      );
      return r;
    };
    const warm = await runOnce(100, "warmup", 15_000);
    // A slow queue must not take the whole bench's time: as many runs as fit in RUN_BUDGET_MS (at least
    // one), each stopped at RUN_DEADLINE_MS; a stopped run's figures are over the jobs that finished.
    const predictedMs = (JOBS / Math.max(1, warm.jobsPerSec)) * 1000;
    const runCount = Math.max(1, Math.min(RUNS, Math.floor(RUN_BUDGET_MS / predictedMs)));
    const runs: QueueRun[] = [];
    const runsStart = performance.now();
    for (let i = 0; i < runCount; i++) {
      // Stop early when the runs so far say the next one would overrun the budget.
      const elapsed = performance.now() - runsStart;
      if (i > 0 && elapsed + elapsed / i > RUN_BUDGET_MS * 1.2) break;
      runs.push(await runOnce(JOBS, `run${i + 1}`, RUN_DEADLINE_MS));
    }
    const partial = runs.filter((r) => !r.complete);
    const partialNote = partial.length
      ? `; ${partial.length} of ${runs.length} runs stopped at ${RUN_DEADLINE_MS / 1000} s with ${partial.map((r) => r.finished).join(", ")} of ${JOBS} done (jobs/s over its second half, past filling the backlog)`
      : "";
    const runsNote = runs.length < RUNS ? `; ${runs.length} run${runs.length > 1 ? "s" : ""} instead of ${RUNS}: the warm-up predicted ${Math.round(predictedMs / 1000)} s per run` : "";

    ctx.row("throughput", {
      what: this.rows.throughput,
      unit: "jobs/s",
      figure: median(runs.map((r) => r.jobsPerSec)),
      budget: { op: ">=", value: 200 },
      runs: runs.map((r) => r.jobsPerSec),
      note: `median submit-to-done per job ${Math.round(median(runs.map((r) => r.medianSubmitToDoneMs)))} ms with up to ${BACKLOG} outstanding${runsNote}${partialNote}`,
    });
    ctx.row("max-per-stack", {
      what: this.rows["max-per-stack"],
      unit: "jobs",
      figure: max(runs.flatMap((r) => [r.maxOnStack, r.engineMaxPerStack])),
      budget: { op: "==", value: 1 },
    });
    ctx.row("max-running", {
      what: this.rows["max-running"],
      unit: "jobs",
      figure: max(runs.flatMap((r) => [r.maxRunning, r.engineMaxActive])),
      budget: { op: "<=", value: CAP },
    });
    ctx.row("overhead", {
      what: this.rows.overhead,
      unit: "ms",
      figure: median(runs.map((r) => r.cpuMsPerJob)),
      runs: runs.map((r) => r.cpuMsPerJob),
      note: `submit ${median(runs.map((r) => r.submitCpuMsPerJob)).toFixed(2)} ms + run ${median(runs.map((r) => r.runCpuMsPerJob)).toFixed(2)} ms`,
    });
  },
};
