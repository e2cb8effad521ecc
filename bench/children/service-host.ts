/**
 * The service with the bench engine in its own process: `startServer` (the real store, queue, routes,
 * SSE, metrics, logging) with `benchDeps` around a BenchEngine, listening on 127.0.0.1:0. The engine
 * runs in-process and holds no process, so this process's RSS is the service's. Configured by
 * BENCH_DATA_DIR, BENCH_ENV_DIR, BENCH_MAX_CONCURRENT, BENCH_UP_MODE (noop | hold | emit),
 * BENCH_DATABASE_URL (a replica on PostgreSQL instead of SQLite) and DEPLOYER_TOKENS_FILE; run with
 * --expose-gc so the memory benchmark can measure what is retained.
 *
 * Commands: info, gc, whenHeld {n, timeoutMs}, emit {count, intervalMs}, releaseAll, stats, stop.
 */
import { startServer } from "../../api/server";
import { createLogger } from "../../api/logging";
import { BenchEngine, benchDeps, type UpMode } from "../lib/engine";
import { serve } from "../lib/ipc-child";

async function main(): Promise<void> {
  const engine = new BenchEngine((process.env.BENCH_UP_MODE as UpMode | undefined) ?? "noop");
  const server = await startServer({
    port: 0,
    host: "127.0.0.1",
    dataDir: process.env.BENCH_DATA_DIR!,
    databaseUrl: process.env.BENCH_DATABASE_URL || undefined,
    envDir: process.env.BENCH_ENV_DIR,
    maxConcurrent: Number(process.env.BENCH_MAX_CONCURRENT ?? 2),
    tokensFile: process.env.DEPLOYER_TOKENS_FILE,
    // The bench submits faster than the default 60 mutations a minute per principal.
    rateLimits: { mutationsPerWindow: 100_000 },
    // The fan-out bench's one principal holds 200 streams on purpose (the default cap is 20).
    maxStreamsPerPrincipal: 1_000,
    shutdownGraceMs: 3_000,
    // Production's logging (JSON lines at info on stdout; the bench sends them to a file).
    logger: createLogger({ level: "info", destination: process.stdout }),
    deps: (store) => benchDeps(store, engine),
  });
  serve({
    info: () => ({ url: server.url, port: server.port, pid: process.pid }),
    gc: () => {
      const gc = (globalThis as { gc?: () => void }).gc;
      if (!gc) throw new Error("run with --expose-gc");
      gc();
      gc();
      return process.memoryUsage();
    },
    whenHeld: async (args: { n: number; timeoutMs: number }) => {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        engine.whenHeld(args.n),
        new Promise((_, reject) => (timer = setTimeout(() => reject(new Error(`${engine.held} of ${args.n} engine calls waiting after ${args.timeoutMs} ms`)), args.timeoutMs))),
      ]).finally(() => clearTimeout(timer));
      return { held: engine.held };
    },
    emit: (args: { count: number; intervalMs: number }) => engine.emit(args.count, args.intervalMs),
    releaseAll: () => engine.releaseAll(),
    stats: () => ({ active: engine.active, maxActive: engine.maxActive, maxActivePerStack: engine.maxActivePerStack, calls: engine.calls, queue: server.queue.status(), streams: server.ctx.streams.size }),
    stop: async () => {
      engine.releaseAll();
      await server.stop({ graceMs: 2_000 });
      return true;
    },
  });
}

main().catch((err) => {
  process.stderr.write(`service-host: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
