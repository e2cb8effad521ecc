/**
 * `npm run bench [-- <name>… ] [--duration <seconds>]`: runs the benchmarks (all, or the named ones) on
 * the code as it runs in production: first what `npm start` does before it starts (automation/compile.js:
 * SWC to JavaScript under dist/, no type-check), and the bench's own child processes compiled the same
 * way to dist/bench/; the service runs as `node dist/api/main.js`. The CLI (`validate`) runs as its npm
 * script does, through ts-node + SWC. Prints the table (name, figure, budget, baseline, ratio,
 * pass/fail) and writes the same rows as JSON to bench/results/latest.json. Exits 0 whether or not the budgets are met (the table says
 * which); 2 for an unknown benchmark name.
 *
 * Each benchmark runs with a time limit; a failure or a timeout turns its missing rows into
 * `error: <message>` and the run goes on. Every process, server and temporary directory a benchmark
 * started is stopped or removed when it ends.
 */
import { mkdirSync, writeFileSync } from "fs";
import { cpus, loadavg } from "os";
import * as path from "path";
import { errorMessage, type BenchContext, type Benchmark } from "./lib/bench";
import { prepareCompiled } from "./lib/compile";
import { removeAllTempDirs, removeDir, tempDir } from "./lib/fixtures";
import { killAllChildren } from "./lib/proc";
import { errorRow, makeRow, notes, table, type Row } from "./lib/report";
import { engineOverhead } from "./engine-overhead";
import { engineReal } from "./engine-real";
import { fanout, fanoutReplicas } from "./fanout";
import { memoryPerJob } from "./memory";
import { queueThroughput } from "./queue";
import { readPath } from "./read-path";
import { replicasThroughput } from "./replicas";
import { startup } from "./startup";
import { validateBench } from "./validate";

export const BENCHMARKS: readonly Benchmark[] = [validateBench, startup, readPath, queueThroughput, replicasThroughput, fanout, fanoutReplicas, engineOverhead, engineReal, memoryPerJob];

const RESULTS = path.join(__dirname, "results", "latest.json");

function parseArgs(argv: readonly string[]): { names: string[]; durationSec: number } {
  const names: string[] = [];
  let durationSec = Number(process.env.BENCH_DURATION ?? 5);
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--duration") durationSec = Number(argv[++i]);
    else if (a.startsWith("--duration=")) durationSec = Number(a.slice("--duration=".length));
    else if (a === "-h" || a === "--help") {
      process.stdout.write(`usage: npm run bench [-- <name>…] [--duration <seconds per load window, default 5>]\nbenchmarks: ${BENCHMARKS.map((b) => b.name).join(", ")}\n`);
      process.exit(0);
    } else names.push(a);
  }
  if (!Number.isFinite(durationSec) || durationSec < 1 || durationSec > 60) {
    process.stderr.write("bench: --duration must be 1..60 seconds\n");
    process.exit(2);
  }
  return { names, durationSec };
}

function select(names: readonly string[]): Benchmark[] {
  if (names.length === 0) return [...BENCHMARKS];
  return names.map((n) => {
    const b = BENCHMARKS.find((x) => x.name === n || x.aliases?.includes(n));
    if (!b) {
      process.stderr.write(`bench: unknown benchmark "${n}"; one of: ${BENCHMARKS.map((x) => x.name).join(", ")}\n`);
      process.exit(2);
    }
    return b;
  });
}

