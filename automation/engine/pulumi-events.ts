/**
 * Translation of the Automation API's engine events into the port's: steps (`resourcePreEvent`,
 * `resOutputsEvent`, `resOpFailedEvent`), diagnostics, the summary's counts, and the drift a refresh
 * preview reveals. Pure functions plus one collector an operation feeds every event to.
 */
import type {
  DiagnosticEvent,
  EngineEvent as PulumiEngineEvent,
  OpMap,
  OpType,
  StepEventMetadata,
  StepEventStateMetadata,
} from "@pulumi/pulumi/automation";
import {
  SECRET_MASK,
  emptyChanges,
  type ChangeSummary,
  type Diagnostic,
  type DriftedResource,
  type EngineEvent,
  type PropertyDrift,
  type ResourceStep,
  type StepOp,
} from "./port";

/** The engine's operation names mapped onto the port's. */
export function stepOp(op: OpType | string): StepOp {
  switch (op) {
    case "create":
    case "update":
    case "delete":
    case "replace":
    case "same":
    case "read":
    case "refresh":
    case "import":
      return op;
    // The three steps of one replacement are one replace to the reader.
    case "create-replacement":
    case "delete-replaced":
      return "replace";
    case "read-replacement":
    case "discard":
    case "discard-replaced":
      return "read";
    case "import-replacement":
      return "import";
    default:
      // remove-pending-replace and anything newer: bookkeeping, no change to a resource.
      return "same";
  }
}

/**
 * Counts from the engine's summary. A replacement shows up as `replace`, `create-replacement` and
 * `delete-replaced` (whichever the engine reports): it counts once.
 */
export function changesFromOpMap(ops: OpMap | undefined, stackOp?: StepOp): ChangeSummary {
  const c = emptyChanges();
  if (!ops) return c;
  const n = (op: OpType) => ops[op] ?? 0;
  c.create = n("create");
  c.update = n("update");
  c.delete = n("delete");
  c.replace = Math.max(n("replace"), n("create-replacement"), n("delete-replaced"));
  c.same = n("same") + n("read") + n("refresh") + n("import") + n("read-replacement") + n("import-replacement") + n("discard") + n("discard-replaced");
  // The engine counts the stack resource itself; a deployment's counts are of its resources.
  if (stackOp !== undefined) {
    const key = stackOp === "create" || stackOp === "update" || stackOp === "delete" || stackOp === "replace" ? stackOp : "same";
    if (c[key] > 0) c[key]--;
  }
  return c;
}

/** Property paths that change: the detailed diff's when given, else the changed keys. */
export function changedProperties(meta: StepEventMetadata): string[] {
  const detailed = meta.detailedDiff ? Object.keys(meta.detailedDiff) : [];
  if (detailed.length > 0) return detailed;
  return [...(meta.diffs ?? [])];
}

export function stepOf(meta: StepEventMetadata): ResourceStep {
  return { urn: meta.urn, type: meta.type, op: stepOp(meta.op), changedProperties: changedProperties(meta) };
}

