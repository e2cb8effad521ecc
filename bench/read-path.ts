/**
 * read path: `GET /v1/jobs/:id` (a finished deployment with its steps and outputs, with a real token)
 * at 50 connections, against a bare Express handler returning that same document, both as separate
 * processes, load from a third (autocannon in bench/children/load.ts). Windows alternate
 * (bare, service, service, bare) so drift on a noisy machine hits both; figures are medians. One more
 * window sends 500 requests/s, evenly spaced, over up to 50 connections (open loop, the load child's
 * own pacer), for the latency of a service that is not saturated (as fast as answered, latency is
 * mostly queueing: mean = connections / throughput).
 *
 * Then the same while 2 offline deployments are executing in the service: two offline stacks, each
 * kept busy (a new deployment, with a new version so nothing is cached, is submitted as soon as the
 * previous one ends) from before the first window to after the last. The baseline is measured in the
 * same conditions (the jobs keep running while the bare server is loaded), so the ratio is the
 * service's own.
 *
 * `BENCH_CPU_PROFILE_DIR=<dir>` runs the service under `node --cpu-prof`: the profile of every window
 * (a `.cpuprofile` for Chrome DevTools or speedscope) is written there when the service stops.
 */
import { writeFileSync } from "fs";
import * as path from "path";
import { compiledChild } from "./lib/compile";
import type { Benchmark, BenchContext } from "./lib/bench";
import { ServiceProcess, writeEnvDir, writeTokens } from "./lib/fixtures";
import { httpJson, pollUntil200, sleep } from "./lib/http";
import { cpuText, freePort, IpcChild, spawnNode, stopProcess, withCpu } from "./lib/proc";
import { median, round } from "./lib/stats";
import type { LoadResult } from "./children/load";

const CONNECTIONS = 50;
/** The paced window's total rate (10 requests a second per connection). */
const PACED_RPS = 500;
const STACKS = ["bench-a", "bench-b"];

type Target = "bare" | "service";

/** Keeps one deployment running on each stack until stopped; counts what ran. */
class KeepBusy {
  private stopped = false;
  private readonly loops: Promise<void>[];
  finished = 0;
  failures: string[] = [];
  private counter = 0;

  constructor(
    private readonly service: ServiceProcess,
    private readonly ctx: BenchContext,
  ) {
    this.loops = STACKS.map((stack) => this.loop(stack));
  }

  private async loop(stack: string): Promise<void> {
    while (!this.stopped && !this.ctx.signal.aborted) {
      try {
        const job = await this.service.deploy(stack, `2.0.${++this.counter}`);
        const { job: done } = await this.service.waitEnd(job.id, 60_000);
        if (done.status === "succeeded") this.finished++;
        else this.failures.push(`${done.status}${done.error ? `: ${done.error.message}` : ""}`);
      } catch (err) {
        this.failures.push((err as Error).message);
        await sleep(200);
      }
      // Keeps failing: stop trying (the rows' notes say how many failed).
      if (this.failures.length > 5) return;
    }
  }

  /** Resolves once both stacks have a running job. */
  async running(timeoutMs: number): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const { jobs } = await httpJson<{ jobs: { status: string }[] }>(`${this.service.url}/v1/jobs?status=running&limit=10`, { headers: this.service.headers });
      if (jobs.length >= STACKS.length) return;
      if (performance.now() > deadline) throw new Error(`${jobs.length} of ${STACKS.length} background jobs running after ${timeoutMs} ms`);
      await sleep(50);
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.allSettled(this.loops);
  }
}

