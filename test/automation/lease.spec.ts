/**
 * The stack lease under a store that fails: a renewal refused because someone else holds the lease
 * is a loss at once; one that fails for another reason (SQLITE_BUSY, a full disk) is retried, and
 * counts as lost only once the lease's expiry has passed.
 */
import { expect } from "chai";
import { ConflictError } from "../../automation/errors";
import { withStackLease } from "../../automation/jobs/lease";
import type { Lease, Store } from "../../automation/store";

const TTL = 3_000;

/** A store with just the lease calls, whose renewals run `renew` (counted). */
function leaseStore(renew: (n: number) => void): { store: Store; renewals: () => number; renewed: (n: number) => Promise<void> } {
  let calls = 0;
  const waiters: { n: number; resolve: () => void }[] = [];
  const lease = (): Lease => ({ stack: "s1", owner: "o", token: 1, acquiredAt: new Date().toISOString(), expiresAt: new Date(Date.now() + TTL).toISOString() });
  const store = {
    acquireLease: () => lease(),
    renewLease: () => {
      calls++;
      for (const w of waiters.filter((w) => w.n <= calls)) w.resolve();
      renew(calls);
      return lease();
    },
    releaseLease: () => undefined,
  } as unknown as Store;
  return {
    store,
    renewals: () => calls,
    renewed: (n) => new Promise<void>((resolve) => (calls >= n ? resolve() : waiters.push({ n, resolve }))),
  };
}

const busy = () => Object.assign(new Error("database is locked"), { code: "SQLITE_BUSY" });

describe("stack lease renewal failures", function () {
  this.timeout(15_000);

  it("keeps the lease through a renewal that fails with SQLITE_BUSY, when the next one lands before the expiry", async () => {
    const s = leaseStore((n) => {
      if (n === 1) throw busy();
    });
    const aborted = await withStackLease(s.store, "s1", "o", async (signal) => {
      await s.renewed(2);
      return signal.aborted;
    }, { ttlMs: TTL });
    expect(aborted).to.equal(false);
  });

  it("counts the lease lost only once its expiry passed while every renewal failed", async () => {
    const s = leaseStore(() => {
      throw busy();
    });
    const started = Date.now();
    const reason = await withStackLease(s.store, "s1", "o", (signal) =>
      new Promise<unknown>((resolve) => signal.addEventListener("abort", () => resolve(signal.reason))),
    { ttlMs: TTL });
    expect(Date.now() - started).to.be.at.least(TTL);
    expect(reason).to.be.instanceOf(ConflictError);
    expect((reason as Error).message).to.match(/expired at .* while renewals failed/);
    expect(s.renewals()).to.be.at.least(3);
  });

  it("counts the lease lost at once when someone else holds it", async () => {
    const s = leaseStore(() => {
      throw new ConflictError("lease of s1 is held by another");
    });
    const started = Date.now();
    const reason = await withStackLease(s.store, "s1", "o", (signal) =>
      new Promise<unknown>((resolve) => signal.addEventListener("abort", () => resolve(signal.reason))),
    { ttlMs: TTL });
    expect(Date.now() - started).to.be.below(TTL);
    expect((reason as Error).message).to.equal("lease of s1 is held by another");
  });
});