const ANSI = /\x1b\[[0-9;]*[A-Za-z]/g;

function severityOf(d: DiagnosticEvent): Diagnostic["severity"] {
  if (d.ephemeral) return "debug";
  switch (d.severity) {
    case "error":
      return "error";
    case "warning":
      return "warning";
    default:
      // "info" and "info#err" (info the program wrote to stderr)
      return "info";
  }
}

export function diagnosticOf(d: DiagnosticEvent, redact: (text: string) => string): Diagnostic {
  const message = redact(d.message.replace(ANSI, "").trim());
  return d.urn ? { severity: severityOf(d), message, urn: d.urn } : { severity: severityOf(d), message };
}

/** The stack itself and provider instances are bookkeeping, not infrastructure that drifts. */
function isInternalType(type: string): boolean {
  return type === "pulumi:pulumi:Stack" || type.startsWith("pulumi:providers:");
}

/**
 * Steps no deployment reader counts: the stack resource itself, and the default providers the engine
 * adds for every package (`pulumi:providers:<pkg>::default` or `::default_<version>`). A provider the
 * program declares is a resource like any other.
 */
export function isBookkeepingStep(urn: string, type: string): boolean {
  return type === "pulumi:pulumi:Stack" || (type.startsWith("pulumi:providers:") && /::default(_[^:]*)?$/.test(urn));
}

/** What the engine sends for a secret in event payloads: the mask or a secret signature object. */
function isSecretValue(v: unknown): boolean {
  if (v === "[secret]") return true;
  return typeof v === "object" && v !== null && (v as Record<string, unknown>)["4dabf18193072939515e22adb298388d"] === "1b47061264138c4ac30d75fd1eb44270";
}

/** `a.b[0].c` → the value in `obj`, or undefined. */
function valueAt(obj: Record<string, unknown> | undefined, propertyPath: string): unknown {
  let cur: unknown = obj;
  for (const part of propertyPath.split(/\.|\[|\]/).filter((p) => p !== "")) {
    if (cur === null || typeof cur !== "object") return undefined;
    cur = (cur as Record<string, unknown>)[part.replace(/^"|"$/g, "")];
  }
  return cur;
}

function driftValues(state: StepEventStateMetadata | undefined, live: StepEventStateMetadata | undefined, propertyPath: string): { state?: unknown; live?: unknown } {
  const before = valueAt(state?.outputs, propertyPath);
  const after = valueAt(live?.outputs, propertyPath);
  if (isSecretValue(before) || isSecretValue(after)) return {};
  const out: { state?: unknown; live?: unknown } = {};
  if (before !== undefined) out.state = before;
  if (after !== undefined) out.live = after;
  return out;
}

function sameJson(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/**
 * The drift one refresh event shows, or undefined. The engine reports a refreshed resource as a
 * `refresh` step whose diff (newer CLIs) or old/new outputs (every CLI) say what changed; a resource
 * that no longer exists has no new state once its refresh completed (`completed`).
 */
export function driftOf(meta: StepEventMetadata, completed: boolean): DriftedResource | undefined {
  if (isInternalType(meta.type)) return undefined;
  const base = { urn: meta.urn, type: meta.type };
  if (meta.op === "delete" || (completed && meta.old && !meta.new)) return { ...base, kind: "delete", properties: [] };
  if (meta.op !== "refresh" && meta.op !== "update") return undefined;

  const detailed = Object.entries(meta.detailedDiff ?? {});
  if (detailed.length > 0) {
    const properties = detailed.map(([p, d]): PropertyDrift => {
      const kind = String(d.diffKind).replace(/-replace$/, "");
      return { path: p, kind: kind === "add" || kind === "delete" ? kind : "update", ...driftValues(meta.old, meta.new, p) };
    });
    return { ...base, kind: "update", properties };
  }
  if (meta.diffs && meta.diffs.length > 0) {
    return { ...base, kind: "update", properties: meta.diffs.map((p) => ({ path: p, kind: "update" as const, ...driftValues(meta.old, meta.new, p) })) };
  }
  if (completed && meta.old && meta.new) {
    // No diff from the engine: compare the outputs before and after the read, ignoring the
    // engine's own `__` keys (a dynamic provider's serialized code, …).
    const before = meta.old.outputs ?? {};
    const after = meta.new.outputs ?? {};
    const keys = [...new Set([...Object.keys(before), ...Object.keys(after)])].filter((k) => !k.startsWith("__")).sort();
    const properties: PropertyDrift[] = [];
    for (const k of keys) {
      if (sameJson(before[k], after[k])) continue;
      const kind = !(k in before) ? "add" : !(k in after) ? "delete" : "update";
      properties.push({ path: k, kind, ...driftValues(meta.old, meta.new, k) });
    }
    if (properties.length > 0) return { ...base, kind: "update", properties };
  }
  return meta.op === "update" ? { ...base, kind: "update", properties: [] } : undefined;
}

/** Strongest first: which op a resource's several steps (a replacement's three) add up to. */
const OP_RANK: readonly StepOp[] = ["replace", "delete", "create", "update", "import", "read", "refresh", "same"];

/**
 * Feeds on every event of one operation: forwards the port's events to `emit`, and keeps the steps
 * (one per resource), diagnostics, the engine's summary and the drift seen.
 */
export class EventCollector {
  private readonly steps = new Map<string, ResourceStep>();
  private readonly drift = new Map<string, DriftedResource>();
  private readonly outputsByUrn = new Map<string, Record<string, unknown>>();
  readonly diagnostics: Diagnostic[] = [];
  /** The engine's own counts, when its summary event arrived. */
  summary?: OpMap;
  /** What the engine did to the stack resource, which its counts include and the port's do not. */
  stackOp?: StepOp;
  /**
   * The stack's outputs as the engine reported them once the program registered them (secret
   * values, at any depth, as `[secret]`); undefined when no such event came.
   */
  stackOutputs?: Record<string, unknown>;

  constructor(
    private readonly emit: ((event: EngineEvent) => void) | undefined,
    private readonly redact: (text: string) => string,
  ) {}

  /** Pass as the Automation API's `onEvent`. */
  readonly onEvent = (event: PulumiEngineEvent): void => {
    if (event.resourcePreEvent) this.step("pre", event.resourcePreEvent.metadata);
    else if (event.resOutputsEvent) this.step("done", event.resOutputsEvent.metadata);
    else if (event.resOpFailedEvent) this.step("failed", event.resOpFailedEvent.metadata);
    else if (event.diagnosticEvent) {
      const diagnostic = diagnosticOf(event.diagnosticEvent, this.redact);
      if (diagnostic.message === "") return;
      if (diagnostic.severity !== "debug") this.diagnostics.push(diagnostic);
      this.forward({ type: "diagnostic", diagnostic });
    } else if (event.summaryEvent) {
      // Forwarded by the engine once the result is known; the summary event has no result.
      this.summary = event.summaryEvent.resourceChanges;
    }
  };

  /** A warning of the engine adapter's own (not the CLI's), kept and forwarded like the CLI's. */
  warn(message: string): void {
    const diagnostic: Diagnostic = { severity: "warning", message: this.redact(message) };
    this.diagnostics.push(diagnostic);
    this.forward({ type: "diagnostic", diagnostic });
  }

  private step(phase: "pre" | "done" | "failed", meta: StepEventMetadata): void {
    const step = stepOf(meta);
    if (isBookkeepingStep(meta.urn, meta.type)) {
      if (meta.type === "pulumi:pulumi:Stack") {
        this.stackOp = step.op;
        if (phase === "done" && meta.new?.outputs) this.stackOutputs = maskSecretValues(meta.new.outputs);
      }
      return;
    }
    if (phase === "done" && meta.new?.outputs && (step.op === "create" || step.op === "update" || step.op === "replace")) {
      this.outputsByUrn.set(step.urn, maskSecretValues(meta.new.outputs));
    }
    const seen = this.steps.get(step.urn);
    this.steps.set(step.urn, seen ? merge(seen, step) : step);
    const drifted = driftOf(meta, phase === "done");
    if (drifted) this.drift.set(drifted.urn, drifted);
    this.forward({ type: "step", phase, step });
  }

  private forward(event: EngineEvent): void {
    if (!this.emit) return;
    try {
      this.emit(event);
    } catch {
      // A listener's failure must not break the SDK's event stream (and with it the operation).
    }
  }

  /** Outputs of the resources the operation created, updated or replaced; secret values masked. */
  resourceOutputs(): Record<string, Record<string, unknown>> {
    return Object.fromEntries(this.outputsByUrn);
  }

  /** One step per resource, in the order the engine first mentioned them. */
  resourceSteps(): ResourceStep[] {
    return [...this.steps.values()];
  }

  driftedResources(): DriftedResource[] {
    return [...this.drift.values()];
  }

  /** Error diagnostics' messages, for a failure's short explanation. */
  errors(): string[] {
    return this.diagnostics.filter((d) => d.severity === "error").map((d) => d.message);
  }
}

function merge(a: ResourceStep, b: ResourceStep): ResourceStep {
  const op = OP_RANK.indexOf(a.op) <= OP_RANK.indexOf(b.op) ? a.op : b.op;
  const changed = [...new Set([...a.changedProperties, ...b.changedProperties])];
  return { urn: a.urn, type: a.type, op, changedProperties: changed };
}

/** A copy with every secret value (Pulumi's wire form) replaced by the mask, at any depth. */
export function maskSecretValues(value: Record<string, unknown>): Record<string, unknown> {
  const walk = (v: unknown): unknown => {
    if (isSecretValue(v)) return SECRET_MASK;
    if (Array.isArray(v)) return v.map(walk);
    if (v !== null && typeof v === "object") return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, walk(x)]));
    return v;
  };
  return walk(value) as Record<string, unknown>;
}
