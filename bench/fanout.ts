/**
 * fan-out: 200 subscribers on one job's event stream (`GET /v1/jobs/:id/events`, the real SSE
 * endpoint, with a token), in a process of their own, while the job's engine emits 1,000 events at a
 * fixed rate. The service runs in its own process with the bench engine in-process
 * (bench/children/service-host.ts); each event carries its emission time (same machine clock), and
 * the subscribers record when it arrived. Per event: when the last subscriber got it; p50/p99 over
 * events. RSS growth: the service's peak VmRSS during the round minus before the subscribers connected.
 * 3 rounds (a new job each), medians.
 */
import * as path from "path";
import { compiledChild } from "./lib/compile";
import type { BenchContext, Benchmark } from "./lib/bench";
import { withLog, writeEnvDir, writeTokens, type Token } from "./lib/fixtures";
import { postgresBinDir, startLocalCluster } from "../tools/postgres-cluster";
import { httpJson } from "./lib/http";
import { cpuText, IpcChild, rssBytes, withCpu } from "./lib/proc";
import { MB, max, median } from "./lib/stats";

const SUBSCRIBERS = 200;
const EVENTS = 1_000;
const INTERVAL_MS = 4;
const ROUNDS = 3;

interface Collected {
  subscribers: number;
  ended: number;
  errors: string[];
  delivered: number;
  missing: number;
  duplicates: number;
  toAllP50: number;
  toAllP99: number;
  toAllMax: number;
  eachP50: number;
  eachP99: number;
}

export const fanout: Benchmark = {
  name: "fanout",
  aliases: ["fan-out"],
  title: `${SUBSCRIBERS} SSE subscribers on one job emitting ${EVENTS} events (one every ${INTERVAL_MS} ms)`,
  rows: {
    p99: `p99 over events of the time until all ${SUBSCRIBERS} subscribers had the event (median of ${ROUNDS} rounds)`,
    p50: "p50 of the same",
    missing: "events not delivered to some subscriber, or delivered twice (all rounds)",
    rss: "service RSS growth during a round: peak minus before the subscribers connected (median of rounds)",
  },
  timeoutMs: 75_000,
  async run(ctx) {
    const dir = ctx.tempDir("fanout");
    const token = writeTokens(dir);
    const envDir = writeEnvDir(dir, ["fan"]);
    const host = new IpcChild(compiledChild("service-host"), {
      env: { BENCH_DATA_DIR: path.join(dir, "data"), BENCH_ENV_DIR: envDir, BENCH_MAX_CONCURRENT: "2", BENCH_UP_MODE: "emit", DEPLOYER_TOKENS_FILE: token.file },
      name: "service-host",
      stdoutFile: path.join(dir, "service.log"),
    });
    ctx.defer(() => host.stop());
    const subs = new IpcChild(compiledChild("subscribers"), { name: "subscribers" });
    ctx.defer(() => subs.stop());
    const { url } = await host.call<{ url: string }>("info");
    await subs.started();

    const { results, cpus } = await measureRounds(ctx, token, ROUNDS, async (round) => {
      const job = await withLog(
        path.join(dir, "service.log"),
        httpJson<{ id: string }>(`${url}/v1/stacks/fan/deployments`, { method: "POST", headers: token.headers, body: { version: `1.0.${round}` }, expect: 202 }),
      );
      await host.call("whenHeld", { n: 1, timeoutMs: 10_000 });
      return { jobId: job.id, emitter: host, eventsUrl: `${url}/v1/jobs/${job.id}/events` };
    }, subs);
    ctx.row("p99", {
      what: this.rows.p99,
      unit: "ms",
      figure: median(results.map((r) => r.toAllP99)),
      budget: { op: "<=", value: 50 },
      runs: results.map((r) => r.toAllP99),
      note:
        `per delivery (subscriber × event) p99 ${median(results.map((r) => r.eachP99)).toFixed(1)} ms; worst event ${max(results.map((r) => r.toAllMax)).toFixed(1)} ms; ` +
        `CPU while emitting (of one core): ${cpuText({ service: median(cpus.map((c) => c.service)), subscribers: median(cpus.map((c) => c.subscribers)) })}`,
    });
    ctx.row("p50", { what: this.rows.p50, unit: "ms", figure: median(results.map((r) => r.toAllP50)), runs: results.map((r) => r.toAllP50) });
    ctx.row("missing", {
      what: this.rows.missing,
      unit: "events",
      figure: results.reduce((n, r) => n + r.missing + r.duplicates, 0),
      budget: { op: "==", value: 0 },
    });
    ctx.row("rss", {
      what: this.rows.rss,
      unit: "MB",
      figure: median(results.map((r) => r.rssGrowthMB)),
      runs: results.map((r) => r.rssGrowthMB),
    });
  },
};

