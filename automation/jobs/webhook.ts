/**
 * The drift webhook: when a drift check finds drift, a JSON notification is POSTed to
 * `DEPLOYER_WEBHOOK_URL`, signed with HMAC-SHA256 over the exact body bytes with
 * `DEPLOYER_WEBHOOK_SECRET`:
 *
 *   POST <url>
 *   Content-Type: application/json
 *   X-Deployer-Event: drift.detected
 *   X-Deployer-Delivery: <uuid, the same on every retry of one notification>
 *   X-Deployer-Signature: sha256=<hex HMAC-SHA256(secret, body)>
 *
 *   {"event":"drift.detected","stack":"prod","jobId":"job_…","detectedAt":"…",
 *    "drifted":[{"urn":"…","type":"…","kind":"update","properties":["tags.Owner"]}]}
 *
 * Property values are never sent (they may be secret): only their paths. A network error, a 5xx or a
 * 429 is retried with exponential backoff (4 attempts by default); anything else is final. A failing
 * webhook never fails the drift job: failures go to `onError`. Receivers check the signature with
 * `verifyWebhookSignature` (constant-time).
 */
import { createHmac, randomUUID, timingSafeEqual } from "crypto";
import { ConfigError } from "../errors";
import type { Job } from "../store";

export const DRIFT_DETECTED_EVENT = "drift.detected";
export const SIGNATURE_HEADER = "X-Deployer-Signature";
export const EVENT_HEADER = "X-Deployer-Event";
export const DELIVERY_HEADER = "X-Deployer-Delivery";

/** The body of a `drift.detected` notification. */
export interface DriftNotification {
  readonly event: typeof DRIFT_DETECTED_EVENT;
  readonly stack: string;
  readonly jobId: string;
  readonly detectedAt: string;
  readonly drifted: readonly { readonly urn: string; readonly type: string; readonly kind: string; readonly properties: readonly string[] }[];
}

export interface WebhookNotifierOptions {
  /** Where to POST (http or https). */
  readonly url: string;
  /** The HMAC key. */
  readonly secret: string;
  /** Attempts per notification, the first included. Default 4. */
  readonly attempts?: number;
  /** The wait before each retry; the last entry repeats. Default [1000, 4000, 16000] ms. */
  readonly retryDelaysMs?: readonly number[];
  /** Per attempt. Default 10 000 ms. */
  readonly timeoutMs?: number;
  /** Default: the global fetch. */
  readonly fetch?: typeof fetch;
  /** Called when a notification could not be delivered (after its last attempt). */
  readonly onError?: (error: Error, delivery: WebhookDelivery) => void;
}

/** How one notification went. */
export interface WebhookDelivery {
  readonly id: string;
  readonly event: string;
  readonly ok: boolean;
  readonly attempts: number;
  /** The last HTTP status, when there was a response. */
  readonly status?: number;
  /** Why it failed, when it did. */
  readonly error?: string;
}

export const DEFAULT_WEBHOOK_ATTEMPTS = 4;
export const DEFAULT_WEBHOOK_RETRY_DELAYS_MS: readonly number[] = [1_000, 4_000, 16_000];
/** A receiver's Retry-After is honoured up to this long. */
const MAX_RETRY_AFTER_MS = 60_000;

/** `sha256=<hex HMAC-SHA256(secret, body)>`: the value of `X-Deployer-Signature`. */
export function signWebhookBody(body: string | Buffer, secret: string): string {
  return `sha256=${createHmac("sha256", secret).update(body).digest("hex")}`;
}

/** Whether `header` is the signature of exactly `body` under `secret` (compared in constant time). */
export function verifyWebhookSignature(body: string | Buffer, header: string | undefined | null, secret: string): boolean {
  if (typeof header !== "string" || !/^sha256=[0-9a-f]{64}$/i.test(header.trim())) return false;
  const expected = Buffer.from(signWebhookBody(body, secret).slice("sha256=".length), "hex");
  const given = Buffer.from(header.trim().slice("sha256=".length), "hex");
  return given.length === expected.length && timingSafeEqual(given, expected);
}

/** The notification for a drift job's report: resources and property paths, never values. */
export function driftNotification(job: Job): DriftNotification {
  return {
    event: DRIFT_DETECTED_EVENT,
    stack: job.stack,
    jobId: job.id,
    detectedAt: job.finishedAt ?? new Date().toISOString(),
    drifted: (job.drift ?? []).map((r) => ({ urn: r.urn, type: r.type, kind: r.kind, properties: r.properties.map((p) => p.path) })),
  };
}

/** Whether a finished job is a drift check that found drift (what the webhook announces). */
export function foundDrift(job: Job): boolean {
  return job.operation === "drift" && job.status === "succeeded" && (job.drift?.length ?? 0) > 0;
}

export class WebhookNotifier {
  private readonly url: URL;
  private readonly secret: string;
  private readonly attempts: number;
  private readonly delays: readonly number[];
  private readonly timeoutMs: number;
  private readonly fetch: typeof fetch;
  private readonly onError?: WebhookNotifierOptions["onError"];
  /** Aborted by close(): pending retries give up. */
  private readonly closing = new AbortController();
  private readonly inFlight = new Set<Promise<WebhookDelivery>>();

