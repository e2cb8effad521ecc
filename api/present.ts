/**
 * What the API shows of the store's records: the design's Job shape, never the internals
 * (`requestHash`, `idempotencyKey`, the config snapshot a rollback restores), secret outputs always
 * masked; and the one-line text of a job event for the plain-text log.
 */
import { eventLine } from "../automation/cli/render";
import type { EngineEvent, Outputs } from "../automation/engine/port";
import { SECRET_MASK } from "../automation/engine/port";
import { approvalsOf } from "../automation/jobs/approvals";
import { redactSecrets } from "../automation/redact";
import { ELIDED_EVENT_TYPE, type ApprovalRequest, type Job, type JobEvent } from "../automation/store";

export interface PresentOptions {
  /** 1-based position among the stack's queued jobs. */
  readonly queuePosition?: number;
  /** Include the per-resource steps (single-job view). */
  readonly steps?: boolean;
}

/** Secret values are masked here again, whatever the engine or the store returned. */
export function presentOutputs(outputs: Outputs): Outputs {
  const out: Outputs = {};
  for (const [key, o] of Object.entries(outputs)) out[key] = { value: o.secret ? SECRET_MASK : o.value, secret: o.secret };
  return out;
}

/** A job's recorded config, with any known secret value masked. */
export function presentConfig(config: Readonly<Record<string, string>>): Record<string, string> {
  return Object.fromEntries(Object.entries(config).map(([key, value]) => [key, redactSecrets(value)]));
}

export function presentJob(job: Job, options: PresentOptions = {}): Record<string, unknown> {
  return {
    id: job.id,
    stack: job.stack,
    operation: job.operation,
    status: job.status,
    version: job.version ?? null,
    ...(job.imageDigest !== undefined ? { imageDigest: job.imageDigest } : {}),
    requestedBy: job.requestedBy,
    source: job.source,
    ...(job.message !== undefined ? { message: job.message } : {}),
    ...(job.reason !== undefined ? { reason: job.reason } : {}),
    ...(job.target !== undefined ? { target: job.target } : {}),
    createdAt: job.createdAt,
    startedAt: job.startedAt ?? null,
    finishedAt: job.finishedAt ?? null,
    queuePosition: job.status === "queued" ? (options.queuePosition ?? null) : null,
    changes: job.changes ?? null,
    ...(options.steps && job.steps !== undefined ? { steps: job.steps } : {}),
    ...(job.drift !== undefined ? { drift: job.drift } : {}),
    ...(job.outputs !== undefined ? { outputs: presentOutputs(job.outputs) } : {}),
    ...(job.config !== undefined ? { config: presentConfig(job.config) } : {}),
    approvals: approvalsOf(job).map(presentDecision),
    approvalsRequired: job.approvalsRequired,
    ...(job.status === "awaiting_approval" && job.approvalRequest !== undefined ? { approvalExpiresAt: job.approvalRequest.expiresAt } : {}),
    ...(job.approvalRequest?.unscannedImagesAllowed !== undefined ? { unscannedImagesAllowed: { reason: redactSecrets(job.approvalRequest.unscannedImagesAllowed.reason) } } : {}),
    ...(job.approvalRequest !== undefined ? { approvalRequest: presentApprovalRequest(job.approvalRequest) } : {}),
    ...rejectionOf(job),
    ...(job.rollbackOf !== undefined ? { rollbackOf: job.rollbackOf } : {}),
    ...(job.rollbackTo !== undefined ? { rollbackTo: job.rollbackTo } : {}),
    ...(job.rolledBackBy !== undefined ? { rolledBackBy: job.rolledBackBy } : {}),
    ...(job.autoRollbackOf !== undefined ? { autoRollbackOf: job.autoRollbackOf } : {}),
    ...(job.error !== undefined ? { error: { code: job.error.code, message: redactSecrets(job.error.message) } } : {}),
    engine: job.engine,
    lastEventSeq: job.lastEventSeq,
  };
}

/** The approver's rejection that ended the job, as `{rejection}`; nothing otherwise. */
function rejectionOf(job: Job): { rejection?: { by: string; at: string; comment?: string } } {
  const r = job.decisions?.find((d) => d.decision === "rejected");
  return r ? { rejection: presentDecision(r) } : {};
}

function presentDecision(d: { by: string; at: string; comment?: string }): { by: string; at: string; comment?: string } {
  return { by: d.by, at: d.at, ...(d.comment !== undefined ? { comment: redactSecrets(d.comment) } : {}) };
}

/** The human-readable text of one stored event (no time), or undefined for events with nothing to say. */
export function eventText(event: Pick<JobEvent, "type" | "data">): string | undefined {
  const data = (event.data ?? {}) as Record<string, any>;
  switch (event.type) {
    case ELIDED_EVENT_TYPE:
      return `… ${data.count ?? "some"} earlier lines were dropped (the job's log is capped)`;
    case "phase":
      return `» ${data.message ?? data.phase}`;
    case "check":
      return `${data.skipped ? "-" : data.ok ? "✓" : "✗"} ${data.name}: ${data.detail}`;
    case "log":
      return `${data.level}: ${data.message}`;
    case "started":
      return `${data.operation} on ${data.stack} started (${data.engine} engine)`;
    case "step":
      return eventLine(data as EngineEvent);
    case "diagnostic":
      return `${data.diagnostic?.severity ?? "info"}: ${data.diagnostic?.message ?? ""}`;
    case "summary": {
      const c = data.changes ?? {};
      return `${data.result}: ${c.create ?? 0} created, ${c.update ?? 0} updated, ${c.replace ?? 0} replaced, ${c.delete ?? 0} deleted, ${c.same ?? 0} unchanged`;
    }
    default:
      return `${event.type} ${JSON.stringify(data)}`;
  }
}

/** `<time> <text>` per event, for GET /v1/jobs/:id/log. */
export function logLines(events: readonly JobEvent[]): string {
  let out = "";
  for (const e of events) {
    const text = eventText(e);
    if (text !== undefined) out += `${e.time} ${redactSecrets(text).replace(/\r?\n/g, "\n    ")}\n`;
  }
  return out;
}

/** What the approvers approve: each changing resource with the properties it changes, and what the plan is bound to. */
function presentApprovalRequest(r: ApprovalRequest): Record<string, unknown> {
  return {
    changes: r.changes,
    steps: r.steps.map((s) => ({ urn: s.urn, type: s.type, op: s.op, changedProperties: [...s.changedProperties] })),
    ...(r.binding !== undefined ? { binding: { ...r.binding } } : {}),
    requestedAt: r.requestedAt,
    expiresAt: r.expiresAt,
  };
}
