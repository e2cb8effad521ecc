/** Job routes: list, one job, its live events (SSE), its plain-text log, cancel. */
import { createHash } from "crypto";
import type { z } from "zod";
import { NotFoundError } from "../../automation/errors";
import { readableStacks, readsEveryStack, requireRole, type Scope } from "../auth";
import type { ApiContext } from "../context";
import { logLines, presentJob } from "../present";
import { lastEventIdHeader, parseInput, type cancelBody, type eventsQuery, type jobParams, type jobsQuery } from "../schemas";
import type { HandlerInput, Reply } from "./route";
import { TERMINAL_STATUSES, type Job } from "../../automation/store";

type JobInput<B = unknown, Q = unknown> = HandlerInput<z.output<typeof jobParams>, Q, B>;

async function mustGetJob(ctx: ApiContext, id: string): Promise<Job> {
  const job = await ctx.store.getJob(id);
  if (!job) throw new NotFoundError(`job ${id} not found`, { details: { field: "id" } });
  return job;
}

/** Authorization scope of a job route: the job's stack (404 for an unknown job). */
export async function jobScope(params: z.output<typeof jobParams>, ctx: ApiContext): Promise<Scope> {
  // Only the stack: the handler reads the job itself, once.
  const stack = await ctx.store.jobStack(params.id);
  if (stack === undefined) throw new NotFoundError(`job ${params.id} not found`, { details: { field: "id" } });
  return { stack };
}

/** Only jobs of stacks the caller may read: a stack filter it may not read matches nothing, like an unknown stack. */
export async function listJobs({ ctx, query, principal }: HandlerInput<unknown, z.output<typeof jobsQuery>, unknown>): Promise<Reply> {
  const stack = readsEveryStack(principal)
    ? query.stack
    : query.stack !== undefined
      ? readableStacks(principal, [query.stack])
      : readableStacks(principal, ctx.environments.list());
  const jobs = await ctx.store.listJobs({ stack, status: query.status, operation: query.operation, limit: query.limit, before: query.before });
  return {
    body: {
      jobs: await Promise.all(jobs.map(async (job) => presentJob(job, { queuePosition: job.status === "queued" ? await ctx.queue.queuePosition(job) : undefined }))),
      nextCursor: jobs.length === query.limit ? jobs[jobs.length - 1].id : null,
    },
  };
}

/**
 * One job. A finished job's answer carries an `ETag` (a hash of the answer itself, so a later change
 * such as `rolledBackBy` is a new tag), and `If-None-Match` with it answers 304 without a body: a
 * poller that waits for the end pays for the document once.
 *
 * Pollers read finished jobs over and over; a CPU profile of this route under load showed the time
 * going to reading the whole row (steps, outputs, config as JSON), presenting it and serializing it.
 * A finished job's answer is therefore kept (per service, the most recent FINISHED_CACHE_SIZE jobs)
 * with the store's `jobStamp`, a read of four scalar columns, and reused while the stamp is the same.
 */
export async function getJob({ ctx, params, req }: JobInput): Promise<Reply> {
  const cache = finishedCacheOf(ctx);
  const stamp = await ctx.store.jobStamp(params.id);
  if (stamp === undefined) throw new NotFoundError(`job ${params.id} not found`, { details: { field: "id" } });
  let hit = cache.get(params.id);
  if (hit === undefined || hit.stamp !== stamp) {
    const job = await ctx.queue.get(params.id);
    if (!job) throw new NotFoundError(`job ${params.id} not found`, { details: { field: "id" } });
    const body = presentJob(job, { queuePosition: job.queuePosition, steps: true });
    if (!TERMINAL_STATUSES.has(job.status)) return { body };
    const json = JSON.stringify(body);
    hit = { stamp, json, etag: `"${createHash("sha1").update(json).digest("base64url")}"` };
    cache.delete(params.id);
    cache.set(params.id, hit);
    if (cache.size > FINISHED_CACHE_SIZE) cache.delete(cache.keys().next().value as string);
  }
  const headers = { ETag: hit.etag, "Cache-Control": "private, no-cache" };
  if (etagMatches(req.get("if-none-match"), hit.etag)) return { status: 304, body: undefined, headers };
  return { body: hit.json, headers: { ...headers, "Content-Type": "application/json; charset=utf-8" } };
}

const FINISHED_CACHE_SIZE = 500;
const finishedCaches = new WeakMap<ApiContext, Map<string, { stamp: string; json: string; etag: string }>>();

function finishedCacheOf(ctx: ApiContext): Map<string, { stamp: string; json: string; etag: string }> {
  let cache = finishedCaches.get(ctx);
  if (cache === undefined) finishedCaches.set(ctx, (cache = new Map()));
  return cache;
}

/** `If-None-Match`: `*` or a list of tags, weak ones (`W/"…"`) compared by their value. */
function etagMatches(header: string | undefined, etag: string): boolean {
  if (header === undefined) return false;
  return header.split(",").some((tag) => {
    const t = tag.trim();
    return t === "*" || t === etag || t === `W/${etag}`;
  });
}

export async function streamEvents({ ctx, params, query, req, res, principal }: JobInput<unknown, z.output<typeof eventsQuery>>): Promise<void> {
  const job = await mustGetJob(ctx, params.id);
  const header = req.get("last-event-id");
  const afterSeq = header !== undefined && header !== "" ? parseInput(lastEventIdHeader, header, "header", "Last-Event-ID") : (query.lastEventId ?? 0);
  ctx.streams.stream(job, afterSeq, req, res, principal.name);
}

export async function jobLog({ ctx, params }: JobInput): Promise<Reply> {
  const job = await mustGetJob(ctx, params.id);
  let text = logLines(await ctx.store.listEvents(job.id));
  if (TERMINAL_STATUSES.has(job.status)) text += `${job.finishedAt ?? ""} ${job.operation} ${job.status}${job.error ? `: ${job.error.message}` : ""}\n`;
  return { body: text, headers: { "Content-Type": "text/plain; charset=utf-8" } };
}

export async function cancelJob({ ctx, params, body, principal }: JobInput<z.output<typeof cancelBody>>): Promise<Reply> {
  const job = await mustGetJob(ctx, params.id);
  // Force kills the engine's process tree: admin only.
  if (body.force) requireRole("admin", principal, { stack: job.stack });
  const canceled = await ctx.queue.cancel(job.id, { force: body.force }, principal.name);
  return {
    status: TERMINAL_STATUSES.has(canceled.status) ? 200 : 202,
    headers: { Location: `/v1/jobs/${job.id}` },
    body: presentJob(canceled),
  };
}
