/**
 * Scheduled drift checks: each environment's `deploy.driftSchedule` (5-field cron, UTC) enqueues a
 * drift job (`source: "schedule"`, requested by `"schedule"`) at each due time, unless a drift job of
 * that stack is already queued or running. One timer, armed for the nearest due time (and at least
 * every `maxSleepMs`, so edited environment files are picked up), unref'd so it never keeps the
 * process alive. `tick(now)` is what the timer calls; tests call it with the time they want.
 *
 * Several replicas may run a scheduler each: the job's idempotency key is the stack and the due time,
 * so one due time makes one job.
 *
 * With a `notifier`, every drift job that ends having found drift (scheduled or asked for) is
 * announced through it (webhook.ts); its failures never touch the job.
 *
 * Cron: minute hour day-of-month month day-of-week; each field `*`, `n`, `a-b`, with an optional
 * `/step`, and comma lists of those; day-of-week 0-7 (0 and 7 are Sunday). When both day fields are
 * restricted (neither starts with `*`), a day matching either runs, as in Vixie cron.
 */
import type { Environment } from "../environment";
import { ConfigError } from "../errors";
import type { Job, Store } from "../store";
import type { JobQueue } from "./queue";
import { foundDrift, type WebhookNotifier } from "./webhook";

// Cron ---------------------------------------------------------------------------------------------

export interface CronSchedule {
  readonly expression: string;
  readonly minutes: ReadonlySet<number>;
  readonly hours: ReadonlySet<number>;
  readonly daysOfMonth: ReadonlySet<number>;
  readonly months: ReadonlySet<number>;
  /** 0 (Sunday) to 6. */
  readonly daysOfWeek: ReadonlySet<number>;
  /** Whether the day-of-month / day-of-week field is unrestricted (starts with `*`). */
  readonly anyDayOfMonth: boolean;
  readonly anyDayOfWeek: boolean;
}

const FIELDS = [
  { name: "minute", min: 0, max: 59 },
  { name: "hour", min: 0, max: 23 },
  { name: "day of month", min: 1, max: 31 },
  { name: "month", min: 1, max: 12 },
  { name: "day of week", min: 0, max: 7 },
] as const;

const PART = /^(\*|(\d+)(?:-(\d+))?)(?:\/(\d+))?$/;

/** Parses a 5-field cron expression; ConfigError naming the field when it is malformed or out of range. */
export function parseCron(expression: string): CronSchedule {
  const fields = expression.trim().split(/\s+/);
  if (fields.length !== 5) throw new ConfigError(`cron "${expression}": must have 5 fields (minute hour day-of-month month day-of-week)`);
  const sets = fields.map((text, i) => parseField(expression, text, FIELDS[i]));
  const daysOfWeek = new Set([...sets[4]].map((d) => d % 7));
  return {
    expression,
    minutes: sets[0],
    hours: sets[1],
    daysOfMonth: sets[2],
    months: sets[3],
    daysOfWeek,
    anyDayOfMonth: fields[2].startsWith("*"),
    anyDayOfWeek: fields[4].startsWith("*"),
  };
}

function parseField(expression: string, text: string, field: (typeof FIELDS)[number]): Set<number> {
  const out = new Set<number>();
  for (const part of text.split(",")) {
    const m = PART.exec(part);
    if (!m) throw new ConfigError(`cron "${expression}": ${field.name} "${text}" is not *, n, a-b or a list of them, with an optional /step`);
    const step = m[4] === undefined ? 1 : Number(m[4]);
    let from: number = field.min;
    let to: number = field.max;
    if (m[1] !== "*") {
      from = Number(m[2]);
      // `n/step` runs from n to the end of the range, as cron has it.
      to = m[3] !== undefined ? Number(m[3]) : m[4] !== undefined ? field.max : from;
    }
    if (from < field.min || to > field.max || from > to) {
      throw new ConfigError(`cron "${expression}": ${field.name} "${part}" is outside ${field.min}-${field.max}`);
    }
    if (step < 1) throw new ConfigError(`cron "${expression}": ${field.name} step must be at least 1`);
    for (let v = from; v <= to; v += step) out.add(v);
  }
  return out;
}

const MINUTE = 60_000;