export const readPath: Benchmark = {
  name: "read",
  aliases: ["read-path"],
  title: "GET /v1/jobs/:id at 50 connections vs a bare Express handler",
  rows: {
    rps: "GET /v1/jobs/:id requests/s at 50 connections (median of 2 windows); the budget is on the ratio to the bare handler",
    p99: "GET /v1/jobs/:id p99 latency at 50 connections (median of 2 windows)",
    "p99-paced": "GET /v1/jobs/:id p99 latency at 500 requests/s in total, evenly spaced over up to 50 connections (open loop, one window): the latency when the service is not saturated",
    "loaded.rps": "the same while 2 offline deployments execute in the service; the budget is on the ratio to the bare handler under the same background load",
    "loaded.p99": "p99 latency while 2 offline deployments execute in the service",
  },
  timeoutMs: 120_000,
  async run(ctx) {
    const dir = ctx.tempDir("svc");
    const token = writeTokens(dir);
    const envDir = writeEnvDir(dir, STACKS);
    const profileDir = process.env.BENCH_CPU_PROFILE_DIR;
    const nodeArgs = profileDir ? ["--cpu-prof", `--cpu-prof-dir=${path.resolve(profileDir)}`] : [];
    const service = await ServiceProcess.start({ dir, token, envDir, maxConcurrent: 2, nodeArgs });
    ctx.defer(() => service.stop());
    ctx.log(`service ready in ${Math.round(service.readyMs)} ms; deploying ${STACKS[0]} for the job to read`);

    // The job to read: a finished first deployment (steps, changes, outputs).
    const first = await service.deploy(STACKS[0], "1.0.0");
    await service.waitSucceeded(first.id, 60_000);
    const jobUrl = `${service.url}/v1/jobs/${first.id}`;
    const body = await httpJson(jobUrl, { headers: service.headers });
    const bodyFile = path.join(dir, "job.json");
    writeFileSync(bodyFile, JSON.stringify(body));
    const bodyBytes = Buffer.byteLength(JSON.stringify(body));

    const port = await freePort();
    const bare = spawnNode(compiledChild("bare-server"), { BENCH_PORT: String(port), BENCH_BODY_FILE: bodyFile }, path.join(dir, "bare.log"));
    ctx.defer(() => stopProcess(bare.child, 2_000));
    const bareBase = `http://127.0.0.1:${port}`;
    await pollUntil200(`${bareBase}/readyz`, { intervalMs: 20, timeoutMs: 20_000, alive: () => bare.child.exitCode === null });
    const bareUrl = `${bareBase}/v1/jobs/${first.id}`;

    const load = new IpcChild(compiledChild("load"));
    ctx.defer(() => load.stop());
    await load.started();

    type Window = LoadResult & { cpu: number; loadCpu: number };
    const fire = async (target: Target, durationSec: number, rate?: number): Promise<Window> => {
      ctx.checkAborted();
      const url = target === "bare" ? bareUrl : jobUrl;
      const pid = target === "bare" ? bare.child.pid! : service.pid;
      const { result: r, cpu } = await withCpu({ [target]: pid, load: load.pid }, () =>
        rate
          ? load.call<LoadResult>("paced", { url, connections: CONNECTIONS, rate, durationSec, headers: service.headers }, (durationSec + 30) * 1000)
          : load.call<LoadResult>("run", { url, connections: CONNECTIONS, durationSec, headers: service.headers }, (durationSec + 30) * 1000),
      );
      if (r.non2xx > 0 || r.errors > 0 || r.timeouts > 0 || r.ok === 0) {
        throw new Error(`${target}: ${r.ok} ok, ${r.non2xx} non-2xx, ${r.errors} errors, ${r.timeouts} timeouts`);
      }
      ctx.log(`${target}: ${Math.round(r.rps)} req/s, p50 ${round(r.p50)} ms, p99 ${round(r.p99)} ms; CPU ${cpuText(cpu)}`);
      return { ...r, cpu: cpu[target], loadCpu: cpu.load };
    };
    /** Two rounds, alternating the order; returns the medians. */
    const measure = async () => {
      const runs: Record<Target, Window[]> = { bare: [], service: [] };
      for (const order of [["bare", "service"], ["service", "bare"]] as Target[][]) {
        for (const t of order) runs[t].push(await fire(t, ctx.durationSec));
      }
      const m = (t: Target, k: "rps" | "p99") => median(runs[t].map((r) => r[k]));
      const cpu = (t: Target, k: "cpu" | "loadCpu") => median(runs[t].map((r) => r[k]));
      const cpuNote = `CPU of one core: service ${Math.round(cpu("service", "cpu") * 100)}% (load generator ${Math.round(cpu("service", "loadCpu") * 100)}%), bare ${Math.round(cpu("bare", "cpu") * 100)}% (load generator ${Math.round(cpu("bare", "loadCpu") * 100)}%)`;
      return { runs, cpuNote, rps: m("service", "rps"), p99: m("service", "p99"), bareRps: m("bare", "rps"), bareP99: m("bare", "p99") };
    };

    // Warm-up (JIT, connection setup), not counted.
    await fire("bare", 1);
    await fire("service", 1);

    const idle = await measure();
    const rpsRow = (metric: "rps" | "loaded.rps", m: Awaited<ReturnType<typeof measure>>, note: string) =>
      ctx.row(metric, {
        what: this.rows[metric],
        unit: "req/s",
        figure: m.rps,
        budget: { op: ">=", value: 0.5, on: "ratio" },
        baseline: m.bareRps,
        baselineWhat: `a bare Express handler returning the same ${bodyBytes}-byte JSON`,
        runs: m.runs.service.map((r) => r.rps),
        note,
      });
    const p99Row = (metric: "p99" | "loaded.p99", m: Awaited<ReturnType<typeof measure>>, note?: string) =>
      ctx.row(metric, {
        what: this.rows[metric],
        unit: "ms",
        figure: m.p99,
        budget: { op: "<=", value: 20 },
        baseline: m.bareP99,
        baselineWhat: "the bare handler's p99",
        runs: m.runs.service.map((r) => r.p99),
        note,
      });
    rpsRow("rps", idle, `${ctx.durationSec} s windows; bare runs ${idle.runs.bare.map((r) => Math.round(r.rps)).join(", ")} req/s; ${idle.cpuNote}`);
    p99Row("p99", idle, `bare runs ${idle.runs.bare.map((r) => r.p99).join(", ")} ms`);

    // At 50 connections as fast as answered, latency is mostly queueing (mean = 50 / throughput):
    // the same at a fixed PACED_RPS shows the latency of a service that is not saturated.
    const paced = await fire("service", ctx.durationSec, PACED_RPS);
    ctx.row("p99-paced", {
      what: this.rows["p99-paced"],
      unit: "ms",
      figure: paced.p99,
      budget: { op: "<=", value: 20 },
      note: `${Math.round(paced.rps)} req/s achieved, p50 ${round(paced.p50)} ms; CPU of one core: service ${Math.round(paced.cpu * 100)}%`,
    });

    ctx.log("starting 2 background offline deployments");
    const busy = new KeepBusy(service, ctx);
    ctx.defer(() => busy.stop());
    try {
      await busy.running(30_000);
      const loaded = await measure();
      if (busy.failures.length > 5) throw new Error(`the background deployments kept failing: ${busy.failures.slice(-2).join("; ")}`);
      const note = `${busy.finished} background deployments finished during the windows${busy.failures.length ? `, ${busy.failures.length} failed (${busy.failures[0]})` : ""}`;
      rpsRow("loaded.rps", loaded, `${note}; bare runs ${loaded.runs.bare.map((r) => Math.round(r.rps)).join(", ")} req/s; ${loaded.cpuNote}`);
      p99Row("loaded.p99", loaded, note);
    } finally {
      await busy.stop();
    }
  },
};
