/**
 * Waiting, for the checks that poll AWS or an HTTP endpoint: an abortable timer and the helpers that
 * turn an abort into the deployer's `CanceledError`. Polling always waits on a timer with the
 * interval the caller gave (tests give a few milliseconds), never a busy loop.
 */
import { CanceledError } from "../errors";

/** The error a check throws when its signal aborts: `what` names what was being waited for. */
export function canceled(what: string, signal?: AbortSignal): CanceledError {
  return new CanceledError(`${what} canceled`, { cause: signal?.reason });
}

export function throwIfAborted(what: string, signal?: AbortSignal): void {
  if (signal?.aborted) throw canceled(what, signal);
}

/** Resolves after `ms`, or rejects with `CanceledError` as soon as `signal` aborts. */
export function delay(ms: number, what: string, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(canceled(what, signal));
    const onAbort = () => {
      clearTimeout(timer);
      reject(canceled(what, signal));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, Math.max(0, ms));
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/** "350ms", "12s", "2m", "1m30s": for check details. */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)}ms`;
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  const rest = s % 60;
  return rest === 0 ? `${m}m` : `${m}m${rest}s`;
}

/** "1 attempt", "3 attempts". */
export function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}
