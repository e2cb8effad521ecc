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
 *           `beforeApply` the fresh plan must be the approved one, or the job fails with
 *           `plan_changed` instead of applying something nobody approved: the same changing steps
 *           with the same changed properties and counts, the same environment (its hash, every
 *           setting but the approval rules), the same program config (hash) and the same pinned
 *           image digest. Then it applies as usual. An approved job still queued when the wait's
 *           expiry passes expires like one that waits.
 *
 * The approval rules are read again at each decision and before the apply: a raised `required`
 * applies to jobs already waiting (an approved job goes back to waiting for the rest); a lowered one
 * applies to new requests only.
 *
 * This file holds the rules as functions of the job and the preview; the queue (queue.ts) drives
 * the phases and the store (`recordDecision`) records decisions atomically.
 */
import { createHash } from "crypto";
import type { OperationResult, ResourceStep, StepOp } from "../engine/port";
import type { Environment } from "../environment";
import { DeployerError, PlanChangedError } from "../errors";
import type { PlanInputs } from "../operations/deploy";
import type { ApprovalRequest, Job, JobOperation, JobPatch, PlanBinding } from "../store";

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

function sha256(value: unknown): string {
  return createHash("sha256").update(canonicalJson(value)).digest("hex");
}

/** JSON with object keys sorted and undefined members left out: equal values give equal text. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  if (value !== null && typeof value === "object") {
    const entries = Object.entries(value as Record<string, unknown>).filter(([, v]) => v !== undefined).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(",")}}`;
  }
  return JSON.stringify(value) ?? "null";
}

/**
 * The hash of an environment as a plan sees it: everything the file sets but the approval rules
 * (which govern the approval itself, and are re-read at every decision instead).
 */
export function environmentHash(env: Environment): string {
  const { approvals: _rules, ...deploy } = env.deploy;
  return sha256({ engine: env.engine, backend: env.backend, secretsProvider: env.secretsProvider, deploy, settings: env.settings });
}

/** What a plan binds, from its environment and the inputs its operation ran with. */
export function planBinding(env: Environment, inputs: PlanInputs): PlanBinding {
  return {
    environment: environmentHash(env),
    ...(inputs.config !== undefined ? { config: sha256(inputs.config) } : {}),
    ...(inputs.imageDigest !== undefined ? { imageDigest: inputs.imageDigest } : {}),
  };
}

/** What the approvers are asked to approve, from the plan phase's preview and what it ran with. */
export function approvalRequestFor(
  preview: Pick<OperationResult, "changes" | "steps">,
  nowMs: number,
  expiresHours: number,
  binding?: PlanBinding,
  deploy?: Environment["deploy"],
): ApprovalRequest {
  return {
    ...(deploy?.allowUnscannedImages ? { unscannedImagesAllowed: { reason: deploy.allowUnscannedImagesReason ?? "(no reason given)" } } : {}),
    changes: { ...preview.changes },
    steps: preview.steps.filter((s) => CHANGING_OPS.has(s.op)).map((s) => ({ urn: s.urn, type: s.type, op: s.op, changedProperties: [...s.changedProperties].sort() })),
    ...(binding !== undefined ? { binding } : {}),
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

/** Whether the job's approval is over at `nowMs`: waiting, or approved and still queued, past the expiry. */
export function approvalExpired(job: Job, nowMs: number): boolean {
  const pending = job.status === "awaiting_approval" || (job.status === "queued" && approvalPhase(job) === "apply");
  return pending && job.approvalRequest !== undefined && Date.parse(job.approvalRequest.expiresAt) <= nowMs;
}

function countsOf(c: ApprovalRequest["changes"]): string {
  return `${c.create} to create, ${c.update} to update, ${c.replace} to replace, ${c.delete} to delete`;
}

/** A changing step with the properties it changes: `update urn:… [containerDefinitions, tags.Owner]`. */
const stepKey = (s: Pick<ResourceStep, "urn" | "op" | "changedProperties">) => `${s.op} ${s.urn}${s.changedProperties.length ? ` [${[...s.changedProperties].sort().join(", ")}]` : ""}`;

/** The parts of a binding that differ, by name. */
function bindingChanges(approved: PlanBinding | undefined, fresh: PlanBinding | undefined): string[] {
  if (fresh === undefined) return [];
  if (approved === undefined) return ["the approved plan recorded no environment, config or image to compare with"];
  const changed: string[] = [];
  if (approved.environment !== fresh.environment) changed.push("the environment file changed since the approval");
  if (approved.config !== fresh.config) changed.push("the program config changed since the approval");
  if (approved.imageDigest !== fresh.imageDigest) changed.push(`the image changed since the approval (approved ${approved.imageDigest ?? "none pinned"}, now ${fresh.imageDigest ?? "none pinned"})`);
  return changed;
}

/**
 * How a fresh plan differs from the approved one: the create/update/delete/replace counts, the
 * changing steps with their changed properties, and the binding (environment, config, image).
 * Undefined when it matches.
 */
export function planDifference(
  approved: Pick<ApprovalRequest, "changes" | "steps" | "binding">,
  fresh: Pick<OperationResult, "changes" | "steps">,
  freshBinding?: PlanBinding,
): { approved: string; now: string; added: string[]; removed: string[]; changed: string[] } | undefined {
  const before = new Set(approved.steps.filter((s) => CHANGING_OPS.has(s.op)).map(stepKey));
  const after = new Set(fresh.steps.filter((s) => CHANGING_OPS.has(s.op)).map(stepKey));
  const added = [...after].filter((k) => !before.has(k)).sort();
  const removed = [...before].filter((k) => !after.has(k)).sort();
  const changed = bindingChanges(approved.binding, freshBinding);
  const sameCounts = (["create", "update", "delete", "replace"] as const).every((k) => approved.changes[k] === fresh.changes[k]);
  if (sameCounts && added.length === 0 && removed.length === 0 && changed.length === 0) return undefined;
  return { approved: countsOf(approved.changes), now: countsOf(fresh.changes), added, removed, changed };
}

/** Throws `PlanChangedError` unless the fresh plan is the approved one. */
export function assertPlanUnchanged(job: Job, fresh: Pick<OperationResult, "changes" | "steps">, freshBinding?: PlanBinding): void {
  const approved = job.approvalRequest;
  if (approved === undefined) throw new PlanChangedError(`job ${job.id} has no approved plan to compare with`);
  const diff = planDifference(approved, fresh, freshBinding);
  if (diff === undefined) return;
  const lines = [
    `the change no longer matches what was approved, so nothing was applied; request the ${job.operation} again`,
    ...diff.changed.map((c) => `  ${c}`),
    `  approved: ${diff.approved}`,
    `  now:      ${diff.now}`,
    ...shown("now also", diff.added),
    ...shown("no longer", diff.removed),
  ];
  throw new PlanChangedError(lines.join("\n"), { details: { approved: approved.changes, now: fresh.changes, added: diff.added, removed: diff.removed, changed: diff.changed } });
}

function shown(label: string, keys: readonly string[]): string[] {
  const lines = keys.slice(0, 10).map((k) => `  ${label}: ${k}`);
  if (keys.length > 10) lines.push(`  … and ${keys.length - 10} more`);
  return lines;
}