  constructor(options: WebhookNotifierOptions) {
    let url: URL;
    try {
      url = new URL(options.url);
    } catch {
      throw new ConfigError("DEPLOYER_WEBHOOK_URL is not a URL", { details: { field: "DEPLOYER_WEBHOOK_URL" } });
    }
    if (url.protocol !== "http:" && url.protocol !== "https:") {
      throw new ConfigError("DEPLOYER_WEBHOOK_URL must be an http or https URL", { details: { field: "DEPLOYER_WEBHOOK_URL" } });
    }
    if (typeof options.secret !== "string" || options.secret === "") {
      throw new ConfigError("DEPLOYER_WEBHOOK_SECRET is required with DEPLOYER_WEBHOOK_URL: notifications are always signed", {
        details: { field: "DEPLOYER_WEBHOOK_SECRET" },
      });
    }
    const attempts = options.attempts ?? DEFAULT_WEBHOOK_ATTEMPTS;
    if (!Number.isInteger(attempts) || attempts < 1) throw new ConfigError(`webhook attempts must be a positive integer, got ${String(attempts)}`);
    this.url = url;
    this.secret = options.secret;
    this.attempts = attempts;
    this.delays = options.retryDelaysMs && options.retryDelaysMs.length > 0 ? options.retryDelaysMs : DEFAULT_WEBHOOK_RETRY_DELAYS_MS;
    this.timeoutMs = options.timeoutMs ?? 10_000;
    this.fetch = options.fetch ?? globalThis.fetch;
    this.onError = options.onError;
  }

  /** Announces a drift job's finding, if it found drift; resolves (never rejects) with how it went. */
  async notifyDrift(job: Job): Promise<WebhookDelivery | undefined> {
    if (!foundDrift(job)) return undefined;
    return this.deliver(DRIFT_DETECTED_EVENT, driftNotification(job));
  }

  /** POSTs one signed notification, retrying as configured; never rejects. */
  deliver(event: string, payload: unknown): Promise<WebhookDelivery> {
    const promise = this.send(event, JSON.stringify(payload));
    this.inFlight.add(promise);
    void promise.finally(() => this.inFlight.delete(promise));
    return promise;
  }

  /** Deliveries not finished yet, to await before exiting if wanted. */
  pending(): Promise<WebhookDelivery[]> {
    return Promise.all([...this.inFlight]);
  }

  /** Pending retries give up (reported through onError); nothing new is retried. */
  close(): void {
    this.closing.abort();
  }

  private async send(event: string, body: string): Promise<WebhookDelivery> {
    const id = randomUUID();
    const headers = {
      "Content-Type": "application/json",
      "User-Agent": "pulumi-aws-deployer",
      [EVENT_HEADER]: event,
      [DELIVERY_HEADER]: id,
      [SIGNATURE_HEADER]: signWebhookBody(body, this.secret),
    };
    let status: number | undefined;
    let error = "";
    let attempt = 0;
    while (attempt < this.attempts) {
      attempt++;
      let retryAfterMs: number | undefined;
      try {
        const response = await this.fetch(this.url, {
          method: "POST",
          headers,
          body,
          redirect: "manual",
          signal: AbortSignal.any([AbortSignal.timeout(this.timeoutMs), this.closing.signal]),
        });
        status = response.status;
        await response.arrayBuffer().catch(() => undefined); // drain, so the connection is reused
        if (status >= 200 && status < 300) return { id, event, ok: true, attempts: attempt, status };
        error = `${this.url.origin} answered ${status}`;
        if (status !== 429 && status < 500) break; // the receiver refuses it: retrying will not help
        retryAfterMs = parseRetryAfter(response.headers.get("retry-after"));
      } catch (err) {
        status = undefined;
        error = `${this.url.origin} could not be reached: ${(err as Error).message}`;
      }
      if (attempt >= this.attempts || this.closing.signal.aborted) break;
      const delay = Math.max(this.delays[Math.min(attempt - 1, this.delays.length - 1)], Math.min(retryAfterMs ?? 0, MAX_RETRY_AFTER_MS));
      if (!(await sleep(delay, this.closing.signal))) break;
    }
    const delivery: WebhookDelivery = { id, event, ok: false, attempts: attempt, ...(status === undefined ? {} : { status }), error };
    try {
      this.onError?.(new Error(`webhook ${event} delivery ${id} failed after ${attempt} attempt${attempt === 1 ? "" : "s"}: ${error}`), delivery);
    } catch {
      // the reporter's failure is not the notification's
    }
    return delivery;
  }
}

/**
 * The notifier the environment asks for: `DEPLOYER_WEBHOOK_URL` (none: undefined) signed with
 * `DEPLOYER_WEBHOOK_SECRET` (required with the URL). Throws ConfigError for a bad URL or no secret.
 */
export function webhookNotifierFromEnv(
  env: NodeJS.ProcessEnv = process.env,
  options: Omit<WebhookNotifierOptions, "url" | "secret"> = {},
): WebhookNotifier | undefined {
  const url = env.DEPLOYER_WEBHOOK_URL?.trim();
  if (!url) return undefined;
  return new WebhookNotifier({ ...options, url, secret: env.DEPLOYER_WEBHOOK_SECRET ?? "" });
}

/** Seconds or an HTTP date, in ms; undefined when absent or unreadable. */
function parseRetryAfter(value: string | null): number | undefined {
  if (value === null || value.trim() === "") return undefined;
  const seconds = Number(value);
  if (Number.isFinite(seconds) && seconds >= 0) return seconds * 1000;
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, at - Date.now());
}

/** Resolves true after `ms`, or false at once when `signal` aborts (the timer never holds the process). */
function sleep(ms: number, signal: AbortSignal): Promise<boolean> {
  if (signal.aborted) return Promise.resolve(false);
  return new Promise((resolve) => {
    const onAbort = () => {
      clearTimeout(timer);
      resolve(false);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve(true);
    }, ms);
    timer.unref();
    signal.addEventListener("abort", onAbort, { once: true });
  });
}
