/**
 * Holds a stack's lease for the length of a function: acquired first (a ConflictError names the
 * holder), renewed in the background, released at the end. Losing the lease (it expired and someone
 * else took it) aborts the signal handed to the function, so the engine stops instead of racing.
 *
 * A renewal that fails for another reason (the database busy under another process, a full disk) is
 * not a loss: the lease is still ours until it expires, so it is retried at the next interval, and the
 * signal aborts only if the lease's expiry passes without a renewal landing.
 */
import { hostname, userInfo } from "os";
import { ConflictError } from "../errors";
import type { Lease, Store } from "../store";

export const DEFAULT_LEASE_TTL_MS = 60_000;

/** `cli:<user>@<host>:<pid>`: who holds a stack when the CLI runs. */
export function cliOwner(): string {
  return `cli:${osUser()}@${hostname()}:${process.pid}`;
}

/** The OS user: the CLI's actor. */
export function osUser(): string {
  try {
    return userInfo().username;
  } catch {
    return process.env.USER ?? process.env.USERNAME ?? "unknown";
  }
}

export async function withStackLease<T>(
  store: Store,
  stack: string,
  owner: string,
  fn: (signal: AbortSignal, lease: Lease) => Promise<T>,
  options: { ttlMs?: number; jobId?: string } = {},
): Promise<T> {
  const ttlMs = options.ttlMs ?? DEFAULT_LEASE_TTL_MS;
  let lease = store.acquireLease(stack, { owner, ttlMs, jobId: options.jobId });
  const lost = new AbortController();
  const renew = setInterval(() => {
    if (lost.signal.aborted) return;
    try {
      lease = store.renewLease(stack, owner, lease.token, ttlMs);
    } catch (err) {
      // Taken by someone else: lost now. Anything else: ours until it expires.
      if (err instanceof ConflictError) lost.abort(err);
      else if (Date.now() >= Date.parse(lease.expiresAt)) {
        lost.abort(new ConflictError(`lost the lease on ${stack}: it expired at ${lease.expiresAt} while renewals failed`, { cause: err }));
      }
    }
  }, Math.max(1_000, Math.floor(ttlMs / 3)));
  renew.unref?.();
  try {
    return await fn(lost.signal, lease);
  } finally {
    clearInterval(renew);
    store.releaseLease(stack, owner, lease.token);
  }
}
