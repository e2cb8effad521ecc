/**
 * Approval routes: an approver's decision on a job awaiting approval (automation/jobs/approvals.ts).
 * The router has checked the `approver` role on the job's stack; the queue applies the rest of the
 * rule (never the requester: 403; one decision per principal, and only while the job awaits
 * approval: 409) and records the decision with the job's change in one store transaction.
 */
import type { z } from "zod";
import type { Job } from "../../automation/store";
import { presentJob } from "../present";
import type { decisionBody, jobParams } from "../schemas";
import type { HandlerInput, Reply } from "./route";

type DecisionInput = HandlerInput<z.output<typeof jobParams>, unknown, z.output<typeof decisionBody>>;

function decided(job: Job): Reply {
  return { headers: { Location: `/v1/jobs/${job.id}` }, body: presentJob(job, { steps: true }) };
}

/** POST /v1/jobs/:id/approvals: the job as it is after it (still awaiting, or queued to apply). */
export async function approveJob({ ctx, params, body, principal }: DecisionInput): Promise<Reply> {
  return decided(await ctx.queue.approve(params.id, principal.name, body.comment));
}

/** POST /v1/jobs/:id/rejections: the job, rejected. */
export async function rejectJob({ ctx, params, body, principal }: DecisionInput): Promise<Reply> {
  return decided(await ctx.queue.reject(params.id, principal.name, body.comment));
}
