/**
 * EventStreams following a store that announces changes (Store.watch), with a fake store whose
 * announcements the test makes: a job running in another replica streams live from the store, in
 * order and without repeats; a terminal status ends it; one watch serves every stream and stops with
 * closeAll; a job running here keeps the queue's path.
 */
import { expect } from "chai";
import type { Request, Response } from "express";
import { EventStreams } from "../../api/sse";
import type { Job, JobEvent, Store, StoreChange } from "../../automation/store";

const ID = "job_00000000000000000000000001";

function fakeStore() {
  const state = {
    job: { id: ID, stack: "s1", status: "running", lastEventSeq: 0 } as unknown as Job,
    events: [] as JobEvent[],
    listReads: 0,
    watches: 0,
    unsubscribed: 0,
    listener: undefined as ((c: StoreChange) => void) | undefined,
    failWatch: false,
  };
  const store = {
    getJob: async () => state.job,
    listEvents: async (_id: string, q: { afterSeq?: number } = {}) => {
      state.listReads++;
      return state.events.filter((e) => e.seq > (q.afterSeq ?? 0));
    },
    watch: async (listener: (c: StoreChange) => void) => {
      state.watches++;
      if (state.failWatch) throw new Error("database down");
      state.listener = listener;
      return async () => {
        state.unsubscribed++;
        state.listener = undefined;
      };
    },
  } as unknown as Store;
  const append = (n: number) => {
    for (let i = 0; i < n; i++) {
      const seq = state.events.length + 1;
      state.events.push({ seq, time: "2025-01-01T00:00:00.000Z", type: "log", data: { seq } });
    }
    return state.events.length;
  };
  return { store, state, append, announce: (c: StoreChange) => state.listener?.(c) };
}

function fakeResponse() {
  const res = {
    writableLength: 0,
    written: [] as string[],
    ended: false,
    writeHead: () => res,
    flushHeaders: () => undefined,
    write: (chunk: string) => (res.written.push(chunk), true),
    end: () => ((res.ended = true), res),
    on: () => res,
    ids: () => res.written.filter((w) => w.startsWith("id: ")).map((w) => Number(/^id: (\d+)/.exec(w)?.[1])),
  };
  return res;
}

const req = { socket: { setNoDelay: () => undefined, setTimeout: () => undefined } } as unknown as Request;
/** Lets the steps queued so far run (each stream writes through one chain of promises). */
const settled = async () => {
  for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
};

function setup(running: string[] = []) {
  const f = fakeStore();
  const queue = { subscribe: () => () => undefined, on: () => undefined, off: () => undefined, runningJobIds: () => running };
  const errors: unknown[] = [];
  const streams = new EventStreams({ store: f.store, queue: queue as never, heartbeatMs: 60_000, onError: (err) => errors.push(err) });
  const open = (afterSeq = 0) => {
    const res = fakeResponse();
    streams.stream(f.state.job, afterSeq, req, res as unknown as Response, "p");
    return res;
  };
  return { ...f, streams, open, errors };
}

describe("api: SSE following the store (another replica's job)", () => {
  it("sends announced events in order, once each, and ends on a terminal status after the rest", async () => {
    const t = setup();
    t.append(2);
    const res = t.open();
    await settled();
    expect(res.ids()).to.deep.equal([1, 2]);

    t.append(3);
    t.announce({ kind: "event", jobId: ID, seq: 5 });
    t.announce({ kind: "event", jobId: ID, seq: 3 }); // late, already sent by the read for 5
    await settled();
    expect(res.ids()).to.deep.equal([1, 2, 3, 4, 5]);
    const reads = t.state.listReads;
    t.announce({ kind: "event", jobId: ID, seq: 4 });
    await settled();
    expect(t.state.listReads, "an event already sent is not read again").to.equal(reads);

    // Announcements of other jobs, and non-terminal statuses, change nothing.
    t.announce({ kind: "event", jobId: "job_other", seq: 9 });
    t.announce({ kind: "job", jobId: ID, stack: "s1", status: "running" });
    t.announce({ kind: "lease", stack: "s1" });
    await settled();
    expect(res.ended).to.equal(false);

    t.append(1);
    t.state.job = { ...t.state.job, status: "succeeded", lastEventSeq: 6 } as Job;
    t.announce({ kind: "job", jobId: ID, stack: "s1", status: "succeeded" });
    await settled();
    expect(res.ids()).to.deep.equal([1, 2, 3, 4, 5, 6]);
    expect(res.written[res.written.length - 1]).to.match(/^event: end\n/);
    expect(res.ended).to.equal(true);
    expect(t.streams.size).to.equal(0);
  });

  it("reads an announced event once for all the job's streams, not once per stream", async () => {
    const t = setup();
    t.append(1);
    const streams = Array.from({ length: 5 }, () => t.open());
    await settled();
    for (const res of streams) expect(res.ids()).to.deep.equal([1]);
    const reads = t.state.listReads;
    for (let seq = 2; seq <= 4; seq++) {
      t.append(1);
      t.announce({ kind: "event", jobId: ID, seq });
      await settled();
    }
    expect(t.state.listReads - reads, "one read per announcement, whatever the number of streams").to.equal(3);
    for (const res of streams) expect(res.ids()).to.deep.equal([1, 2, 3, 4]);
    // Announcements while a read runs: one more read after it, not one each.
    t.append(3);
    for (let seq = 5; seq <= 7; seq++) t.announce({ kind: "event", jobId: ID, seq });
    await settled();
    expect(t.state.listReads - reads).to.be.at.most(5);
    for (const res of streams) expect(res.ids()).to.deep.equal([1, 2, 3, 4, 5, 6, 7]);
  });

  it("resumes after Last-Event-ID", async () => {
    const t = setup();
    t.append(4);
    const res = t.open(3);
    await settled();
    t.append(1);
    t.announce({ kind: "event", jobId: ID, seq: 5 });
    await settled();
    expect(res.ids()).to.deep.equal([4, 5]);
  });

  it("takes one watch for all its streams, started by the first, stopped by closeAll", async () => {
    const t = setup();
    expect(t.state.watches).to.equal(0);
    const a = t.open();
    const b = t.open();
    await settled();
    expect(t.state.watches).to.equal(1);
    t.append(1);
    t.announce({ kind: "event", jobId: ID, seq: 1 });
    await settled();
    expect([a.ids(), b.ids()]).to.deep.equal([[1], [1]]);
    t.streams.closeAll();
    await settled();
    expect(t.state.unsubscribed).to.equal(1);
    expect([a.ended, b.ended]).to.deep.equal([true, true]);
    // A stream opened after that watches again.
    t.open();
    await settled();
    expect(t.state.watches).to.equal(2);
  });

  it("leaves a job running in this process to the queue's live events (no read per announcement)", async () => {
    const t = setup([ID]);
    const res = t.open();
    await settled();
    const reads = t.state.listReads;
    t.append(1);
    t.announce({ kind: "event", jobId: ID, seq: 1 });
    await settled();
    expect(t.state.listReads).to.equal(reads);
    expect(res.ids()).to.deep.equal([]);
  });

  it("streams without following when the watch cannot start, and reports it", async () => {
    const t = setup();
    t.state.failWatch = true;
    t.append(1);
    const res = t.open();
    await settled();
    expect(res.ids()).to.deep.equal([1]);
    expect(t.errors.map((e) => (e as Error).message)).to.deep.equal(["database down"]);
    // The next stream tries again.
    t.state.failWatch = false;
    t.open();
    await settled();
    expect(t.state.watches).to.equal(2);
  });
});
