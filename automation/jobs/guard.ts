/**
 * The one-operation-per-stack rules that hold whoever runs the operation (the service's queue or the
 * CLI): a blocked stack takes no mutation until an admin recovers it, and a stack with a job awaiting
 * approval (or approved and queued to apply) takes no other mutation before it.
 */
import { StackBlockedError } from "../errors";
import { MUTATING_OPERATIONS, type JobOperation, type Store } from "../store";

/** The error a mutation of a blocked stack gets: what happened and how to recover. */
export function blockedError(stack: string, reason: string, jobId?: string): StackBlockedError {
  return new StackBlockedError(`stack ${stack} is blocked: ${reason}; an admin must POST /v1/stacks/${stack}/unlock`, {
    details: { stack, blocked: true, reason, ...(jobId ? { jobId } : {}) },
  });
}

/** Throws StackBlockedError when the stack is blocked for mutations. */
export async function assertNotBlocked(store: Store, stack: string, operation: JobOperation): Promise<void> {
  if (!MUTATING_OPERATIONS.has(operation)) return;
  const state = await store.getStackState(stack);
  if (state.blockedReason !== undefined) throw blockedError(stack, state.blockedReason, state.blockedJobId);
}

/**
 * For a mutation run outside the queue (the CLI): refused on a blocked stack, and while a job of the
 * stack awaits approval or is approved and queued to apply, since it would run ahead of what the
 * approvers approved.
 */
export async function assertMutationMayRunNow(store: Store, stack: string, operation: JobOperation): Promise<void> {
  if (!MUTATING_OPERATIONS.has(operation)) return;
  await assertNotBlocked(store, stack, operation);
  const waiting =
    (await store.listJobs({ stack, status: "awaiting_approval", limit: 1 }))[0] ??
    (await store.queuedJobs({ stack })).find((j) => j.approvalRequest !== undefined && j.approvalsRequired > 0);
  if (waiting) {
    const what = waiting.status === "awaiting_approval" ? "awaits approval" : "was approved and is queued to apply";
    throw new StackBlockedError(
      `stack ${stack} has ${waiting.operation} job ${waiting.id} that ${what}; it runs first: approve, reject or cancel it (POST /v1/jobs/${waiting.id}/approvals, /rejections or /cancel) before changing the stack from here`,
      { details: { stack, jobId: waiting.id, status: waiting.status } },
    );
  }
}
