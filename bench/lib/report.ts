/**
 * Rows of the results table, how a figure is judged against its budget, and the table/JSON output.
 *
 * Every row has a figure and, when the design sets one, a budget (`<=`, `>=` or `==`). `baseline` is
 * what the same figure is for the thing the deployer is compared with, measured in the same run (a
 * bare Express handler, the engine called directly, …); `ratio` is figure / baseline. A row whose
 * budget applies to the ratio (the read path's requests/s) says so with `budgetOn: "ratio"`.
 */
import { round } from "./stats";

export type BudgetOp = "<=" | ">=" | "==";

export interface Budget {
  readonly op: BudgetOp;
  readonly value: number;
  /** What the budget is compared with: the figure (default) or the ratio to the baseline. */
  readonly on?: "figure" | "ratio";
}

export interface Row {
  /** The benchmark that produced it (`npm run bench -- <benchmark>`). */
  readonly benchmark: string;
  /** Unique row name, `<benchmark>.<metric>`. */
  readonly name: string;
  /** One line: what the figure is. */
  readonly what: string;
  readonly unit: string;
  readonly figure: number | null;
  readonly budget?: Budget;
  readonly baseline?: number | null;
  /** What the baseline is (one phrase). */
  readonly baselineWhat?: string;
  readonly ratio?: number | null;
  /** true: budget met; false: missed; null: no budget (informational) or an error. */
  readonly pass: boolean | null;
  /** The individual runs the figure is the median of. */
  readonly runs?: readonly number[];
  readonly note?: string;
  readonly error?: string;
}

export interface RowInput {
  readonly what: string;
  readonly unit: string;
  readonly figure: number;
  readonly budget?: Budget;
  readonly baseline?: number;
  readonly baselineWhat?: string;
  readonly runs?: readonly number[];
  readonly note?: string;
}

export function judge(budget: Budget | undefined, figure: number, ratio: number | null): boolean | null {
  if (!budget) return null;
  const value = budget.on === "ratio" ? ratio : figure;
  if (value === null || !Number.isFinite(value)) return false;
  switch (budget.op) {
    case "<=":
      return value <= budget.value;
    case ">=":
      return value >= budget.value;
    case "==":
      return value === budget.value;
  }
}

export function makeRow(benchmark: string, metric: string, input: RowInput): Row {
  const ratio = input.baseline !== undefined && input.baseline !== 0 && Number.isFinite(input.baseline) ? input.figure / input.baseline : null;
  return {
    benchmark,
    name: `${benchmark}.${metric}`,
    what: input.what,
    unit: input.unit,
    figure: round(input.figure),
    budget: input.budget,
    baseline: input.baseline === undefined ? undefined : round(input.baseline),
    baselineWhat: input.baselineWhat,
    ratio: ratio === null ? (input.baseline === undefined ? undefined : null) : round(ratio),
    pass: judge(input.budget, input.figure, ratio),
    runs: input.runs?.map(round),
    note: input.note,
  };
}

export function errorRow(benchmark: string, metric: string, what: string, message: string): Row {
  return { benchmark, name: `${benchmark}.${metric}`, what, unit: "", figure: null, pass: null, error: message };
}

function budgetText(b: Budget | undefined, unit: string): string {
  if (!b) return "–";
  const subject = b.on === "ratio" ? "ratio " : "";
  return `${subject}${b.op} ${b.value}${b.on === "ratio" ? "" : unit ? ` ${unit}` : ""}`;
}

function statusText(row: Row): string {
  // The table keeps errors short; the JSON has them whole.
  if (row.error !== undefined) return `error: ${row.error.length > 90 ? `${row.error.slice(0, 89)}…` : row.error}`;
  if (row.pass === null) return "info";
  return row.pass ? "pass" : "FAIL";
}

function num(v: number | null | undefined, unit = ""): string {
  if (v === undefined) return "–";
  if (v === null) return "n/a";
  return `${v}${unit ? ` ${unit}` : ""}`;
}

/** The results as a plain-text table (also valid Markdown). */
export function table(rows: readonly Row[]): string {
  const header = ["name", "figure", "budget", "baseline", "ratio", "pass/fail"];
  const body = rows.map((r) => [r.name, num(r.figure, r.unit), budgetText(r.budget, r.unit), num(r.baseline, r.unit), num(r.ratio), statusText(r)]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i])).join(" | ")} |`;
  return [line(header), `|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`, ...body.map(line)].join("\n");
}

/** What each row measures and its notes, one line each, for under the table. */
export function notes(rows: readonly Row[]): string {
  return rows
    .map((r) => {
      const parts = [r.what];
      if (r.baselineWhat) parts.push(`baseline: ${r.baselineWhat}`);
      if (r.runs && r.runs.length > 1) parts.push(`runs: ${r.runs.join(", ")}`);
      if (r.note) parts.push(r.note);
      return `- ${r.name}: ${parts.join("; ")}`;
    })
    .join("\n");
}
