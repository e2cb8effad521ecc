/**
 * validate: `validate --stack prod` as a user runs it (a new process through the repository's loader:
 * ts-node + SWC, transpile-only), wall time from spawn to exit, median of 3; and the program's
 * evaluation alone, timed inside a warm process (after warm-up), which is the baseline of the wall
 * time: the rest is starting Node, loading modules and printing.
 */
import * as path from "path";
import type { Benchmark } from "./lib/bench";
import { IpcChild, REGISTER, REPO_ROOT, runToExit } from "./lib/proc";
import { median } from "./lib/stats";

const CLI = path.join(REPO_ROOT, "automation", "cli", "main.ts");
const RUNS = 3;

export const validateBench: Benchmark = {
  name: "validate",
  title: "validate --stack prod: wall time of the CLI process, and program evaluation alone",
  rows: {
    wall: "`validate --stack prod` wall time, process spawn to exit (median of 3)",
    evaluate: "program evaluation for prod under mocks, in a warm process (median of 5 after 2 warm-ups)",
  },
  timeoutMs: 60_000,
  // The CLI runs from the TypeScript sources (its npm scripts use automation/register.js), not dist/.
  compiled: false,
  async run(ctx) {
    // Evaluation alone first: it also warms the file cache for the CLI runs.
    let evaluateMs: number | undefined;
    let validateMs: number | undefined;
    try {
      const child = new IpcChild(path.join(__dirname, "children", "evaluate.ts"));
      ctx.defer(() => child.stop());
      const r = await child.call<{ resources: number; violations: number; loadMs: number; firstMs: number; evaluate: number[]; validate: number[] }>(
        "run",
        { stack: "prod", warmup: 2, runs: 5 },
        40_000,
      );
      await child.stop();
      evaluateMs = median(r.evaluate);
      validateMs = median(r.validate);
      ctx.row("evaluate", {
        what: this.rows.evaluate,
        unit: "ms",
        figure: evaluateMs,
        runs: r.evaluate,
        note: `${r.resources} resources; with the policy rules ${Math.round(validateMs)} ms; the first (cold) validate in that process took ${Math.round(r.firstMs)} ms`,
      });
    } catch (err) {
      ctx.fail("evaluate", err);
    }
    ctx.checkAborted();

    const walls: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      ctx.checkAborted();
      const r = await runToExit(["-r", REGISTER, CLI, "validate", "--stack", "prod"], 30_000);
      if (r.code !== 0) throw new Error(`validate exited ${r.code}: ${(r.stderr || r.stdout).trim().split("\n").slice(0, 2).join(" ")}`);
      walls.push(r.ms);
      ctx.log(`validate run ${i + 1}: ${Math.round(r.ms)} ms`);
    }
    ctx.row("wall", {
      what: this.rows.wall,
      unit: "ms",
      figure: median(walls),
      budget: { op: "<=", value: 3000 },
      baseline: validateMs,
      baselineWhat: "validate (evaluation + policy rules) inside a warm process; the difference is process start and module loading",
      runs: walls,
    });
  },
};
