/**
 * The queue's side of approvals (approvals.ts holds the rules): an approver's decision, the end of
 * the waits that expired, a rule raised while a job waits, and the `beforeApply` each phase runs.
 * The queue (queue.ts) owns the jobs' lifecycle and dispatch; it calls these, and gets back, through
 * `ApprovalHost`, what it must know: a note for a job's log, a decision, a job that ended, a
 * reason to dispatch again.
 */
import type { OperationResult } from "../engine/port";
import type { Environment } from "../environment";
import { ConflictError, NotFoundError } from "../errors";
import type { PlanInputs } from "../operations/deploy";
import { TERMINAL_STATUSES, type ApprovalDecision, type Job, type NewApprovalDecision, type Store } from "../store";
import {
  ApprovalRefusedError,
  AwaitingApproval,
  approvalExpired,
  approvalPhase,
  approvalRequestFor,
  approvalsOf,
  approvalsRequiredFor,
  assertPlanUnchanged,
  expiryMessage,
  formatHours,
  planBinding,
} from "./approvals";
import type { JobParams } from "./execute";

/** What the approvals need of the queue. */
export interface ApprovalHost {
  readonly store: Store;
  /** The clock of the approval waits. */
  now(): number;
  load(stack: string): Environment;
  /** A line in the job's log (stored and sent to its subscribers); never rejects (a failure is reported). */
  note(jobId: string, level: "info" | "warning" | "phase", message: string): Promise<void>;
  /** A decision was recorded; `job` as it is after it. */
  decided(job: Job, decision: ApprovalDecision): void;
  /** The job ended (rejected, or its approval expired). */
  ended(job: Job): void;
  /** Something may run now (a job queued again, or the one that held its stack's mutations ended). */
  kick(): void;
}

export class QueueApprovals {
  constructor(private readonly host: ApprovalHost) {}

  /** An approver's decision (JobQueue.approve / reject say what is refused); returns the job after it. */
  async decide(jobId: string, decision: NewApprovalDecision): Promise<Job> {
    let job = await this.host.store.getJob(jobId);
    if (!job) throw new NotFoundError(`job ${jobId} not found`, { details: { jobId } });
    if (job.approvalsRequired === 0) {
      throw new ConflictError(`job ${jobId} (${job.operation} on ${job.stack}) needs no approval`, { details: { jobId, status: job.status } });
    }
    if (decision.by === job.requestedBy) {
      throw new ApprovalRefusedError(
        decision.decision === "approved"
          ? `${decision.by} requested job ${jobId} and cannot approve it: approvals must come from principals other than the requester`
          : `${decision.by} requested job ${jobId} and cannot reject it; to withdraw it, POST /v1/jobs/${jobId}/cancel`,
        { details: { jobId, requestedBy: job.requestedBy } },
      );
    }
    job = (await this.expireIfDue(job)) ?? job;
    if (job.status !== "awaiting_approval") {
      throw new ConflictError(notAwaitingMessage(job), { details: { jobId, status: job.status } });
    }
    if (decision.decision === "approved") job = await this.applyRaisedRule(job, this.host.load(job.stack));
    // The store checks again, in one transaction, that the job still awaits approval and that this
    // principal has not decided yet: a cancel, an expiry or a second decision in between is a ConflictError.
    const updated = await this.host.store.recordDecision(jobId, decision);
    const recorded = updated.decisions?.find((d) => d.by === decision.by) ?? { ...decision, at: new Date(this.host.now()).toISOString() };
    const note = decision.comment !== undefined ? `: ${decision.comment}` : "";
    if (decision.decision === "approved") {
      const count = `${approvalsOf(updated).length} of ${updated.approvalsRequired}`;
      await this.host.note(jobId, "info", `approved by ${decision.by} (${count})${note}${updated.status === "queued" ? "; queued to apply the approved change" : ""}`);
    } else {
      await this.host.note(jobId, "warning", `rejected by ${decision.by}${note}`);
    }
    const final = (await this.host.store.getJob(jobId)) ?? updated;
    this.host.decided(final, recorded);
    if (final.status === "rejected") this.host.ended(final);
    // Queued again (runs next on its stack), or rejected (the mutations behind it may run).
    if (final.status !== "awaiting_approval") this.host.kick();
    return final;
  }

  /**
   * The environment's approval rule, read again: when it now requires more approvals than the job
   * was created with, the job needs them too (a lowered rule applies to new requests only). Returns
   * the job as it now is.
   */
  async applyRaisedRule(job: Job, env: Environment): Promise<Job> {
    const required = approvalsRequiredFor(env, job.operation);
    if (required <= job.approvalsRequired) return job;
    let raised: Job;
    try {
      raised = await this.host.store.updateJob(job.id, { approvalsRequired: required }, { ifStatus: job.status });
    } catch (err) {
      if (err instanceof ConflictError) return (await this.host.store.getJob(job.id)) ?? job;
      throw err;
    }
    await this.host.note(job.id, "info", `${env.file} now requires ${required} approvals (was ${job.approvalsRequired}); this job needs them too`);
    return raised;
  }

