/**
 * A write the database may refuse for a while: another process holds its write lock (SQLITE_BUSY
 * past the store's busy timeout). SQLite answers synchronously (under `asyncStore`), so each try holds
 * the event loop for at most that timeout (250 ms in the service); between tries this waits without
 * holding it, backing off from 50 ms to 2 s, about 15 s in all, before the last refusal is thrown. Any
 * other error is thrown at once. `write` may return its result or a promise of it (a `Store` call).
 */
import { isStoreBusy } from "../errors";

export const BUSY_RETRY_ATTEMPTS = 12;

/** The wait before the next try of a refused write: 50 ms after the first refusal, doubling to 2 s. */
export function nextBackoffMs(previousMs: number): number {
  return previousMs <= 0 ? 50 : Math.min(2_000, previousMs * 2);
}

export async function retryWhileBusy<T>(write: () => T | Promise<T>, attempts: number = BUSY_RETRY_ATTEMPTS): Promise<T> {
  let waitMs = 0;
  for (let attempt = 0; ; attempt++) {
    try {
      return await write();
    } catch (err) {
      if (!isStoreBusy(err) || attempt >= attempts - 1) throw err;
      waitMs = nextBackoffMs(waitMs);
      await new Promise((resolve) => setTimeout(resolve, waitMs));
    }
  }
}