/** The first time strictly after `after` (ms or Date) that the schedule matches, UTC, whole minutes. */
export function nextCronTime(schedule: CronSchedule | string, after: number | Date): Date {
  const s = typeof schedule === "string" ? parseCron(schedule) : schedule;
  const d = new Date(Math.floor(+after / MINUTE) * MINUTE + MINUTE);
  // Every step moves to the start of the next month, day, hour or minute: a few thousand at most
  // for any schedule that matches within five years.
  for (let i = 0; i < 100_000; i++) {
    if (d.getUTCFullYear() > new Date(+after).getUTCFullYear() + 5) break;
    if (!s.months.has(d.getUTCMonth() + 1)) {
      d.setUTCMonth(d.getUTCMonth() + 1, 1);
      d.setUTCHours(0, 0, 0, 0);
      continue;
    }
    if (!dayMatches(s, d)) {
      d.setUTCDate(d.getUTCDate() + 1);
      d.setUTCHours(0, 0, 0, 0);
      continue;
    }
    if (!s.hours.has(d.getUTCHours())) {
      d.setUTCHours(d.getUTCHours() + 1, 0, 0, 0);
      continue;
    }
    if (!s.minutes.has(d.getUTCMinutes())) {
      d.setUTCMinutes(d.getUTCMinutes() + 1, 0, 0);
      continue;
    }
    return d;
  }
  throw new ConfigError(`cron "${s.expression}" never matches`);
}

function dayMatches(s: CronSchedule, d: Date): boolean {
  const dom = s.daysOfMonth.has(d.getUTCDate());
  const dow = s.daysOfWeek.has(d.getUTCDay());
  return s.anyDayOfMonth || s.anyDayOfWeek ? dom && dow : dom || dow;
}

// Scheduler ----------------------------------------------------------------------------------------

export interface SchedulerTimers {
  set(fn: () => void, ms: number): unknown;
  clear(handle: unknown): void;
}

export interface DriftSchedulerOptions {
  readonly queue: Pick<JobQueue, "submit" | "on" | "off">;
  readonly store: Store;
  /** The environments to schedule, read at every tick (so edits are picked up). */
  readonly environments: () => readonly Environment[];
  /** The clock, ms since epoch. Default Date.now. */
  readonly now?: () => number;
  /** Announces drift found by any drift job (webhook.ts). */
  readonly notifier?: Pick<WebhookNotifier, "notifyDrift">;
  /** Where failures go: a schedule that cannot be parsed, a refused submit, a notifier that threw. */
  readonly onError?: (error: Error, context: { readonly stack?: string }) => void;
  /** Default: unref'd setTimeout / clearTimeout. */
  readonly timers?: SchedulerTimers;
  /** The longest the timer sleeps before looking again. Default 5 minutes. */
  readonly maxSleepMs?: number;
}

/** When a stack's next scheduled drift check is due. */
export interface ScheduledCheck {
  readonly stack: string;
  readonly schedule: string;
  readonly next: string;
}

const realTimers: SchedulerTimers = {
  set(fn, ms) {
    const t = setTimeout(fn, ms);
    t.unref();
    return t;
  },
  clear(handle) {
    clearTimeout(handle as NodeJS.Timeout);
  },
};

export class DriftScheduler {
  private readonly now: () => number;
  private readonly timers: SchedulerTimers;
  private readonly maxSleepMs: number;
  private readonly parsed = new Map<string, CronSchedule | Error>();
  private readonly reported = new Set<string>();
  private lastTick = 0;
  private timer: unknown;
  private running = false;
  /** The end of the last tick: ticks run one at a time (see `tick`). */
  private ticking: Promise<unknown> = Promise.resolve();
  private readonly onDone = (job: Job) => {
    if (!foundDrift(job) || !this.options.notifier) return;
    let delivery: Promise<unknown>;
    try {
      delivery = Promise.resolve(this.options.notifier.notifyDrift(job));
    } catch (err) {
      delivery = Promise.reject(err);
    }
    delivery.catch((err) => this.report(asError(err), job.stack));
  };

  constructor(private readonly options: DriftSchedulerOptions) {
    this.now = options.now ?? Date.now;
    this.timers = options.timers ?? realTimers;
    this.maxSleepMs = options.maxSleepMs ?? 5 * MINUTE;
  }

  /** Starts the timer (due times count from now) and the drift notifications. */
  start(): void {
    if (this.running) return;
    this.running = true;
    this.lastTick = this.now();
    if (this.options.notifier) this.options.queue.on("job:done", this.onDone);
    this.arm();
  }

