/**
 * The load generator, in its own process: runs autocannon (as a library) against a URL on request and
 * answers with the figures the bench needs. Commands: `run {url, connections, durationSec, headers}`
 * (autocannon, as fast as answered) and `paced {url, connections, rate, durationSec, headers}` (open
 * loop at a fixed rate).
 */
import autocannon from "autocannon";
import { Agent, request } from "http";
import { serve } from "../lib/ipc-child";
import { percentile } from "../lib/stats";

export interface LoadResult {
  readonly rps: number;
  readonly p50: number;
  readonly p99: number;
  readonly max: number;
  readonly total: number;
  readonly ok: number;
  readonly non2xx: number;
  readonly errors: number;
  readonly timeouts: number;
  readonly durationSec: number;
}

serve({
  run: async (args: { url: string; connections: number; durationSec: number; headers?: Record<string, string> }): Promise<LoadResult> => {
    const result = await autocannon({
      url: args.url,
      connections: args.connections,
      duration: args.durationSec,
      headers: args.headers,
      timeout: 10,
    });
    const ok = result["2xx"];
    return {
      rps: ok / result.duration,
      p50: result.latency.p50,
      p99: result.latency.p99,
      max: result.latency.max,
      total: result.requests.total,
      ok,
      non2xx: result.non2xx,
      errors: result.errors,
      timeouts: result.timeouts,
      durationSec: result.duration,
    };
  },

  /**
   * Open loop: requests sent at evenly spaced times (`rate` a second over at most `connections`
   * keep-alive connections), whatever the answers do. Latency is measured from when a request was due,
   * so a request that waited for a free connection counts its wait. (autocannon's own rate option
   * sends each connection's quota in a burst at the start of every second, which measures the burst.)
   */
  paced: async (args: { url: string; connections: number; rate: number; durationSec: number; headers?: Record<string, string> }): Promise<LoadResult> => {
    const agent = new Agent({ keepAlive: true, maxSockets: args.connections });
    const latencies: number[] = [];
    let ok = 0;
    let non2xx = 0;
    let errors = 0;
    let timeouts = 0;
    const inflight = new Set<Promise<void>>();
    const one = (due: number) =>
      new Promise<void>((resolve) => {
        const req = request(args.url, { agent, headers: args.headers }, (res) => {
          res.resume();
          res.on("end", () => {
            latencies.push(performance.now() - due);
            if (res.statusCode !== undefined && res.statusCode >= 200 && res.statusCode < 300) ok++;
            else non2xx++;
            resolve();
          });
        });
        req.setTimeout(10_000, () => {
          timeouts++;
          req.destroy();
        });
        req.on("error", () => {
          errors++;
          resolve();
        });
        req.end();
      });
    const total = Math.round(args.rate * args.durationSec);
    const interval = 1000 / args.rate;
    const start = performance.now();
    for (let i = 0; i < total; i++) {
      const due = start + i * interval;
      const wait = due - performance.now();
      if (wait > 1) await new Promise((r) => setTimeout(r, wait));
      const p = one(due);
      inflight.add(p);
      void p.then(() => inflight.delete(p));
    }
    await Promise.all(inflight);
    const seconds = (performance.now() - start) / 1000;
    agent.destroy();
    return {
      rps: ok / seconds,
      p50: percentile(latencies, 50),
      p99: percentile(latencies, 99),
      max: percentile(latencies, 100),
      total: ok + non2xx,
      ok,
      non2xx,
      errors,
      timeouts,
      durationSec: seconds,
    };
  },
});
