/**
 * replicas: 1,000 deployments on the no-op bench engine across 50 stacks through three replicas, each
 * a process of its own (bench/children/queue-replica.ts: the real JobQueue on its own PostgresStore)
 * over one PostgreSQL database, the jobs submitted round-robin to the three; beside it, in the same
 * run, the baseline: one replica on SQLite, the same child, the same submissions. Runs alternate
 * (baseline, replicas, replicas, baseline) after a 100-job warm-up of each, every run over a new
 * database (a new data directory for SQLite).
 *
 * Everything is read from the job rows once every job has ended: jobs/s from the first job's
 * createdAt to the last one's finishedAt; the most jobs ever running at once on one stack, from the
 * rows' startedAt–finishedAt intervals (must be 1); the p99 from submit (createdAt) to start
 * (startedAt). Each replica runs at most 8 jobs at once (the queue benchmark's cap) and keeps at most
 * 200 / replicas of its own submissions queued (the queue benchmark's 200 outstanding, shared).
 *
 * PostgreSQL is a throwaway cluster started here (tools/postgres-cluster.ts, as the tests do):
 * without PostgreSQL installed the rows are errors saying so.
 */
import * as os from "os";
import * as path from "path";
import { Client } from "pg";
import { connectStore, type Job } from "../automation/store";
import { postgresBinDir, startLocalCluster } from "../tools/postgres-cluster";
import type { Benchmark, BenchContext } from "./lib/bench";
import { compiledChild } from "./lib/compile";
import { writeEnvDir } from "./lib/fixtures";
import { IpcChild } from "./lib/proc";
import { max, median, percentile } from "./lib/stats";

const JOBS = 1_000;
const WARMUP_JOBS = 100;
const STACKS = 50;
const REPLICAS = 3;
const CAP = 8;
const BACKLOG = 200;
const BURST = 50;
const RUN_DEADLINE_MS = 60_000;

type Side = "postgres" | "sqlite";

interface RunResult {
  readonly side: Side;
  readonly jobsPerSec: number;
  readonly maxOnStack: number;
  readonly maxRunning: number;
  readonly p99StartMs: number;
  readonly medianStartMs: number;
  readonly cpuMsPerJob: number;
  /** The PostgreSQL server's CPU time per job (0 for SQLite, which runs inside the replica). */
  readonly dbCpuMsPerJob: number;
  /** How many jobs each replica ran. */
  readonly ranBy: number[];
}

/** The most intervals [start, end) open at once. */
function maxOverlap(intervals: readonly (readonly [number, number])[]): number {
  const points: [number, number][] = [];
  for (const [s, e] of intervals) points.push([s, 1], [e, -1]);
  // An end at the same millisecond as a start comes first: a job that starts as the previous one ends does not overlap it.
  points.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  let open = 0;
  let most = 0;
  for (const [, d] of points) most = Math.max(most, (open += d));
  return most;
}

async function allJobs(dataDir: string, databaseUrl: string | undefined): Promise<Job[]> {
  const store = await connectStore({ dataDir, databaseUrl });
  try {
    const jobs: Job[] = [];
    let before: string | undefined;
    for (;;) {
      const page = await store.listJobs({ limit: 500, before });
      jobs.push(...page);
      if (page.length < 500) return jobs;
      before = page[page.length - 1].id;
    }
  } finally {
    await store.close();
  }
}

async function admin(template: string, sql: string): Promise<void> {
  const client = new Client({ connectionString: template.replace("{db}", "postgres") });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}

