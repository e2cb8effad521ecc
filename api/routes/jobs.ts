/** Job routes: list, one job, its live events (SSE), its plain-text log, cancel. */
import type { z } from "zod";
import { NotFoundError } from "../../automation/errors";
import { readableStacks, readsEveryStack, requireRole, type Scope } from "../auth";
import type { ApiContext } from "../context";
import { logLines, presentJob } from "../present";
import { lastEventIdHeader, parseInput, type cancelBody, type eventsQuery, type jobParams, type jobsQuery } from "../schemas";
import type { HandlerInput, Reply } from "./route";
import { TERMINAL_STATUSES, type Job } from "../../automation/store";

type JobInput<B = unknown, Q = unknown> = HandlerInput<z.output<typeof jobParams>, Q, B>;

function mustGetJob(ctx: ApiContext, id: string): Job {
  const job = ctx.store.getJob(id);
  if (!job) throw new NotFoundError(`job ${id} not found`, { details: { field: "id" } });
  return job;
}

/** Authorization scope of a job route: the job's stack (404 for an unknown job). */
export function jobScope(params: z.output<typeof jobParams>, ctx: ApiContext): Scope {
  // Only the stack: the handler reads the job itself, once.
  const stack = ctx.store.jobStack(params.id);
  if (stack === undefined) throw new NotFoundError(`job ${params.id} not found`, { details: { field: "id" } });
  return { stack };
}

/** Only jobs of stacks the caller may read: a stack filter it may not read matches nothing, like an unknown stack. */
export function listJobs({ ctx, query, principal }: HandlerInput<unknown, z.output<typeof jobsQuery>, unknown>): Reply {
  const stack = readsEveryStack(principal)
    ? query.stack
    : query.stack !== undefined
      ? readableStacks(principal, [query.stack])
      : readableStacks(principal, ctx.environments.list());
  const jobs = ctx.store.listJobs({ stack, status: query.status, operation: query.operation, limit: query.limit, before: query.before });
  return {
    body: {
      jobs: jobs.map((job) => presentJob(job, { queuePosition: job.status === "queued" ? ctx.queue.get(job.id)?.queuePosition : undefined })),
      nextCursor: jobs.length === query.limit ? jobs[jobs.length - 1].id : null,
    },
  };
}

export function getJob({ ctx, params }: JobInput): Reply {
  const job = ctx.queue.get(params.id);
  if (!job) throw new NotFoundError(`job ${params.id} not found`, { details: { field: "id" } });
  return { body: presentJob(job, { queuePosition: job.queuePosition, steps: true }) };
}

export function streamEvents({ ctx, params, query, req, res, principal }: JobInput<unknown, z.output<typeof eventsQuery>>): void {
  const job = mustGetJob(ctx, params.id);
  const header = req.get("last-event-id");
  const afterSeq = header !== undefined && header !== "" ? parseInput(lastEventIdHeader, header, "header", "Last-Event-ID") : (query.lastEventId ?? 0);
  ctx.streams.stream(job, afterSeq, req, res, principal.name);
}

export function jobLog({ ctx, params }: JobInput): Reply {
  const job = mustGetJob(ctx, params.id);
  let text = logLines(ctx.store.listEvents(job.id));
  if (TERMINAL_STATUSES.has(job.status)) text += `${job.finishedAt ?? ""} ${job.operation} ${job.status}${job.error ? `: ${job.error.message}` : ""}\n`;
  return { body: text, headers: { "Content-Type": "text/plain; charset=utf-8" } };
}

export function cancelJob({ ctx, params, body, principal }: JobInput<z.output<typeof cancelBody>>): Reply {
  const job = mustGetJob(ctx, params.id);
  // Force kills the engine's process tree: admin only.
  if (body.force) requireRole("admin", principal, { stack: job.stack });
  const canceled = ctx.queue.cancel(job.id, { force: body.force }, principal.name);
  return {
    status: TERMINAL_STATUSES.has(canceled.status) ? 200 : 202,
    headers: { Location: `/v1/jobs/${job.id}` },
    body: presentJob(canceled),
  };
}
