/**
 * The queue benchmark's process: the real JobQueue over the real SQLite store, with the service's
 * environment loader and the bench engine (no-op), all in this process. `run` submits `jobs`
 * deployments round-robin over `stacks` stacks, all at once, and answers when the last one is done.
 *
 * Concurrency is watched twice: by the queue's own events (job:start → job:done, per stack and in
 * total) and by the engine (calls running at once). The CPU time of this process per job is the
 * queue's and the store's overhead (the engine does nothing). A run that reaches its deadline stops
 * there and reports over the jobs that finished (`complete: false`).
 */
import * as path from "path";
import { environmentsIn } from "../../api/environments";
import { JobQueue } from "../../automation/jobs/queue";
import { openStore, type Job } from "../../automation/store";
import { BenchEngine, benchDeps } from "../lib/engine";
import { serve } from "../lib/ipc-child";
import { median } from "../lib/stats";

interface RunArgs {
  readonly jobs: number;
  readonly stacks: readonly string[];
  readonly cap: number;
  readonly envDir: string;
  readonly dataDir: string;
  /** The most jobs submitted and not yet done at any time. */
  readonly backlog: number;
  /** Stop here even if not all jobs were submitted or done: the figures are then over what finished. */
  readonly deadlineMs: number;
}

async function run(args: RunArgs) {
  const store = openStore(args.dataDir);
  const engine = new BenchEngine("noop");
  const environments = environmentsIn(args.envDir);
  const queue = new JobQueue({
    store,
    deps: benchDeps(store, engine),
    loadEnvironment: (stack) => environments.load(stack),
    owner: `bench:${process.pid}:${path.basename(args.dataDir)}`,
    maxConcurrent: args.cap,
    // The bench's one principal keeps up to 200 outstanding on purpose.
    maxQueuedPerStack: 1_000,
    maxQueuedPerPrincipal: 1_000,
  });
  const runningByStack = new Map<string, number>();
  let running = 0;
  let maxRunning = 0;
  let maxOnStack = 0;
  const startedAt = new Map<string, number>();
  /** Jobs done before their submit had answered (the queue runs a job as soon as it is stored). */
  const doneBeforeSubmitted = new Map<string, number>();
  const latencies: number[] = [];
  const doneTimes: number[] = [];
  const statuses = new Map<string, number>();
  let done = 0;
  let target = Infinity;
  let onProgress: (() => void) | undefined;
  let errors = 0;
  let resolveAll!: () => void;
  const allDone = new Promise<void>((r) => (resolveAll = r));
  queue.on("job:start", (job: Job) => {
    running++;
    maxRunning = Math.max(maxRunning, running);
    const n = (runningByStack.get(job.stack) ?? 0) + 1;
    runningByStack.set(job.stack, n);
    maxOnStack = Math.max(maxOnStack, n);
  });
  queue.on("job:done", (job: Job) => {
    if (job.startedAt !== undefined) {
      running--;
      runningByStack.set(job.stack, (runningByStack.get(job.stack) ?? 1) - 1);
    }
    const s = startedAt.get(job.id);
    if (s !== undefined) latencies.push(performance.now() - s);
    else doneBeforeSubmitted.set(job.id, performance.now());
    doneTimes.push(performance.now());
    statuses.set(job.status, (statuses.get(job.status) ?? 0) + 1);
    if (++done >= target) resolveAll();
    onProgress?.();
    onProgress = undefined;
  });
  queue.on("job:error", () => errors++);
  try {
    await queue.recover();
    queue.start();
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    const deadline = t0 + args.deadlineMs;
    // Submitted in bursts of at most 50, with at most BACKLOG jobs outstanding (submitted, not done):
    // requests keep arriving while jobs run, as at the service, and a run stopped at its deadline is
    // in a steady state (every finished job paid for its own submit), so finished / elapsed is fair.
    let submitted = 0;
    let submitCpuUs = 0;
    while (submitted < args.jobs && performance.now() < deadline) {
      const room = Math.min(50, args.backlog - (submitted - done), args.jobs - submitted);
      if (room <= 0) {
        await new Promise<void>((r) => (onProgress = r));
        continue;
      }
      const burst = process.cpuUsage();
      for (let n = 0; n < room; n++) {
        const stack = args.stacks[submitted % args.stacks.length];
        const at = performance.now();
        const { job } = await queue.submit({ stack, operation: "up", requestedBy: "bench", source: "api", params: { version: "1.0.0" } });
        const doneAt = doneBeforeSubmitted.get(job.id);
        if (doneAt === undefined) startedAt.set(job.id, at);
        else latencies.push(doneAt - at);
        doneBeforeSubmitted.delete(job.id);
        submitted++;
      }
      const c = process.cpuUsage(burst);
      submitCpuUs += c.user + c.system;
      await new Promise((r) => setImmediate(r));
    }
    const submitMs = performance.now() - t0;
    target = submitted;
    if (done >= target) resolveAll();
    let timer: NodeJS.Timeout | undefined;
    const timedOut = await Promise.race([
      allDone.then(() => false),
      new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), Math.max(0, deadline - performance.now())))),
    ]).finally(() => clearTimeout(timer));
    const wallMs = performance.now() - t0;
    const finished = done;
    const cpu = process.cpuUsage(cpu0);
    return {
      jobs: args.jobs,
      submitted,
      finished,
      complete: !timedOut && finished === args.jobs,
      wallMs,
      submitMs,
      // A stopped run: the rate over its second half (past filling the backlog), a steady state.
      jobsPerSec: timedOut ? (doneTimes.filter((t) => t >= t0 + wallMs / 2).length / (wallMs / 2)) * 1000 : (finished / wallMs) * 1000,
      // Submitting and running are counted apart, so a run stopped with jobs still queued is not skewed
      // (approximately: the store is asynchronous, so jobs run while a burst's submits await it, and
      // that share of their CPU time counts as submitting).
      submitCpuMsPerJob: submitCpuUs / 1000 / Math.max(1, submitted),
      runCpuMsPerJob: (cpu.user + cpu.system - submitCpuUs) / 1000 / Math.max(1, finished),
      cpuMsPerJob: submitCpuUs / 1000 / Math.max(1, submitted) + (cpu.user + cpu.system - submitCpuUs) / 1000 / Math.max(1, finished),
      maxRunning,
      maxOnStack,
      engineMaxActive: engine.maxActive,
      engineMaxPerStack: engine.maxActivePerStack,
      medianSubmitToDoneMs: median(latencies),
      statuses: Object.fromEntries(statuses),
      queueErrors: errors,
    };
  } finally {
    await queue.shutdown(1_000);
    await store.close();
  }
}

serve({ run });