  stop(): void {
    this.running = false;
    if (this.timer !== undefined) this.timers.clear(this.timer);
    this.timer = undefined;
    this.options.queue.off("job:done", this.onDone);
  }

  /**
   * Enqueues a drift check for every stack with a due time in (last tick, now], unless one is queued
   * or running already; returns the jobs it created. The timer calls it; so can tests. Ticks run one
   * at a time, each after the one before has submitted its jobs, so that the next one sees them
   * queued (its "already queued" check and its submit are apart by an await). A stack's failure (the
   * store, a refused submit) is reported through `onError` and the others go on.
   */
  tick(now: number = this.now()): Promise<Job[]> {
    const ticked = this.ticking.then(() => this.tickOnce(now));
    this.ticking = ticked.catch(() => undefined);
    return ticked;
  }

  private async tickOnce(now: number): Promise<Job[]> {
    const since = this.lastTick;
    this.lastTick = Math.max(this.lastTick, now);
    const created: Job[] = [];
    for (const env of this.scheduled()) {
      const schedule = this.schedule(env);
      if (!schedule) continue;
      let due: Date;
      try {
        due = nextCronTime(schedule, since);
      } catch (err) {
        this.reportOnce(env, asError(err));
        continue;
      }
      if (+due > now) continue;
      try {
        if ((await this.options.store.listJobs({ stack: env.name, operation: "drift", status: ["queued", "running"], limit: 1 })).length > 0) continue;
        const { job, created: isNew } = await this.options.queue.submit({
          stack: env.name,
          operation: "drift",
          requestedBy: "schedule",
          source: "schedule",
          params: {},
          // The `schedule:` namespace: a request's keys are stored as `api:<hash>` and never reach it.
          idempotencyKey: `schedule:drift:${env.name}:${due.toISOString()}`,
          requestHash: "drift-schedule",
        });
        if (isNew) created.push(job);
      } catch (err) {
        this.report(asError(err), env.name);
      }
    }
    if (this.running) this.arm();
    return created;
  }

  /** Each scheduled stack's next due time. */
  upcoming(now: number = this.now()): ScheduledCheck[] {
    const out: ScheduledCheck[] = [];
    for (const env of this.scheduled()) {
      const schedule = this.schedule(env);
      if (!schedule) continue;
      try {
        out.push({ stack: env.name, schedule: schedule.expression, next: nextCronTime(schedule, now).toISOString() });
      } catch {
        // reported by tick
      }
    }
    return out;
  }

  private arm(): void {
    if (this.timer !== undefined) this.timers.clear(this.timer);
    const now = this.now();
    let wait = this.maxSleepMs;
    for (const check of this.upcoming(now)) wait = Math.min(wait, Date.parse(check.next) - now);
    this.timer = this.timers.set(() => {
      this.timer = undefined;
      if (this.running) this.tick().catch((err) => this.report(asError(err), undefined));
    }, Math.max(1, wait));
  }

  private scheduled(): Environment[] {
    try {
      return this.options.environments().filter((env) => env.deploy.driftSchedule !== undefined);
    } catch (err) {
      this.report(asError(err), undefined);
      return [];
    }
  }

  private schedule(env: Environment): CronSchedule | undefined {
    const expression = env.deploy.driftSchedule as string;
    let parsed = this.parsed.get(expression);
    if (parsed === undefined) {
      try {
        parsed = parseCron(expression);
      } catch (err) {
        parsed = asError(err);
      }
      this.parsed.set(expression, parsed);
    }
    if (parsed instanceof Error) {
      this.reportOnce(env, parsed);
      return undefined;
    }
    return parsed;
  }

  private reportOnce(env: Environment, error: Error): void {
    const key = `${env.name}\n${env.deploy.driftSchedule}`;
    if (this.reported.has(key)) return;
    this.reported.add(key);
    this.report(new ConfigError(`${env.file}: deploy.driftSchedule: ${error.message}`, { cause: error }), env.name);
  }

  private report(error: Error, stack: string | undefined): void {
    try {
      this.options.onError?.(error, stack === undefined ? {} : { stack });
    } catch {
      // the reporter's failure stays there
    }
  }
}

function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err), { cause: err });
}
