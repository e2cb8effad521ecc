/** Minimal HTTP client for the orchestrator (loopback only): requests with a timeout, readiness polling. */
import { Agent, request } from "http";

const agent = new Agent({ keepAlive: true, maxSockets: 16 });

export interface HttpResponse {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly text: string;
}

export function httpRequest(
  url: string,
  options: { method?: string; headers?: Record<string, string>; body?: unknown; timeoutMs?: number; fresh?: boolean } = {},
): Promise<HttpResponse> {
  const body = options.body === undefined ? undefined : JSON.stringify(options.body);
  const headers: Record<string, string> = { ...(options.headers ?? {}) };
  if (body !== undefined) {
    headers["content-type"] = "application/json";
    headers["content-length"] = String(Buffer.byteLength(body));
  }
  return new Promise((resolve, reject) => {
    const req = request(url, { method: options.method ?? "GET", headers, agent: options.fresh ? false : agent }, (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => (text += c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text }));
      res.on("error", reject);
    });
    req.setTimeout(options.timeoutMs ?? 10_000, () => req.destroy(new Error(`${options.method ?? "GET"} ${url}: no answer within ${options.timeoutMs ?? 10_000} ms`)));
    req.on("error", reject);
    req.end(body);
  });
}

export async function httpJson<T = any>(url: string, options: Parameters<typeof httpRequest>[1] & { expect?: number | number[] } = {}): Promise<T> {
  const res = await httpRequest(url, options);
  const expected = options.expect === undefined ? [200] : Array.isArray(options.expect) ? options.expect : [options.expect];
  if (!expected.includes(res.status)) throw new Error(`${options.method ?? "GET"} ${new URL(url).pathname}: ${res.status} ${res.text.slice(0, 200)}`);
  return JSON.parse(res.text) as T;
}

/**
 * Polls `url` every `intervalMs` (each probe on a fresh connection) until it answers 200; resolves with
 * the performance.now() of that answer. Rejects after `timeoutMs` or when `alive()` turns false.
 */
export async function pollUntil200(url: string, options: { intervalMs: number; timeoutMs: number; alive?: () => boolean }): Promise<number> {
  const deadline = performance.now() + options.timeoutMs;
  let last = "no answer";
  for (;;) {
    const probeStart = performance.now();
    try {
      const res = await httpRequest(url, { fresh: true, timeoutMs: 1_000 });
      if (res.status === 200) return performance.now();
      last = `${res.status} ${res.text.slice(0, 200)}`;
    } catch (err) {
      last = (err as Error).message;
    }
    if (options.alive && !options.alive()) throw new Error(`the process exited before ${new URL(url).pathname} answered 200 (last: ${last})`);
    if (performance.now() > deadline) throw new Error(`${new URL(url).pathname} not 200 within ${options.timeoutMs} ms (last: ${last})`);
    const wait = options.intervalMs - (performance.now() - probeStart);
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
  }
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
