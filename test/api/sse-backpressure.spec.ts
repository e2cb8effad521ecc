/** EventStreams under a client that does not read: dropped once too much piles up unread, not buffered without bound. */
import { expect } from "chai";
import type { Request, Response } from "express";
import { EventStreams, MAX_BUFFERED_BYTES } from "../../api/sse";
import type { Job, Store } from "../../automation/store";

describe("api: SSE backpressure", () => {
  function setup() {
    const job = { id: "job_00000000000000000000000001", stack: "s1", status: "running", lastEventSeq: 0 } as unknown as Job;
    let live: ((seq: number, event: any) => void) | undefined;
    const store = { getJob: async () => job, listEvents: async () => [] } as unknown as Store;
    const queue = { subscribe: (_id: string, l: typeof live) => ((live = l), () => (live = undefined)), on: () => undefined, off: () => undefined };
    const res = {
      writableLength: 0,
      written: [] as string[],
      ended: false,
      writeHead: () => res,
      flushHeaders: () => undefined,
      write: (chunk: string) => (res.written.push(chunk), true),
      end: () => ((res.ended = true), res),
      on: () => res,
    };
    const req = { socket: { setNoDelay: () => undefined, setTimeout: () => undefined } };
    const streams = new EventStreams({ store, queue: queue as never, heartbeatMs: 60_000 });
    streams.stream(job, 0, req as unknown as Request, res as unknown as Response, "p");
    return { streams, res, send: (seq: number) => live?.(seq, { type: "log", level: "info", message: `line ${seq}` }) };
  }

  /** The stream writes in order, one step after the other: lets the steps queued so far run. */
  const settled = () => new Promise((resolve) => setImmediate(resolve));

  it("keeps a client that reads, and drops one with more than the limit unread (it resumes with Last-Event-ID)", async () => {
    const { streams, res, send } = setup();
    send(1);
    await settled();
    expect(res.written.filter((w) => w.startsWith("id: 1"))).to.have.length(1);
    expect(res.ended).to.equal(false);
    res.writableLength = MAX_BUFFERED_BYTES + 1; // the client stopped reading
    send(2);
    await settled();
    expect(res.ended).to.equal(true);
    expect(streams.size).to.equal(0);
    send(3);
    await settled();
    expect(res.written.filter((w) => w.startsWith("id: 3"))).to.deep.equal([]);
  });
});
