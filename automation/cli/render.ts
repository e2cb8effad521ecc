/** Terminal rendering for the CLI: plain text, aligned tables, no colour libraries. */
import type { Violation } from "../../infra/policies";
import type { ChangeSummary, EngineEvent, Outputs } from "../engine/port";
import type { EvaluatedResource } from "../program/evaluate";

export type Writer = (line: string) => void;

/** Left-aligned columns separated by two spaces. */
export function table(rows: readonly (readonly string[])[]): string[] {
  const widths: number[] = [];
  for (const row of rows) row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)));
  return rows.map((row) => row.map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i]))).join("  ").trimEnd());
}

/** The resources as a tree under their parents: `type name`. */
export function resourceTree(resources: readonly EvaluatedResource[]): string[] {
  const children = new Map<string | undefined, EvaluatedResource[]>();
  for (const r of resources) {
    const list = children.get(r.parent) ?? [];
    list.push(r);
    children.set(r.parent, list);
  }
  const lines: string[] = [];
  const walk = (parent: string | undefined, depth: number) => {
    for (const r of children.get(parent) ?? []) {
      lines.push(`${"  ".repeat(depth)}${r.type}  ${r.name}`);
      walk(r.urn, depth + 1);
    }
  };
  walk(undefined, 0);
  return lines;
}

export function violationLines(violations: readonly Violation[]): string[] {
  return violations.map((v) => `${v.severity === "mandatory" ? "✗" : "!"} [${v.rule}] ${v.message}`);
}

export function changeLine(c: ChangeSummary): string {
  return `${c.create} to create, ${c.update} to update, ${c.replace} to replace, ${c.delete} to delete, ${c.same} unchanged`;
}

const OP_SYMBOL: Record<string, string> = { create: "+", update: "~", replace: "+-", delete: "-", same: " ", read: ">", refresh: "~", import: "=" };

/** One line per resource as the engine reports it; unchanged resources are not printed. */
export function eventLine(event: EngineEvent): string | undefined {
  switch (event.type) {
    case "step": {
      const s = event.step;
      if (s.op === "same") return undefined;
      const props = s.changedProperties.length ? ` [${s.changedProperties.join(", ")}]` : "";
      const state = event.phase === "failed" ? " FAILED" : event.phase === "done" ? " done" : "";
      return `${(OP_SYMBOL[s.op] ?? "?").padEnd(2)} ${s.type}  ${s.urn.split("::").pop()}${props}${state}`;
    }
    case "diagnostic":
      return event.diagnostic.severity === "warning" || event.diagnostic.severity === "error"
        ? `${event.diagnostic.severity}: ${event.diagnostic.message}`
        : undefined;
    default:
      return undefined;
  }
}

export function outputLines(outputs: Outputs): string[] {
  return table(Object.entries(outputs).map(([k, v]) => [k, typeof v.value === "string" ? v.value : JSON.stringify(v.value)]));
}
