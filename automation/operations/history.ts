/** history: the stack's deployments, newest first, from the store the CLI and the service share. */
import type { Job, Store } from "../store";

const DEPLOYING_OPERATIONS = ["up", "rollback", "destroy"] as const;

export interface HistoryEntry {
  readonly id: string;
  readonly operation: string;
  readonly version?: string;
  readonly imageDigest?: string;
  readonly requestedBy: string;
  readonly createdAt: string;
  readonly finishedAt?: string;
  readonly status: string;
  readonly engine: string;
  readonly changes?: Job["changes"];
  readonly rollbackOf?: string;
  readonly rollbackTo?: string;
  readonly reason?: string;
  readonly error?: Job["error"];
}

export async function history(store: Store, stack: string, options: { limit?: number } = {}): Promise<HistoryEntry[]> {
  return (await store.listJobs({ stack, operation: [...DEPLOYING_OPERATIONS], limit: options.limit ?? 50 }))
    .filter((j) => j.status !== "queued" && j.status !== "awaiting_approval")
    .map((j) => ({
      id: j.id,
      operation: j.operation,
      version: j.version,
      imageDigest: j.imageDigest,
      requestedBy: j.requestedBy,
      createdAt: j.createdAt,
      finishedAt: j.finishedAt,
      status: j.status,
      engine: j.engine,
      changes: j.changes,
      rollbackOf: j.rollbackOf,
      rollbackTo: j.rollbackTo,
      reason: j.reason,
      error: j.error,
    }));
}
