/**
 * Approvals: the four-eyes rule of `deploy.approvals` for the jobs the service runs. On a stack whose
 * environment requires approvals, a deployment, rollback or destroy runs in two phases of one job:
 *
 *   plan    queued → running, under the stack lease like any job: the operation runs up to its
 *           `beforeApply` (preview, review gates; nothing has changed). There, instead of applying,
 *           the job records what it would change (`approvalRequest`: change summary and the changing
 *           steps, and when the wait ends) and becomes `awaiting_approval`. Lease and slot are
 *           released; no engine process is left.
 *   wait    approvers other than the requester each approve once, or reject (the job ends
 *           `rejected`); after `deploy.approvals.expiresHours` it ends `rejected` as expired. Other
 *           mutations of the stack stay queued behind it (previews and drift checks run); a cancel
 *           ends it. A restart changes nothing: the store holds all of it.
 *   apply   the approval that reaches `approvalsRequired` puts the job back `queued`, in its
 *           original FIFO place (its id). It runs the operation again from the start; at
 *           `beforeApply` the fresh preview must match the approved plan, or the job fails with
 *           `plan_changed` instead of applying something nobody approved. Then it applies as usual.
 *
 * This file holds the rules as functions of the job and the preview; the queue (queue.ts) drives
 * the phases and the store (`recordDecision`) records decisions atomically.
 */
import type { OperationResult, ResourceStep, StepOp } from "../engine/port";
import type { Environment } from "../environment";
import { DeployerError, PlanChangedError } from "../errors";
import type { ApprovalRequest, Job, JobOperation, JobPatch } from "../store";

/** The operations that wait for approvals on a stack that requires them. */
export const APPROVAL_OPERATIONS: ReadonlySet<JobOperation> = new Set(["up", "rollback", "destroy"]);

/** Steps that change something: the ones approvers approve. */
const CHANGING_OPS: ReadonlySet<StepOp> = new Set(["create", "update", "delete", "replace"]);

/** The approval rule refused a principal (self-approval, self-rejection): 403 over HTTP. */
export class ApprovalRefusedError extends DeployerError {
  override readonly code = "forbidden";
  override readonly exitCode = 4;
}

/**
 * Thrown by a plan phase's `beforeApply` to stop the operation before anything changes; `executeJob`
 * records it as the job's move to `awaiting_approval` (with `patch`), not as a failure.
 */
export class AwaitingApproval extends Error {
  constructor(readonly patch: JobPatch) {
    super("awaiting approval");
    this.name = "AwaitingApproval";
  }
}

export type ApprovalPhase = "plan" | "apply";

/** How many approvals a job of `operation` on `env` needs before it may apply (0: none). */
export function approvalsRequiredFor(env: Environment, operation: JobOperation): number {
  return APPROVAL_OPERATIONS.has(operation) ? env.deploy.approvals.required : 0;
}

/** The job's approvals, oldest first. */
export function approvalsOf(job: Job): { by: string; at: string; comment?: string }[] {
  return (job.decisions ?? []).filter((d) => d.decision === "approved").map(({ by, at, comment }) => ({ by, at, ...(comment !== undefined ? { comment } : {}) }));
}

/**
 * Which phase a queued job runs: none when it needs no approvals; `apply` once it was approved
 * (recorded plan, enough approvals); `plan` otherwise.
 */
export function approvalPhase(job: Job): ApprovalPhase | undefined {
  if (job.approvalsRequired === 0) return undefined;
  return job.approvalRequest !== undefined && approvalsOf(job).length >= job.approvalsRequired ? "apply" : "plan";
}

/** What the approvers are asked to approve, from the plan phase's preview. */
export function approvalRequestFor(preview: Pick<OperationResult, "changes" | "steps">, nowMs: number, expiresHours: number, deploy?: Environment["deploy"]): ApprovalRequest {
  return {
    ...(deploy?.allowUnscannedImages ? { unscannedImagesAllowed: { reason: deploy.allowUnscannedImagesReason ?? "(no reason given)" } } : {}),
    changes: { ...preview.changes },
    steps: preview.steps.filter((s) => CHANGING_OPS.has(s.op)).map((s) => ({ urn: s.urn, type: s.type, op: s.op, changedProperties: [...s.changedProperties] })),
    requestedAt: new Date(nowMs).toISOString(),
    expiresAt: new Date(nowMs + expiresHours * 3_600_000).toISOString(),
    expiresHours,
  };
}

/** `24 h`, `1.5 h`. */
export function formatHours(hours: number): string {
  return `${Number(hours.toFixed(2))} h`;
}

/** The reason an expired wait records. */
export function expiryMessage(request: ApprovalRequest): string {
  return `approval expired after ${formatHours(request.expiresHours)}`;
}

/** Whether the job's approval wait is over at `nowMs`. */
export function approvalExpired(job: Job, nowMs: number): boolean {
  return job.status === "awaiting_approval" && job.approvalRequest !== undefined && Date.parse(job.approvalRequest.expiresAt) <= nowMs;
}

function countsOf(c: ApprovalRequest["changes"]): string {
  return `${c.create} to create, ${c.update} to update, ${c.replace} to replace, ${c.delete} to delete`;
}

const stepKey = (s: Pick<ResourceStep, "urn" | "op">) => `${s.op} ${s.urn}`;

/**
 * How a fresh preview differs from the approved plan: the create/update/delete/replace counts and
 * the set of (urn, op) of the changing steps. Undefined when it matches.
 */
export function planDifference(
  approved: Pick<ApprovalRequest, "changes" | "steps">,
  fresh: Pick<OperationResult, "changes" | "steps">,
): { approved: string; now: string; added: string[]; removed: string[] } | undefined {
  const before = new Set(approved.steps.filter((s) => CHANGING_OPS.has(s.op)).map(stepKey));
  const after = new Set(fresh.steps.filter((s) => CHANGING_OPS.has(s.op)).map(stepKey));
  const added = [...after].filter((k) => !before.has(k)).sort();
  const removed = [...before].filter((k) => !after.has(k)).sort();
  const sameCounts = (["create", "update", "delete", "replace"] as const).every((k) => approved.changes[k] === fresh.changes[k]);
  if (sameCounts && added.length === 0 && removed.length === 0) return undefined;
  return { approved: countsOf(approved.changes), now: countsOf(fresh.changes), added, removed };
}

/** Throws `PlanChangedError` unless the fresh preview matches what was approved. */
export function assertPlanUnchanged(job: Job, fresh: Pick<OperationResult, "changes" | "steps">): void {
  const approved = job.approvalRequest;
  if (approved === undefined) throw new PlanChangedError(`job ${job.id} has no approved plan to compare with`);
  const diff = planDifference(approved, fresh);
  if (diff === undefined) return;
  const lines = [
    `the change no longer matches what was approved, so nothing was applied; request the ${job.operation} again`,
    `  approved: ${diff.approved}`,
    `  now:      ${diff.now}`,
    ...shown("now also", diff.added),
    ...shown("no longer", diff.removed),
  ];
  throw new PlanChangedError(lines.join("\n"), { details: { approved: approved.changes, now: fresh.changes, added: diff.added, removed: diff.removed } });
}

function shown(label: string, keys: readonly string[]): string[] {
  const lines = keys.slice(0, 10).map((k) => `  ${label}: ${k}`);
  if (keys.length > 10) lines.push(`  … and ${keys.length - 10} more`);
  return lines;
}
