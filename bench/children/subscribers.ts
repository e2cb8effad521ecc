/**
 * SSE subscribers, in their own process: `connect` opens N streams on a job's events endpoint,
 * `collect` waits until every stream got its `end` event and answers with the delivery latencies of the
 * bench engine's diagnostics (`bench <index> <emit time>`), measured against this machine's clock.
 *
 * Per event, "to all" latency is when the last subscriber got it minus when it was emitted; the
 * percentiles are over events. The per-delivery percentiles (every subscriber × event) are reported
 * too. Parsing is kept to a minimum so this process does not become what is measured.
 */
import { request, type ClientRequest } from "http";
import { EMIT_PREFIX, nowEpochMs } from "../lib/engine";
import { serve } from "../lib/ipc-child";
import { percentile } from "../lib/stats";

interface Round {
  readonly expected: number;
  readonly subs: { req: ClientRequest; ended: boolean; received: number; error?: string }[];
  /** Per event index: latest arrival minus emission (ms), and how many subscribers got it. */
  readonly lastLatency: Float64Array;
  readonly deliveries: Uint32Array;
  readonly all: number[];
  duplicates: number;
}

let round: Round | undefined;
const MARK = `"message":"${EMIT_PREFIX}`;

function onBlock(r: Round, sub: Round["subs"][number], block: string, at: number, seen: Uint8Array): void {
  if (block.startsWith("event: end") || block.includes("\nevent: end")) {
    sub.ended = true;
    return;
  }
  const i = block.indexOf(MARK);
  if (i < 0) return;
  const rest = block.slice(i + MARK.length, block.indexOf('"', i + MARK.length));
  const [index, emitted] = rest.split(" ").map(Number);
  if (!Number.isInteger(index) || index < 0 || index >= r.expected) return;
  if (seen[index]) {
    r.duplicates++;
    return;
  }
  seen[index] = 1;
  const latency = at - emitted;
  sub.received++;
  r.deliveries[index]++;
  if (latency > r.lastLatency[index]) r.lastLatency[index] = latency;
  r.all.push(latency);
}

serve({
  connect: (args: { url: string; count: number; expected: number; headers: Record<string, string>; timeoutMs: number }) => {
    if (round) for (const s of round.subs) s.req.destroy();
    const r: Round = { expected: args.expected, subs: [], lastLatency: new Float64Array(args.expected).fill(-Infinity), deliveries: new Uint32Array(args.expected), all: [], duplicates: 0 };
    round = r;
    let connected = 0;
    return new Promise<{ connected: number }>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${connected} of ${args.count} subscribers connected within ${args.timeoutMs} ms`)), args.timeoutMs);
      for (let n = 0; n < args.count; n++) {
        const seen = new Uint8Array(args.expected);
        const req = request(args.url, { headers: { ...args.headers, accept: "text/event-stream" }, agent: false });
        const sub: Round["subs"][number] = { req, ended: false, received: 0 };
        r.subs.push(sub);
        req.on("response", (res) => {
          if (res.statusCode !== 200) {
            sub.error = `status ${res.statusCode}`;
            res.resume();
            clearTimeout(timer);
            reject(new Error(`subscriber got ${res.statusCode}`));
            return;
          }
          connected++;
          if (connected === args.count) {
            clearTimeout(timer);
            resolve({ connected });
          }
          let buf = "";
          res.setEncoding("utf8");
          res.on("data", (chunk: string) => {
            const at = nowEpochMs();
            buf += chunk;
            let k: number;
            while ((k = buf.indexOf("\n\n")) >= 0) {
              onBlock(r, sub, buf.slice(0, k), at, seen);
              buf = buf.slice(k + 2);
            }
          });
          res.on("error", (err) => (sub.error = err.message));
        });
        req.on("error", (err) => {
          sub.error = err.message;
          clearTimeout(timer);
          reject(err);
        });
        req.end();
      }
    });
  },

  collect: async (args: { timeoutMs: number }) => {
    const r = round;
    if (!r) throw new Error("no subscribers");
    const deadline = Date.now() + args.timeoutMs;
    while (r.subs.some((s) => !s.ended && !s.error) && Date.now() < deadline) await new Promise((res) => setTimeout(res, 20));
    for (const s of r.subs) s.req.destroy();
    round = undefined;
    const ended = r.subs.filter((s) => s.ended).length;
    const expectedDeliveries = r.expected * r.subs.length;
    const toAll = Array.from(r.lastLatency).filter((l) => Number.isFinite(l));
    return {
      subscribers: r.subs.length,
      ended,
      errors: r.subs.filter((s) => s.error).map((s) => s.error).slice(0, 3),
      delivered: r.all.length,
      missing: expectedDeliveries - r.all.length,
      duplicates: r.duplicates,
      toAllP50: percentile(toAll, 50),
      toAllP99: percentile(toAll, 99),
      toAllMax: percentile(toAll, 100),
      eachP50: percentile(r.all, 50),
      eachP99: percentile(r.all, 99),
    };
  },
});
