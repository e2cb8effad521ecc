/**
 * One replica of the replicas benchmark (bench/replicas.ts): the real JobQueue over its own store
 * (PostgreSQL shared with the other replicas, or SQLite alone), with the service's environment loader
 * and the bench engine (no-op), in this process.
 *
 *   open    the store and the queue (recover, start)
 *   submit  its share of the deployments, in bursts of 50, with at most `maxQueued` of its own queued
 *           at once (counted in the store: jobs it submitted that no replica has started yet)
 *   stats   what it ran and the CPU time it used since `open`
 *   close   shuts the queue down and closes the store
 *
 * Which replica runs a job is the queue's business: the figures (start and end of every job) are read
 * from the job rows by the parent.
 */
import * as path from "path";
import { environmentsIn } from "../../api/environments";
import { JobQueue } from "../../automation/jobs/queue";
import { connectStore, type Store } from "../../automation/store";
import { BenchEngine, benchDeps } from "../lib/engine";
import { serve } from "../lib/ipc-child";

interface OpenArgs {
  readonly name: string;
  readonly dataDir: string;
  readonly databaseUrl?: string;
  readonly envDir: string;
  readonly cap: number;
}

interface SubmitArgs {
  /** The stack of each job this replica submits, in order. */
  readonly stacks: readonly string[];
  readonly maxQueued: number;
  readonly burst: number;
}

let store: Store | undefined;
let queue: JobQueue | undefined;
let engine: BenchEngine | undefined;
let name = "replica";
let ran = 0;
let errors = 0;
let lastError = "";
let cpu0 = process.cpuUsage();
/** Resolves the submit loop's wait when one of this replica's jobs may have left the queue. */
let onProgress: (() => void) | undefined;

async function open(args: OpenArgs): Promise<{ pid: number }> {
  name = args.name;
  store = await connectStore({ dataDir: args.dataDir, databaseUrl: args.databaseUrl, busyTimeoutMs: 250 });
  engine = new BenchEngine("noop");
  const environments = environmentsIn(args.envDir);
  queue = new JobQueue({
    store,
    deps: benchDeps(store, engine),
    loadEnvironment: (stack) => environments.load(stack),
    owner: `bench:${process.pid}:${name}:${path.basename(args.dataDir)}`,
    maxConcurrent: args.cap,
    maxQueuedPerStack: 10_000,
    maxQueuedPerPrincipal: 10_000,
  });
  queue.on("job:start", () => {
    onProgress?.();
    onProgress = undefined;
  });
  queue.on("job:done", () => {
    ran++;
    onProgress?.();
    onProgress = undefined;
  });
  queue.on("job:error", (_id, err) => {
    errors++;
    lastError = err.message;
  });
  await queue.recover();
  queue.start();
  cpu0 = process.cpuUsage();
  return { pid: process.pid };
}

async function submit(args: SubmitArgs): Promise<{ submitted: number; ms: number }> {
  if (!queue || !store) throw new Error("not open");
  const t0 = performance.now();
  let submitted = 0;
  while (submitted < args.stacks.length) {
    const queued = await store.countQueued({ requestedBy: name });
    const room = Math.min(args.burst, args.maxQueued - queued, args.stacks.length - submitted);
    if (room <= 0) {
      // Another replica may start our jobs: its start is not our event, so a short timer backs this up.
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 20);
        onProgress = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      continue;
    }
    for (let n = 0; n < room; n++) {
      await queue.submit({ stack: args.stacks[submitted], operation: "up", requestedBy: name, source: "api", params: { version: "1.0.0" } });
      submitted++;
    }
    await new Promise((r) => setImmediate(r));
  }
  return { submitted, ms: performance.now() - t0 };
}

function stats(): { ran: number; errors: number; lastError: string; cpuMs: number; engineMaxPerStack: number } {
  const c = process.cpuUsage(cpu0);
  return { ran, errors, lastError, cpuMs: (c.user + c.system) / 1000, engineMaxPerStack: engine?.maxActivePerStack ?? 0 };
}

async function close(): Promise<void> {
  await queue?.shutdown(1_000);
  await store?.close();
  queue = undefined;
  store = undefined;
}

serve({ open, submit, stats, close });
