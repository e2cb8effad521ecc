/**
 * Outcomes the database would not take. When a job's final write fails after every retry (the
 * database locked by another process for longer than the retries last, a full disk), the outcome is
 * kept in a file beside the database, `<data dir>/outcomes/<job id>.json` (0600), instead of being
 * lost. Before anything marks a `running` job `interrupted` (the next start, the service's sweep of
 * orphaned jobs), the kept outcomes are applied: a deployment that was applied is recorded as
 * succeeded, stays in the rollback history, and does not block its stack.
 */
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "fs";
import * as path from "path";
import { keptOutcomeSettled } from "./rows";
import type { Job, JobPatch } from "./types";

const JOB_FILE = /^(job_[0-9A-Za-z]{26})\.json$/;

export class OutcomeJournal {
  constructor(
    /** `<data dir>/outcomes`. */
    readonly dir: string,
  ) {}

  /** Keeps the job's outcome on disk; returns the file. Throws when even that fails. */
  keep(jobId: string, patch: JobPatch): string {
    if (!JOB_FILE.test(`${jobId}.json`)) throw new Error(`not a job id: ${jobId}`);
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    const file = path.join(this.dir, `${jobId}.json`);
    const partial = `${file}.${process.pid}.tmp`;
    writeFileSync(partial, JSON.stringify({ jobId, patch, keptAt: new Date().toISOString() }), { mode: 0o600 });
    renameSync(partial, file);
    return file;
  }

  /** The kept outcomes, oldest job first. */
  kept(): { jobId: string; patch: JobPatch; file: string }[] {
    let names: string[];
    try {
      names = readdirSync(this.dir);
    } catch {
      return [];
    }
    const out: { jobId: string; patch: JobPatch; file: string }[] = [];
    for (const name of names.sort()) {
      const m = JOB_FILE.exec(name);
      if (!m) continue;
      const file = path.join(this.dir, name);
      try {
        const parsed = JSON.parse(readFileSync(file, "utf8")) as { jobId?: unknown; patch?: unknown };
        if (parsed.jobId === m[1] && typeof parsed.patch === "object" && parsed.patch !== null) out.push({ jobId: m[1], patch: parsed.patch as JobPatch, file });
      } catch {
        // unreadable: left for a person to look at (it names the job)
      }
    }
    return out;
  }

  /**
   * Writes each kept outcome to its job, if the job is still `running`, and removes its file; a job
   * that ended otherwise meanwhile (or is gone) keeps that ending, and the file goes too. Returns the
   * jobs it updated. A write that fails again leaves the file for the next try.
   */
  applyTo(update: (jobId: string, patch: JobPatch) => Job): Job[] {
    const applied: Job[] = [];
    for (const { jobId, patch, file } of this.kept()) {
      try {
        applied.push(update(jobId, patch));
      } catch (err) {
        if (!keptOutcomeSettled(err)) continue;
      }
      rmSync(file, { force: true });
    }
    return applied;
  }
}
