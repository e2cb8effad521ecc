/**
 * A job's events over Server-Sent Events, read with `fetch` rather than `EventSource`, which cannot
 * send the `Authorization` header. After a dropped connection it reconnects with `Last-Event-ID` (the
 * id of the last event it handed on), and it never hands on an event twice: the service replays only
 * what came after that id, and anything at or below it is dropped here as well.
 *
 * No DOM: the same code runs in the page and in the service's tests (Node's fetch).
 */

export interface StreamEvent {
  /** The event's sequence number (`id:`). */
  readonly id: number;
  /** `event:`: started, phase, step, check, log, diagnostic, summary, … */
  readonly type: string;
  readonly data: unknown;
}

export interface FollowOptions {
  /** Sent as `Authorization: Bearer <token>`. */
  readonly token: string;
  /** Resume after this event id (default 0: from the start). */
  readonly lastEventId?: number;
  readonly onEvent: (event: StreamEvent) => void;
  /** The stream's `end` event: the job, finished. */
  readonly onEnd?: (job: unknown) => void;
  /** Each connection made after a drop (1, 2, …), with the id it resumes after. */
  readonly onReconnect?: (attempt: number, lastEventId: number) => void;
  readonly signal?: AbortSignal;
  /** Wait before reconnecting; default 1000 ms, or what the server's `retry:` says. */
  readonly retryMs?: number;
  readonly fetch?: typeof fetch;
}

/** A refusal by the service (401, 404, …): not retried. */
export class StreamRefusedError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = "StreamRefusedError";
  }
}

/** Parses SSE text incrementally: feed chunks, get complete events (spec: blank line ends an event). */
export class SseParser {
  private buffer = "";
  private data: string[] = [];
  private type = "";
  private id: string | undefined;
  retry: number | undefined;

  feed(chunk: string): { id: string | undefined; type: string; data: string }[] {
    this.buffer += chunk;
    const out: { id: string | undefined; type: string; data: string }[] = [];
    let nl: number;
    while ((nl = this.buffer.search(/\r\n|\r|\n/)) >= 0) {
      const line = this.buffer.slice(0, nl);
      const width = this.buffer.startsWith("\r\n", nl) ? 2 : 1;
      // A lone \r at the end of a chunk may be the first half of \r\n: wait for more.
      if (width === 1 && this.buffer[nl] === "\r" && nl === this.buffer.length - 1) break;
      this.buffer = this.buffer.slice(nl + width);
      if (line === "") {
        if (this.data.length > 0 || this.type !== "") out.push({ id: this.id, type: this.type || "message", data: this.data.join("\n") });
        this.data = [];
        this.type = "";
        this.id = undefined;
        continue;
      }
      if (line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? "" : line.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "data") this.data.push(value);
      else if (field === "event") this.type = value;
      else if (field === "id") this.id = value;
      else if (field === "retry" && /^\d+$/.test(value)) this.retry = Number(value);
    }
    return out;
  }
}

function parseData(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

function wait(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    }
    signal?.addEventListener("abort", done, { once: true });
  });
}

async function refusal(res: Response): Promise<StreamRefusedError> {
  let message = `${res.status} ${res.statusText}`;
  try {
    const body = (await res.json()) as { error?: { message?: string } };
    if (body.error?.message) message = body.error.message;
  } catch {
    // not the error shape: keep the status line
  }
  return new StreamRefusedError(res.status, message);
}

/**
 * Follows `url` (GET /v1/jobs/{id}/events) until its `end` event or `signal` aborts. Resolves then;
 * rejects with `StreamRefusedError` when the service refuses the stream (a 4xx other than 429).
 */
export async function followEvents(url: string, options: FollowOptions): Promise<void> {
  const doFetch = options.fetch ?? fetch;
  let lastId = options.lastEventId ?? 0;
  let retryMs = options.retryMs ?? 1000;
  let attempt = 0;
  while (!options.signal?.aborted) {
    if (attempt > 0) options.onReconnect?.(attempt, lastId);
    attempt++;
    let res: Response;
    try {
      const headers: Record<string, string> = { Authorization: `Bearer ${options.token}`, Accept: "text/event-stream" };
      if (lastId > 0) headers["Last-Event-ID"] = String(lastId);
      res = await doFetch(url, { headers, signal: options.signal });
    } catch {
      if (options.signal?.aborted) return;
      await wait(retryMs, options.signal);
      continue;
    }
    if (!res.ok) {
      if (res.status >= 400 && res.status < 500 && res.status !== 429) throw await refusal(res);
      await res.body?.cancel().catch(() => undefined);
      await wait(retryMs, options.signal);
      continue;
    }
    const parser = new SseParser();
    const decoder = new TextDecoder();
    const reader = res.body!.getReader();
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        for (const e of parser.feed(decoder.decode(value, { stream: true }))) {
          if (e.type === "end") {
            options.onEnd?.(parseData(e.data));
            await reader.cancel().catch(() => undefined);
            return;
          }
          const id = e.id === undefined ? NaN : Number(e.id);
          if (!Number.isInteger(id) || id <= lastId) continue; // a duplicate, or not a job event
          lastId = id;
          options.onEvent({ id, type: e.type, data: parseData(e.data) });
        }
        if (parser.retry !== undefined) retryMs = parser.retry;
      }
    } catch {
      if (options.signal?.aborted) return;
    }
    // The connection ended without `end`: resume after the last event handed on.
    await wait(retryMs, options.signal);
  }
}
