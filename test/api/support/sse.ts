/** A minimal Server-Sent Events client for tests: parses the stream as it arrives, and says when it ends. */
import { request, type IncomingMessage } from "http";

export interface SseEvent {
  readonly id?: string;
  readonly event: string;
  readonly data: any;
}

export interface SseStream {
  readonly response: IncomingMessage;
  /** Every event so far, in order. */
  readonly events: SseEvent[];
  /** Comment lines (`: keep-alive`) so far. */
  readonly comments: string[];
  /** Resolves with the first event (already received or still to come) that matches. */
  next(match: (e: SseEvent) => boolean): Promise<SseEvent>;
  /** Resolves with the next comment line. */
  nextComment(): Promise<string>;
  /** Resolves when the server ended the stream. */
  readonly ended: Promise<void>;
  close(): void;
}

export function openSse(url: string, headers: Record<string, string> = {}): Promise<SseStream> {
  return new Promise((resolve, reject) => {
    const req = request(url, { headers: { accept: "text/event-stream", ...headers } }, (response) => {
      const events: SseEvent[] = [];
      const comments: string[] = [];
      const waiters: { match: (e: SseEvent) => boolean; resolve: (e: SseEvent) => void }[] = [];
      const commentWaiters: ((c: string) => void)[] = [];
      let buffer = "";
      let endResolve!: () => void;
      const ended = new Promise<void>((r) => (endResolve = r));
      response.setEncoding("utf8");
      response.on("data", (chunk: string) => {
        buffer += chunk;
        let cut: number;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          const fields: Record<string, string> = {};
          for (const line of block.split("\n")) {
            if (line.startsWith(":")) {
              comments.push(line);
              commentWaiters.splice(0).forEach((w) => w(line));
              continue;
            }
            const i = line.indexOf(":");
            const name = i < 0 ? line : line.slice(0, i);
            const value = i < 0 ? "" : line.slice(i + 1).replace(/^ /, "");
            fields[name] = fields[name] === undefined ? value : `${fields[name]}\n${value}`;
          }
          if (fields.data === undefined) continue;
          const event: SseEvent = { id: fields.id, event: fields.event ?? "message", data: JSON.parse(fields.data) };
          events.push(event);
          for (let w = waiters.length - 1; w >= 0; w--) {
            if (waiters[w].match(event)) waiters.splice(w, 1)[0].resolve(event);
          }
        }
      });
      response.on("end", () => endResolve());
      response.on("close", () => endResolve());
      resolve({
        response,
        events,
        comments,
        ended,
        next: (match) => {
          const seen = events.find(match);
          return seen ? Promise.resolve(seen) : new Promise((r) => waiters.push({ match, resolve: r }));
        },
        nextComment: () => new Promise((r) => commentWaiters.push(r)),
        close: () => req.destroy(),
      });
    });
    req.on("error", reject);
    req.end();
  });
}
