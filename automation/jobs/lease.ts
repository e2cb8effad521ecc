/**
 * Holds a stack's lease for the length of a function: acquired first (a ConflictError names the
 * holder), renewed in the background, released at the end. Losing the lease (it expired and someone
 * else took it) aborts the signal handed to the function, so the engine stops instead of racing.
 *
 * A renewal that fails for another reason (the database busy under another process, a full disk) is
 * not a loss: the lease is still ours until it expires, so it is retried at the next interval, and the
 * signal aborts only if the lease's expiry passes without a renewal landing.
 */
import { readFileSync } from "fs";
import { hostname, userInfo } from "os";
import { ConflictError } from "../errors";
import type { Lease, Store } from "../store";

export const DEFAULT_LEASE_TTL_MS = 60_000;

/** `cli:<user>@<host>:<incarnation>`: who holds a stack when the CLI runs. */
export function cliOwner(): string {
  return `cli:${osUser()}@${hostname()}:${processIncarnation()}`;
}

/**
 * What a process is, not only its pid: `<pid>.<start time>` where the start time is the kernel's
 * (field 22 of /proc/<pid>/stat, clock ticks since boot, with the boot's id). A restart that gets the
 * same pid (the usual case in a container) has another start time, so its predecessor's lease owner
 * reads as gone at once. Without /proc (not Linux) it is the bare pid.
 */
export function processIncarnation(pid: number = process.pid): string {
  const start = procStat(pid)?.startTime;
  return start === undefined ? String(pid) : `${pid}.${start}`;
}

let bootId: string | undefined;

/** The first 8 characters of this boot's id: start times count from the boot. */
function currentBoot(): string {
  if (bootId === undefined) {
    try {
      bootId = readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim().replace(/-/g, "").slice(0, 8);
    } catch {
      bootId = "";
    }
  }
  return bootId;
}

/**
 * The fields of /proc/<pid>/stat from the state on (index 0 is field 3, the state; 1 the parent's
 * pid), or undefined when there is no such entry.
 */
export function procStatFields(pid: number | string): string[] | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return undefined;
  }
  // `pid (comm) state …`: comm may hold spaces and parentheses, so fields count from the last ")".
  return text.slice(text.lastIndexOf(")") + 2).split(" ");
}

/** A process's state letter and start time from /proc, or undefined when there is no such entry. */
export function procStat(pid: number): { state: string; startTime: string } | undefined {
  const fields = procStatFields(pid);
  if (fields === undefined) return undefined;
  const startTime = fields[19];
  if (fields[0] === undefined || startTime === undefined || !/^\d+$/.test(startTime)) return undefined;
  const boot = currentBoot();
  return { state: fields[0], startTime: boot ? `${startTime}-${boot}` : startTime };
}

/** Whether /proc describes processes here (Linux): without it only the pid can be checked. */
function hasProc(): boolean {
  return procStat(process.pid) !== undefined;
}

/**
 * Whether a lease owner id names a process on this host that no longer exists. Understands the
 * CLI's `cli:<user>@<host>:<incarnation>` and the service's `service:<host>:<incarnation>[:…]`, where
 * the incarnation is `<pid>.<start>` (or a bare pid, as older owners were written); anything else, or
 * another host, is "maybe alive". Dead means: no such process, a zombie (killed, not yet reaped by
 * its parent: `kill(pid, 0)` still succeeds), or another process with the same pid (another start
 * time). A bare pid equal to this process's reads as alive: with no start time to compare, the safe side.
 */
export function holderIsDead(owner: string, host: string = hostname()): boolean {
  const m = /^cli:[^@]*@(.+):(\d+)(?:\.([0-9a-f-]+))?$/.exec(owner) ?? /^service:([^:]+):(\d+)(?:\.([0-9a-f-]+))?(?::.*)?$/.exec(owner);
  // The service writes its host with ":" replaced by "-" (the field separator).
  if (!m || (m[1] !== host && m[1] !== host.replace(/:/g, "-"))) return false;
  const pid = Number(m[2]);
  const start = m[3];
  if (!Number.isSafeInteger(pid) || pid <= 0) return false;
  if (hasProc()) {
    const stat = procStat(pid);
    if (stat === undefined) return true;
    if (stat.state === "Z" || stat.state === "X") return true;
    // A bare pid that names a live process may be the holder (or, when it is ours, this process).
    return start !== undefined && stat.startTime !== start;
  }
  if (pid === process.pid) return false;
  try {
    process.kill(pid, 0);
    return false;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "ESRCH";
  }
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
  let lease = await store.acquireLease(stack, { owner, ttlMs, jobId: options.jobId });
  const lost = new AbortController();
  const expired = () => Date.now() >= Date.parse(lease.expiresAt);
  // One renewal at a time: a tick that finds the previous one still unanswered only checks the expiry.
  let renewing: Promise<void> | undefined;
  const renewOnce = async () => {
    try {
      lease = await store.renewLease(stack, owner, lease.token, ttlMs);
    } catch (err) {
      // Taken by someone else: lost now. Anything else: ours until it expires.
      if (err instanceof ConflictError) lost.abort(err);
      else if (expired()) {
        lost.abort(new ConflictError(`lost the lease on ${stack}: it expired at ${lease.expiresAt} while renewals failed`, { cause: err }));
      }
    }
  };
  const renew = setInterval(() => {
    if (lost.signal.aborted) return;
    if (renewing !== undefined) {
      if (expired()) lost.abort(new ConflictError(`lost the lease on ${stack}: it expired at ${lease.expiresAt} while a renewal went unanswered`));
      return;
    }
    renewing = renewOnce().finally(() => {
      renewing = undefined;
    });
  }, Math.max(1_000, Math.floor(ttlMs / 3)));
  renew.unref?.();
  try {
    return await fn(lost.signal, lease);
  } finally {
    clearInterval(renew);
    await renewing; // never rejects; released after it, so a late renewal cannot follow the release
    await store.releaseLease(stack, owner, lease.token);
  }
}
