/**
 * memory per job: the service (startServer with the bench engine in-process, which holds no process:
 * bench/children/service-host.ts) with 20 deployments running at once on 20 stacks, each held in its
 * engine call. RSS after a full GC with the 20 running, minus RSS after a full GC before they were
 * submitted, per job. A fresh process per round (V8 keeps freed pages, so a second round in the same
 * process would measure nothing), warmed up with 2 jobs first. 3 rounds, median.
 */
import * as path from "path";
import { compiledChild } from "./lib/compile";
import type { Benchmark } from "./lib/bench";
import { waitJobEnd, withLog, writeEnvDir, writeTokens } from "./lib/fixtures";
import { httpJson, sleep } from "./lib/http";
import { IpcChild, rssBytes } from "./lib/proc";
import { MB, median } from "./lib/stats";

const JOBS = 20;
const ROUNDS = 3;

export const memoryPerJob: Benchmark = {
  name: "memory",
  aliases: ["memory-per-job"],
  title: `service RSS per running job, ${JOBS} slow jobs at once`,
  rows: {
    "per-job": `service RSS growth per running job with ${JOBS} running at once, after a full GC (median of ${ROUNDS} fresh processes)`,
  },
  timeoutMs: 60_000,
  async run(ctx) {
    const dir = ctx.tempDir("memory");
    const token = writeTokens(dir);
    const stacks = Array.from({ length: JOBS }, (_, i) => `m${String(i + 1).padStart(2, "0")}`);
    const envDir = writeEnvDir(dir, stacks);
    const perJob: number[] = [];
    const heapPerJob: number[] = [];
    const before: number[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      ctx.checkAborted();
      const host = new IpcChild(compiledChild("service-host"), {
        env: { BENCH_DATA_DIR: path.join(dir, `data-${round}`), BENCH_ENV_DIR: envDir, BENCH_MAX_CONCURRENT: String(JOBS), BENCH_UP_MODE: "hold", DEPLOYER_TOKENS_FILE: token.file },
        nodeArgs: ["--expose-gc"],
        name: "service-host",
        stdoutFile: path.join(dir, `service-${round}.log`),
      });
      ctx.defer(() => host.stop());
      try {
        const { url } = await host.call<{ url: string }>("info");
        const submit = async (stack: string) =>
          (
            await withLog(
              path.join(dir, `service-${round}.log`),
              httpJson<{ id: string }>(`${url}/v1/stacks/${stack}/deployments`, { method: "POST", headers: token.headers, body: { version: "1.0.0" }, expect: 202 }),
            )
          ).id;
        const runHeld = async (n: number, measure?: () => Promise<void>) => {
          const ids = await Promise.all(stacks.slice(0, n).map(submit));
          await host.call("whenHeld", { n, timeoutMs: 15_000 });
          await measure?.();
          const ends = ids.map((id) => waitJobEnd(url, id, token.headers, 15_000));
          await host.call("releaseAll");
          const jobs = await Promise.all(ends);
          const bad = jobs.find((j) => j.job.status !== "succeeded");
          if (bad) throw new Error(`job ${bad.job.id} ended ${bad.job.status}`);
        };
        await runHeld(2); // warm-up: the code paths, the prepared statements
        await sleep(100);
        const heap0 = (await host.call<NodeJS.MemoryUsage>("gc")).heapUsed;
        const rss0 = rssBytes(host.pid);
        let rss1 = rss0;
        let heap1 = heap0;
        await runHeld(JOBS, async () => {
          await sleep(100);
          heap1 = (await host.call<NodeJS.MemoryUsage>("gc")).heapUsed;
          rss1 = rssBytes(host.pid);
        });
        perJob.push((rss1 - rss0) / MB / JOBS);
        heapPerJob.push((heap1 - heap0) / MB / JOBS);
        before.push(rss0 / MB);
        ctx.log(`round ${round + 1}: RSS ${(rss0 / MB).toFixed(1)} → ${(rss1 / MB).toFixed(1)} MB with ${JOBS} running; heap +${((heap1 - heap0) / 1024 / JOBS).toFixed(0)} kB/job`);
      } finally {
        await host.stop();
      }
    }
    ctx.row("per-job", {
      what: this.rows["per-job"],
      unit: "MB",
      figure: median(perJob),
      budget: { op: "<=", value: 5 },
      runs: perJob,
      note: `JS heap growth per job ${(median(heapPerJob) * 1024).toFixed(0)} kB; service RSS before the jobs ${median(before).toFixed(0)} MB`,
    });
  },
};
