/**
 * startup: the service as `npm start` runs it, from spawn to the first 200 from /readyz (polled every
 * 10 ms, each probe on a new connection), over a new data directory (a cold start: the store is
 * created) and the repository's environments; then its RSS after 1 s idle (VmRSS). Baseline: a bare
 * Express app compiled and started the same way (plain node), to its first 200. Median of 3 of each, alternated.
 */
import * as path from "path";
import { compiledChild } from "./lib/compile";
import type { Benchmark } from "./lib/bench";
import { ServiceProcess, writeTokens } from "./lib/fixtures";
import { pollUntil200, sleep } from "./lib/http";
import { freePort, rssBytes, spawnNode, stopProcess, tail } from "./lib/proc";
import { MB, median } from "./lib/stats";

const RUNS = 3;
const IDLE_MS = 1_000;
const POLL_MS = 10;

async function bareStart(dir: string): Promise<{ readyMs: number; rss: number }> {
  const port = await freePort();
  const logFile = path.join(dir, `bare-${port}.log`);
  const spawned = spawnNode(compiledChild("bare-server"), { BENCH_PORT: String(port) }, logFile);
  try {
    const at = await pollUntil200(`http://127.0.0.1:${port}/readyz`, {
      intervalMs: POLL_MS,
      timeoutMs: 20_000,
      alive: () => spawned.child.exitCode === null && spawned.child.signalCode === null,
    }).catch((err: Error) => {
      throw new Error(`bare server: ${err.message} ${tail(logFile, 2)}`);
    });
    await sleep(IDLE_MS);
    return { readyMs: at - spawned.spawnedAt, rss: rssBytes(spawned.child.pid!) };
  } finally {
    await stopProcess(spawned.child, 2_000);
  }
}

export const startup: Benchmark = {
  name: "startup",
  title: "service start to /readyz 200, and idle RSS",
  rows: {
    ready: "service process spawn to the first 200 from /readyz, cold (new data dir), median of 3",
    rss: "service RSS (VmRSS) 1 s after ready, idle, median of 3",
  },
  timeoutMs: 60_000,
  async run(ctx) {
    const ready: number[] = [];
    const rss: number[] = [];
    const bareReady: number[] = [];
    const bareRss: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      ctx.checkAborted();
      const dir = ctx.tempDir(`run${i}`);
      const bare = await bareStart(dir);
      bareReady.push(bare.readyMs);
      bareRss.push(bare.rss / MB);
      ctx.checkAborted();
      const token = writeTokens(dir);
      const service = await ServiceProcess.start({ dir, token, pollMs: POLL_MS });
      ctx.defer(() => service.stop());
      try {
        await sleep(IDLE_MS);
        ready.push(service.readyMs);
        rss.push(service.rss() / MB);
      } finally {
        await service.stop();
      }
      ctx.log(`run ${i + 1}: service ready ${Math.round(service.readyMs)} ms, ${Math.round(rss[i])} MB; bare ${Math.round(bare.readyMs)} ms, ${Math.round(bareRss[i])} MB`);
    }
    ctx.row("ready", {
      what: this.rows.ready,
      unit: "ms",
      figure: median(ready),
      budget: { op: "<=", value: 1000 },
      baseline: median(bareReady),
      baselineWhat: "a bare Express app, compiled and started the same way, to its first 200",
      runs: ready,
    });
    ctx.row("rss", {
      what: this.rows.rss,
      unit: "MB",
      figure: median(rss),
      budget: { op: "<=", value: 120 },
      baseline: median(bareRss),
      baselineWhat: "the bare Express app's RSS 1 s after ready",
      runs: rss,
    });
  },
};
