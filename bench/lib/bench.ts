/** What a benchmark is, and what it gets from the runner (bench/run.ts). */
import type { RowInput } from "./report";

export interface BenchContext {
  /** Seconds per load window (read path); `--duration`, default 5. */
  readonly durationSec: number;
  /** Aborted when the benchmark runs past its time limit: stop starting new work. */
  readonly signal: AbortSignal;
  /** A temporary directory, removed when the benchmark ends. */
  tempDir(prefix: string): string;
  /** Runs when the benchmark ends, however it ends (last registered first). */
  defer(cleanup: () => unknown): void;
  /** Records one row of the table (`metric` is one of the benchmark's `rows`). */
  row(metric: string, input: RowInput): void;
  /** Records a row as failed (the rest of the benchmark goes on). */
  fail(metric: string, error: unknown): void;
  /** A progress line on stderr. */
  log(message: string): void;
  /** Throws if the benchmark's time is up. */
  checkAborted(): void;
}

export interface Benchmark {
  /** `npm run bench -- <name>` */
  readonly name: string;
  readonly aliases?: readonly string[];
  readonly title: string;
  /** The rows it reports, metric → what it is; a row it did not produce shows the benchmark's error. */
  readonly rows: Readonly<Record<string, string>>;
  /** Hard limit; past it the benchmark is stopped and its missing rows are errors. */
  readonly timeoutMs: number;
  /** Whether it runs the compiled code (dist/); default true. Without a successful compile its rows are errors. */
  readonly compiled?: boolean;
  run(ctx: BenchContext): Promise<void>;
}

export function errorMessage(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  return message.replace(/\s+/g, " ").trim().slice(0, 300);
}