async function runOne(bench: Benchmark, durationSec: number): Promise<Row[]> {
  const rows = new Map<string, Row>();
  const cleanups: (() => unknown)[] = [];
  const controller = new AbortController();
  const started = performance.now();
  const log = (message: string) => process.stderr.write(`[${bench.name} ${((performance.now() - started) / 1000).toFixed(1)}s] ${message}\n`);
  const ctx: BenchContext = {
    durationSec,
    signal: controller.signal,
    tempDir: (prefix) => {
      const dir = tempDir(`${bench.name}-${prefix}`);
      cleanups.push(() => removeDir(dir));
      return dir;
    },
    defer: (cleanup) => void cleanups.push(cleanup),
    row: (metric, input) => {
      if (!(metric in bench.rows)) throw new Error(`${bench.name}: unknown row ${metric}`);
      rows.set(metric, makeRow(bench.name, metric, input));
    },
    fail: (metric, err) => {
      log(`${metric} failed: ${errorMessage(err)}`);
      rows.set(metric, errorRow(bench.name, metric, bench.rows[metric] ?? metric, errorMessage(err)));
    },
    log,
    checkAborted: () => {
      if (controller.signal.aborted) throw new Error(`stopped: over the ${bench.timeoutMs / 1000} s limit`);
    },
  };
  log(bench.title);
  let failure: string | undefined;
  let timer: NodeJS.Timeout | undefined;
  const running = bench.run(ctx);
  running.catch(() => undefined); // a run abandoned by its timeout may still reject later
  try {
    await Promise.race([
      running,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          controller.abort();
          reject(new Error(`timed out after ${bench.timeoutMs / 1000} s`));
        }, bench.timeoutMs);
      }),
    ]);
  } catch (err) {
    failure = errorMessage(err);
    log(`failed: ${failure}`);
  } finally {
    clearTimeout(timer);
    controller.abort();
    for (const cleanup of cleanups.reverse()) {
      try {
        await Promise.race([Promise.resolve().then(cleanup), new Promise((r) => setTimeout(r, 10_000).unref())]);
      } catch (err) {
        log(`cleanup: ${errorMessage(err)}`);
      }
    }
  }
  log(`done in ${((performance.now() - started) / 1000).toFixed(1)} s`);
  return Object.entries(bench.rows).map(([metric, what]) => rows.get(metric) ?? errorRow(bench.name, metric, what, failure ?? "not measured"));
}

async function main(): Promise<void> {
  const { names, durationSec } = parseArgs(process.argv.slice(2));
  const selected = select(names);
  const onSignal = () => {
    killAllChildren();
    removeAllTempDirs();
    process.exit(130);
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  const startedAt = new Date();
  const t0 = performance.now();
  const loadBefore = loadavg();
  const rows: Row[] = [];
  let compileError: string | undefined;
  if (selected.some((b) => b.compiled !== false)) {
    const t = performance.now();
    try {
      prepareCompiled();
      process.stderr.write(`[bench] compiled to dist/ in ${((performance.now() - t) / 1000).toFixed(1)} s\n`);
    } catch (err) {
      compileError = `compile failed: ${errorMessage(err)}`;
      process.stderr.write(`[bench] ${compileError}\n`);
    }
  }
  for (const bench of selected) {
    if (compileError && bench.compiled !== false) rows.push(...Object.entries(bench.rows).map(([metric, what]) => errorRow(bench.name, metric, what, compileError!)));
    else rows.push(...(await runOne(bench, durationSec)));
  }
  const loadAfter = loadavg();
  const totalMs = performance.now() - t0;
  const machine = {
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model ?? "unknown",
    node: process.version,
    platform: `${process.platform} ${process.arch}`,
    loadavgBefore: loadBefore.map((l) => Math.round(l * 100) / 100),
    loadavgAfter: loadAfter.map((l) => Math.round(l * 100) / 100),
  };
  const summary = { passed: rows.filter((r) => r.pass === true).length, failed: rows.filter((r) => r.pass === false).length, errors: rows.filter((r) => r.error !== undefined).length, info: rows.filter((r) => r.pass === null && r.error === undefined).length };
  mkdirSync(path.dirname(RESULTS), { recursive: true });
  writeFileSync(
    RESULTS,
    `${JSON.stringify({ startedAt: startedAt.toISOString(), durationMs: Math.round(totalMs), durationSecPerLoadWindow: durationSec, benchmarks: selected.map((b) => b.name), machine, summary, rows }, null, 2)}\n`,
  );
  const out = process.stdout;
  out.write(`\n${table(rows)}\n\n${notes(rows)}\n\n`);
  out.write(
    `${summary.passed} pass, ${summary.failed} fail, ${summary.errors} error, ${summary.info} info; ${(totalMs / 1000).toFixed(0)} s on ${machine.cpus} × ${machine.cpuModel}, node ${machine.node}; ` +
      `load average ${machine.loadavgBefore[0]} before, ${machine.loadavgAfter[0]} after${Math.max(machine.loadavgBefore[0], machine.loadavgAfter[0]) > machine.cpus / 2 ? " (the machine was busy: figures are noisy)" : ""}\n`,
  );
  out.write(`written to ${path.relative(process.cwd(), RESULTS)}\n`);
}

main().then(
  () => process.exit(0),
  (err) => {
    process.stderr.write(`bench: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    killAllChildren();
    process.exit(1);
  },
);