  /** Ends the job's approval (waiting, or approved and still queued) as `rejected` when it expired; undefined when it did not (or someone else ended it). */
  async expireIfDue(job: Job, nowMs: number = this.host.now()): Promise<Job | undefined> {
    if (!approvalExpired(job, nowMs) || job.approvalRequest === undefined) return undefined;
    const message = job.status === "queued" ? `${expiryMessage(job.approvalRequest)} before it could apply` : expiryMessage(job.approvalRequest);
    let expired: Job;
    try {
      expired = await this.host.store.updateJob(
        job.id,
        { status: "rejected", finishedAt: new Date(nowMs).toISOString(), error: { code: "approval_expired", message } },
        { ifStatus: job.status },
      );
    } catch (err) {
      if (err instanceof ConflictError) return undefined;
      throw err;
    }
    await this.host.note(job.id, "warning", message);
    const final = (await this.host.store.getJob(job.id)) ?? expired;
    this.host.ended(final);
    return final;
  }

  /** Ends the approval waits that are over; returns them, and the stacks that still have a job awaiting approval. */
  async expireDue(nowMs: number = this.host.now(), approvedToo = false): Promise<{ expired: Job[]; waiting: Set<string> }> {
    const expired: Job[] = [];
    const waiting = new Set<string>();
    for (const job of await this.host.store.listJobs({ status: "awaiting_approval", limit: 500 })) {
      const ended = await this.expireIfDue(job, nowMs);
      if (ended) expired.push(ended);
      else waiting.add(job.stack); // still waiting (or just ended by a concurrent expiry, which kicks the queue)
    }
    // Approved, and still queued (its stack busy, the slots full) when the approval expires: on the
    // timer and at recover (dispatch checks the one it is about to start).
    if (approvedToo) for (const job of await this.host.store.listJobs({ status: "queued", limit: 500 })) {
      if (job.approvalRequest === undefined) continue;
      const ended = await this.expireIfDue(job, nowMs);
      if (ended) expired.push(ended);
    }
    return { expired, waiting };
  }

  /**
   * A job that needs approvals runs its operation with a `beforeApply` for its phase: the plan phase
   * stops there to wait (AwaitingApproval); the apply phase goes on only if the fresh preview matches
   * the approved plan (PlanChangedError otherwise).
   */
  withApprovalPhase(job: Job, env: Environment, what: JobParams): JobParams {
    const phase = approvalPhase(job);
    if (phase === undefined) return what;
    const beforeApply =
      phase === "plan"
        ? async (preview: OperationResult, inputs: PlanInputs) => {
            const request = approvalRequestFor(preview, this.host.now(), env.deploy.approvals.expiresHours, planBinding(env, inputs), env.deploy);
            const c = request.changes;
            const unscanned = request.unscannedImagesAllowed ? `; an image with no scan result will deploy anyway (deploy.allowUnscannedImages: ${request.unscannedImagesAllowed.reason})` : "";
            await this.host.note(job.id, "phase", `awaiting ${job.approvalsRequired} approval${job.approvalsRequired === 1 ? "" : "s"} from approvers other than ${job.requestedBy} ` +
              `(${c.create} to create, ${c.update} to update, ${c.replace} to replace, ${c.delete} to delete); the request expires after ${formatHours(request.expiresHours)}, at ${request.expiresAt}${unscanned}`);
            throw new AwaitingApproval({ approvalRequest: request, changes: preview.changes, steps: [...preview.steps] });
          }
        : async (preview: OperationResult, inputs: PlanInputs) => {
            assertPlanUnchanged(job, preview, planBinding(env, inputs));
            await this.host.note(job.id, "phase", `approved by ${approvalsOf(job).map((a) => a.by).join(", ")}; the fresh plan is the approved one (same changes and properties, environment, config and image)`);
          };
    switch (what.operation) {
      case "up":
        return { ...what, params: { ...what.params, beforeApply } };
      case "rollback":
        return { ...what, params: { ...what.params, beforeApply } };
      case "destroy":
        return { ...what, params: { ...what.params, beforeApply } };
      default:
        return what;
    }
  }
}

/** Why a job cannot take an approval or rejection now. */
function notAwaitingMessage(job: Job): string {
  if (TERMINAL_STATUSES.has(job.status)) return `job ${job.id} already ${job.status}`;
  if (job.status === "running") return `job ${job.id} is running; approvals are taken while it awaits approval`;
  if (job.approvalRequest !== undefined) return `job ${job.id} was approved already and is queued to apply`;
  return `job ${job.id} is queued and has not been previewed yet; approvals are taken once it awaits approval`;
}