type Round = Collected & { rssGrowthMB: number };

/**
 * `rounds` rounds: `start` posts a deployment and says which service process runs it (its engine
 * emits) and where the subscribers read it; the subscribers connect, the engine emits, the
 * subscribers report. The RSS growth is the emitting process's.
 */
async function measureRounds(
  ctx: BenchContext,
  token: Token,
  rounds: number,
  start: (round: number) => Promise<{ jobId: string; emitter: IpcChild; eventsUrl: string; label?: string }>,
  subs: IpcChild,
): Promise<{ results: Round[]; cpus: Record<string, number>[]; labels: string[] }> {
  const results: Round[] = [];
  const cpus: Record<string, number>[] = [];
  const labels: string[] = [];
  for (let round = 0; round < rounds; round++) {
    ctx.checkAborted();
    const { emitter: host, eventsUrl, label } = await start(round);
    labels.push(label ?? "");
    const rssBefore = rssBytes(host.pid);
    let peak = rssBefore;
    const sampler = setInterval(() => {
      try {
        peak = Math.max(peak, rssBytes(host.pid));
      } catch {
        // gone; the calls below fail
      }
    }, 25);
    try {
      await subs.call("connect", { url: eventsUrl, count: SUBSCRIBERS, expected: EVENTS, headers: token.headers, timeoutMs: 15_000 }, 20_000);
      const { result, cpu } = await withCpu({ service: host.pid, subscribers: subs.pid }, async () => {
        const emitted = await host.call<{ ms: number }>("emit", { count: EVENTS, intervalMs: INTERVAL_MS }, 60_000);
        const collected = await subs.call<Collected>("collect", { timeoutMs: 15_000 }, 20_000);
        return { emitted, c: collected };
      });
      const { emitted, c } = result;
      cpus.push(cpu);
      peak = Math.max(peak, rssBytes(host.pid));
      if (c.errors.length > 0) throw new Error(`subscribers: ${c.errors.join("; ")}`);
      if (c.ended !== SUBSCRIBERS) throw new Error(`${c.ended} of ${SUBSCRIBERS} streams ended`);
      results.push({ ...c, rssGrowthMB: (peak - rssBefore) / MB });
      ctx.log(
        `round ${round + 1}${label ? ` (${label})` : ""}: emitted in ${Math.round(emitted.ms)} ms; to all p50 ${c.toAllP50.toFixed(1)} ms, p99 ${c.toAllP99.toFixed(1)} ms, max ${c.toAllMax.toFixed(1)} ms; ` +
          `missing ${c.missing}, duplicates ${c.duplicates}; RSS +${((peak - rssBefore) / MB).toFixed(1)} MB; CPU ${cpuText(cpu)}`,
      );
    } finally {
      clearInterval(sampler);
    }
  }
  return { results, cpus, labels };
}

/**
 * fan-out across replicas: the same 200 subscribers and 1,000 events, with two service processes on
 * one PostgreSQL (a throwaway cluster). Rounds alternate: the subscribers on the replica that does
 * not run the job (its events reach them through NOTIFY and reads of the table), then on the one that
 * runs it (the baseline, in the same run).
 */
