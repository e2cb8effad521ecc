/**
 * Prometheus metrics on the service's own registry (prom-client): job outcomes and durations counted
 * from the queue's `job:done` events; queue depth, running jobs, drift and the last successful
 * deployment per stack read from the queue and the store at scrape time, so they are right after a
 * restart and for jobs the CLI ran.
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client";
import type { Job, Store } from "../automation/store";
import type { QueueStatus } from "../automation/jobs/types";
import type { Environments } from "./environments";

export interface MetricsOptions {
  readonly store: Store;
  readonly environments: Environments;
  readonly queueStatus: () => Promise<QueueStatus>;
  /** Node's process metrics (`process_*`, `nodejs_*`). Default true. */
  readonly processMetrics?: boolean;
}

export class ServiceMetrics {
  readonly registry = new Registry();
  private readonly jobsTotal: Counter<"operation" | "stack" | "status">;
  private readonly jobDuration: Histogram<"operation">;
  private readonly drifted: Gauge<"stack">;

  constructor(private readonly options: MetricsOptions) {
    const registers = [this.registry];
    if (options.processMetrics ?? true) collectDefaultMetrics({ register: this.registry });
    this.jobsTotal = new Counter({
      name: "deployer_jobs_total",
      help: "Jobs that ended, by operation, stack and final status.",
      labelNames: ["operation", "stack", "status"],
      registers,
    });
    this.jobDuration = new Histogram({
      name: "deployer_job_duration_seconds",
      help: "How long jobs ran, from start to end, by operation.",
      labelNames: ["operation"],
      buckets: [1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600],
      registers,
    });
    new Gauge({
      name: "deployer_queue_depth",
      help: "Jobs waiting to run.",
      registers,
      async collect() {
        this.set((await options.queueStatus()).queued);
      },
    });
    new Gauge({
      name: "deployer_running_jobs",
      help: "Jobs running now.",
      registers,
      async collect() {
        this.set((await options.queueStatus()).running);
      },
    });
    const self = this;
    this.drifted = new Gauge({
      name: "deployer_stack_drifted",
      help: "1 when the stack's latest drift check found drift, 0 when it found none (absent before any check).",
      labelNames: ["stack"],
      registers,
      async collect() {
        for (const stack of self.stacks()) {
          const state = await options.store.getStackState(stack);
          if (state.drifted !== undefined) this.set({ stack }, state.drifted ? 1 : 0);
        }
      },
    });
    new Gauge({
      name: "deployer_last_successful_deployment_timestamp_seconds",
      help: "When the stack's latest successful deployment (up or rollback) finished, in seconds since the epoch.",
      labelNames: ["stack"],
      registers,
      async collect() {
        for (const stack of self.stacks()) {
          const [last] = await options.store.deployments(stack, { limit: 1 });
          if (last?.finishedAt !== undefined) this.set({ stack }, Date.parse(last.finishedAt) / 1000);
        }
      },
    });
  }

  /** Counts a finished job (the queue's `job:done`). */
  jobDone(job: Job): void {
    this.jobsTotal.inc({ operation: job.operation, stack: job.stack, status: job.status });
    if (job.startedAt !== undefined && job.finishedAt !== undefined) {
      const seconds = (Date.parse(job.finishedAt) - Date.parse(job.startedAt)) / 1000;
      if (Number.isFinite(seconds) && seconds >= 0) this.jobDuration.observe({ operation: job.operation }, seconds);
    }
    if (job.operation === "drift" && job.status === "succeeded") {
      // The gauge reads every stack again on each scrape; this only makes it current sooner.
      this.options.store.getStackState(job.stack).then(
        (state) => {
          if (state.drifted !== undefined) this.drifted.set({ stack: job.stack }, state.drifted ? 1 : 0);
        },
        () => undefined,
      );
    }
  }

  async render(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }

  private stacks(): string[] {
    try {
      return this.options.environments.list();
    } catch {
      return [];
    }
  }
}
