/**
 * `asyncStore`: the `Store` over a `SyncStore` (SQLite's). Each call runs the synchronous method at
 * once, inside one turn of the event loop, so a method's transaction stays as atomic as it was; what
 * it returns or throws becomes the promise's value or rejection.
 */
import type { Store, SyncStore } from "./types";

/** Store's optional methods: a synchronous store has none of them. */
type Optional = "watch";

const METHODS: readonly Exclude<keyof Store, Optional>[] = [
  "createJob",
  "getJob",
  "jobStack",
  "jobStamp",
  "updateJob",
  "listJobs",
  "deployments",
  "lastGoodDeployment",
  "findByIdempotencyKey",
  "queuedJobs",
  "queuedStacks",
  "dispatchableStacks",
  "countQueued",
  "pruneEvents",
  "queuePosition",
  "markRunningAsInterrupted",
  "keepOutcome",
  "applyKeptOutcomes",
  "recordDecision",
  "listDecisions",
  "appendEvent",
  "appendEvents",
  "listEvents",
  "acquireLease",
  "renewLease",
  "releaseLease",
  "getLease",
  "forceReleaseLease",
  "getStackState",
  "setStackState",
  "appendAudit",
  "listAudit",
  "pruneAudit",
  "ping",
  "close",
];

// Every method of Store is listed (a missing one fails to compile here).
type Missing = Exclude<keyof Store, (typeof METHODS)[number] | Optional>;
const everyMethodListed: [Missing] extends [never] ? true : Missing = true;
void everyMethodListed;

const adapted = new WeakMap<Store, SyncStore>();

/** The synchronous store an `asyncStore` adapts (tests read its SQLite connection's settings). */
export function syncStoreOf(store: Store): SyncStore | undefined {
  return adapted.get(store);
}

export function asyncStore(sync: SyncStore): Store {
  const store: Record<string, unknown> = {};
  for (const name of METHODS) {
    const method = sync[name] as (...args: unknown[]) => unknown;
    store[name] = (...args: unknown[]) => {
      try {
        return Promise.resolve(method.apply(sync, args));
      } catch (err) {
        return Promise.reject(err);
      }
    };
  }
  adapted.set(store as unknown as Store, sync);
  return store as unknown as Store;
}
