/** One line of text per job event, as the service's plain-text log writes them (api/present.ts). */
import type { StreamEvent } from "./events";

const OP_SYMBOL: Record<string, string> = { create: "+", update: "~", replace: "+-", delete: "-", same: " ", read: ">", refresh: "~", import: "=" };

export function eventText(event: StreamEvent): string | undefined {
  const d = (event.data ?? {}) as Record<string, any>;
  switch (event.type) {
    case "elided":
      return `… ${d.count ?? "some"} earlier lines were dropped (the job's log is capped)`;
    case "phase":
      return `» ${d.message ?? d.phase}`;
    case "check":
      return `${d.skipped ? "-" : d.ok ? "✓" : "✗"} ${d.name}: ${d.detail}`;
    case "log":
      return `${d.level}: ${d.message}`;
    case "started":
      return `${d.operation} on ${d.stack} started (${d.engine} engine)`;
    case "step": {
      const s = d.step ?? {};
      if (s.op === "same") return undefined;
      const props = Array.isArray(s.changedProperties) && s.changedProperties.length ? ` [${s.changedProperties.join(", ")}]` : "";
      const state = d.phase === "failed" ? " FAILED" : d.phase === "done" ? " done" : "";
      return `${OP_SYMBOL[s.op] ?? "?"} ${s.type}  ${String(s.urn ?? "").split("::").pop()}${props}${state}`;
    }
    case "diagnostic":
      return `${d.diagnostic?.severity ?? "info"}: ${d.diagnostic?.message ?? ""}`;
    case "summary": {
      const c = d.changes ?? {};
      return `${d.result}: ${c.create ?? 0} created, ${c.update ?? 0} updated, ${c.replace ?? 0} replaced, ${c.delete ?? 0} deleted, ${c.same ?? 0} unchanged`;
    }
    default:
      return `${event.type} ${JSON.stringify(d)}`;
  }
}