export const replicasThroughput: Benchmark = {
  name: "replicas",
  title: `${JOBS} no-op jobs across ${STACKS} stacks: ${REPLICAS} replicas on one PostgreSQL, beside one replica on SQLite (cap ${CAP} each)`,
  rows: {
    throughput: `jobs/s, ${JOBS} no-op deployments across ${STACKS} stacks submitted round-robin to ${REPLICAS} replicas (JobQueue processes) on one PostgreSQL; baseline one replica on SQLite (median of 2 runs each)`,
    "max-per-stack": `the most jobs ever running at once on one stack, from the job rows' startedAt–finishedAt, over the ${REPLICAS}-replica runs (the baseline's in the note)`,
    "p99-start": `p99 from submit (createdAt) to start (startedAt), ${REPLICAS} replicas on PostgreSQL; baseline one on SQLite (median of runs)`,
    overhead: `CPU time of the replicas' processes per job, ${REPLICAS} on PostgreSQL together; baseline one on SQLite (the database server's own CPU is not counted)`,
    "cpu-per-job": `CPU time per job of everything that runs it: the ${REPLICAS} replicas and the PostgreSQL server (its postmaster and backends, from /proc); baseline the one SQLite replica (its database runs inside it)`,
  },
  timeoutMs: 300_000,
  async run(ctx: BenchContext) {
    if (postgresBinDir() === undefined) throw new Error("PostgreSQL is not installed (no initdb in /usr/lib/postgresql/*/bin or PATH): apt-get install -y postgresql");
    const dir = ctx.tempDir("replicas");
    const stacks = Array.from({ length: STACKS }, (_, i) => `q${String(i + 1).padStart(2, "0")}`);
    const envDir = writeEnvDir(dir, stacks);
    const cluster = startLocalCluster();
    ctx.defer(() => cluster.stop());
    const child = compiledChild("queue-replica");
    // As for `read`: BENCH_CPU_PROFILE_DIR=<dir> runs each replica under `node --cpu-prof`.
    const profileDir = process.env.BENCH_CPU_PROFILE_DIR;
    const nodeArgs = profileDir ? ["--cpu-prof", `--cpu-prof-dir=${path.resolve(profileDir)}`] : [];
    let runNo = 0;

    const runOnce = async (side: Side, jobs: number, label: string): Promise<RunResult> => {
      ctx.checkAborted();
      const n = side === "postgres" ? REPLICAS : 1;
      const dataDir = path.join(dir, `${label}-${++runNo}`);
      let databaseUrl: string | undefined;
      if (side === "postgres") {
        const db = `bench_replicas_${runNo}`;
        await admin(cluster.template, `CREATE DATABASE ${db}`);
        ctx.defer(() => admin(cluster.template, `DROP DATABASE IF EXISTS ${db} WITH (FORCE)`).catch(() => undefined));
        databaseUrl = cluster.template.replace("{db}", db);
      }
      const children = Array.from({ length: n }, () => new IpcChild(child, { nodeArgs }));
      try {
        // The first opens the store alone (a new database gets its schema once), then the others.
        const pids = [await children[0].call<{ pid: number }>("open", { name: "r1", dataDir, databaseUrl, envDir, cap: CAP })];
        pids.push(...(await Promise.all(children.slice(1).map((c, i) => c.call<{ pid: number }>("open", { name: `r${i + 2}`, dataDir, databaseUrl, envDir, cap: CAP })))));
        const shares: string[][] = children.map(() => []);
        for (let i = 0; i < jobs; i++) shares[i % n].push(stacks[i % STACKS]);
        const deadline = Date.now() + RUN_DEADLINE_MS;
        const dbCpu0 = side === "postgres" ? cluster.cpuMs() : undefined;
        await Promise.all(children.map((c, i) => c.call("submit", { stacks: shares[i], maxQueued: Math.ceil(BACKLOG / n), burst: BURST }, RUN_DEADLINE_MS)));
        // Every job ran somewhere: the replicas' own counts add up (polled; the parent is not measured).
        let stats: { ran: number; errors: number; lastError: string; cpuMs: number; engineMaxPerStack: number }[];
        for (;;) {
          stats = await Promise.all(children.map((c) => c.call<(typeof stats)[number]>("stats")));
          if (stats.reduce((s, x) => s + x.ran, 0) >= jobs) break;
          if (Date.now() > deadline) throw new Error(`${label}: ${stats.reduce((s, x) => s + x.ran, 0)} of ${jobs} jobs done after ${RUN_DEADLINE_MS / 1000} s`);
          await new Promise((r) => setTimeout(r, 25));
        }
        const errors = stats.reduce((s, x) => s + x.errors, 0);
        if (errors > 0) throw new Error(`${label}: the queues reported ${errors} errors (${stats.map((s) => s.lastError).filter(Boolean)[0]})`);
        await Promise.all(children.map((c) => c.call("close")));
        const dbCpu1 = side === "postgres" ? cluster.cpuMs() : undefined;
        const rows = await allJobs(dataDir, databaseUrl);
        const bad = rows.filter((j) => j.status !== "succeeded");
        if (rows.length !== jobs || bad.length > 0) {
          throw new Error(`${label}: ${rows.length} jobs stored, ${bad.length} did not succeed (${bad.slice(0, 3).map((j) => `${j.status}: ${j.error?.message ?? ""}`).join("; ")})`);
        }
        const t = (s: string | undefined) => Date.parse(s!);
        const byStack = new Map<string, [number, number][]>();
        for (const j of rows) {
          const list = byStack.get(j.stack) ?? [];
          list.push([t(j.startedAt), t(j.finishedAt)]);
          byStack.set(j.stack, list);
        }
        const first = Math.min(...rows.map((j) => t(j.createdAt)));
        const last = Math.max(...rows.map((j) => t(j.finishedAt)));
        const starts = rows.map((j) => t(j.startedAt) - t(j.createdAt));
        const result: RunResult = {
          side,
          jobsPerSec: (jobs / Math.max(1, last - first)) * 1000,
          maxOnStack: Math.max(max([...byStack.values()].map(maxOverlap)), max(stats.map((s) => s.engineMaxPerStack))),
          maxRunning: maxOverlap(rows.map((j) => [t(j.startedAt), t(j.finishedAt)] as [number, number])),
          p99StartMs: percentile(starts, 99),
          medianStartMs: median(starts),
          cpuMsPerJob: stats.reduce((s, x) => s + x.cpuMs, 0) / jobs,
          dbCpuMsPerJob: dbCpu0 !== undefined && dbCpu1 !== undefined ? (dbCpu1 - dbCpu0) / jobs : side === "postgres" ? NaN : 0,
          ranBy: stats.map((s) => s.ran),
        };
        ctx.log(
          `${label}: ${Math.round(result.jobsPerSec)} jobs/s, submit→start p50 ${Math.round(result.medianStartMs)} ms p99 ${Math.round(result.p99StartMs)} ms, ` +
            `max ${result.maxOnStack} on one stack, ${result.maxRunning} running at once, ${result.cpuMsPerJob.toFixed(2)} ms CPU/job` +
            (side === "postgres" ? ` (+ ${result.dbCpuMsPerJob.toFixed(2)} ms in PostgreSQL)` : "") +
            `, ran by replica ${result.ranBy.join(" / ")}`,
        );
        return result;
      } finally {
        await Promise.all(children.map((c) => c.stop()));
      }
    };

    await runOnce("sqlite", WARMUP_JOBS, "warmup-sqlite");
    await runOnce("postgres", WARMUP_JOBS, "warmup-postgres");
    const runs: RunResult[] = [];
    for (const side of ["sqlite", "postgres", "postgres", "sqlite"] as const) runs.push(await runOnce(side, JOBS, side));
    const pg = runs.filter((r) => r.side === "postgres");
    const lite = runs.filter((r) => r.side === "sqlite");

    ctx.row("throughput", {
      what: this.rows.throughput,
      unit: "jobs/s",
      figure: median(pg.map((r) => r.jobsPerSec)),
      baseline: median(lite.map((r) => r.jobsPerSec)),
      baselineWhat: "one replica on SQLite, the same child and submissions",
      budget: { op: ">=", value: 1, on: "ratio" },
      runs: pg.map((r) => r.jobsPerSec),
      note: `SQLite runs ${lite.map((r) => Math.round(r.jobsPerSec)).join(", ")} jobs/s; jobs ran by replica ${pg.map((r) => r.ranBy.join("/")).join(", ")}; most running at once ${max(pg.map((r) => r.maxRunning))} (cap ${CAP} × ${REPLICAS})`,
    });
    ctx.row("max-per-stack", {
      what: this.rows["max-per-stack"],
      unit: "jobs",
      figure: max(pg.map((r) => r.maxOnStack)),
      baseline: max(lite.map((r) => r.maxOnStack)),
      baselineWhat: "one replica on SQLite",
      budget: { op: "==", value: 1 },
    });
    ctx.row("p99-start", {
      what: this.rows["p99-start"],
      unit: "ms",
      figure: median(pg.map((r) => r.p99StartMs)),
      baseline: median(lite.map((r) => r.p99StartMs)),
      baselineWhat: "one replica on SQLite",
      runs: pg.map((r) => r.p99StartMs),
      note: `median submit→start ${Math.round(median(pg.map((r) => r.medianStartMs)))} ms (SQLite ${Math.round(median(lite.map((r) => r.medianStartMs)))} ms), with up to ${BACKLOG} queued`,
    });
    ctx.row("overhead", {
      what: this.rows.overhead,
      unit: "ms",
      figure: median(pg.map((r) => r.cpuMsPerJob)),
      baseline: median(lite.map((r) => r.cpuMsPerJob)),
      baselineWhat: "one replica on SQLite",
      runs: pg.map((r) => r.cpuMsPerJob),
    });
    // What the throughput row cannot show on a small machine: the replicas add no cores here, so jobs/s
    // is bounded by the cores over the CPU a job costs all the processes that run it.
    const cores = os.cpus().length;
    const total = pg.map((r) => r.cpuMsPerJob + r.dbCpuMsPerJob);
    ctx.row("cpu-per-job", {
      what: this.rows["cpu-per-job"],
      unit: "ms",
      figure: median(total),
      baseline: median(lite.map((r) => r.cpuMsPerJob)),
      baselineWhat: "one replica on SQLite",
      runs: total,
      note:
        `the PostgreSQL server ${median(pg.map((r) => r.dbCpuMsPerJob)).toFixed(2)} ms of it; all sharing ${cores} cores, ${REPLICAS} replicas and their database ` +
        `can run at most ${Math.round((cores * 1000) / median(total))} jobs/s (${cores} × 1000 / ${median(total).toFixed(1)} ms), whatever the replicas do; ` +
        `the throughput budget needs the replicas (and the database) on cores of their own`,
    });
  },
};