export const fanoutReplicas: Benchmark = {
  name: "fanout-replicas",
  title: `${SUBSCRIBERS} SSE subscribers on another replica than the one whose job emits ${EVENTS} events (PostgreSQL)`,
  rows: {
    p99: `p99 over events of the time until all ${SUBSCRIBERS} subscribers on the other replica had the event; baseline: subscribers on the replica running the job (median of rounds)`,
    missing: "events not delivered to some subscriber on the other replica, or delivered twice (all rounds)",
  },
  timeoutMs: 150_000,
  async run(ctx) {
    if (postgresBinDir() === undefined) throw new Error("PostgreSQL is not installed (no initdb in /usr/lib/postgresql/*/bin or PATH): apt-get install -y postgresql");
    const dir = ctx.tempDir("fanout-replicas");
    const token = writeTokens(dir);
    const envDir = writeEnvDir(dir, ["fan"]);
    const cluster = startLocalCluster();
    ctx.defer(() => cluster.stop());
    const databaseUrl = cluster.template.replace("{db}", "postgres");
    const hosts: IpcChild[] = [];
    const urls: string[] = [];
    for (const name of ["a", "b"]) {
      const host = new IpcChild(compiledChild("service-host"), {
        env: { BENCH_DATA_DIR: path.join(dir, `data-${name}`), BENCH_ENV_DIR: envDir, BENCH_MAX_CONCURRENT: "2", BENCH_UP_MODE: "emit", BENCH_DATABASE_URL: databaseUrl, DEPLOYER_TOKENS_FILE: token.file },
        name: `service-host-${name}`,
        stdoutFile: path.join(dir, `service-${name}.log`),
      });
      ctx.defer(() => host.stop());
      // One after the other: the first migrates the new database.
      urls.push((await host.call<{ url: string }>("info")).url);
      hosts.push(host);
    }
    const subs = new IpcChild(compiledChild("subscribers"), { name: "subscribers" });
    ctx.defer(() => subs.stop());
    await subs.started();
    const ROUNDS_EACH = 3;
    const { results, labels } = await measureRounds(ctx, token, 2 * ROUNDS_EACH, async (round) => {
      const job = await httpJson<{ id: string }>(`${urls[0]}/v1/stacks/fan/deployments`, { method: "POST", headers: token.headers, body: { version: `1.0.${round}` }, expect: 202 });
      // Either replica may run it (the other polls and is woken by NOTIFY): the one whose engine holds it.
      const runs = await Promise.any(hosts.map((h, i) => h.call("whenHeld", { n: 1, timeoutMs: 10_000 }).then(() => i)));
      const across = round % 2 === 0;
      const reader = across ? 1 - runs : runs;
      return { jobId: job.id, emitter: hosts[runs], eventsUrl: `${urls[reader]}/v1/jobs/${job.id}/events`, label: across ? "other replica" : "same replica" };
    }, subs);
    const across = results.filter((_, i) => labels[i] === "other replica");
    const same = results.filter((_, i) => labels[i] === "same replica");
    ctx.row("p99", {
      what: this.rows.p99,
      unit: "ms",
      figure: median(across.map((r) => r.toAllP99)),
      budget: { op: "<=", value: 50 },
      baseline: median(same.map((r) => r.toAllP99)),
      runs: across.map((r) => r.toAllP99),
      note: `per delivery p99 ${median(across.map((r) => r.eachP99)).toFixed(1)} ms across, ${median(same.map((r) => r.eachP99)).toFixed(1)} ms on the same replica; p50 ${median(across.map((r) => r.toAllP50)).toFixed(1)} ms across`,
    });
    ctx.row("missing", { what: this.rows.missing, unit: "events", figure: across.reduce((n, r) => n + r.missing + r.duplicates, 0), budget: { op: "==", value: 0 } });
  },
};
