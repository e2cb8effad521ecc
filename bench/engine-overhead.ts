/**
 * engine overhead: an offline first deployment of `local` (a copy per run, so each creates
 * everything) through the service as `npm start` runs it, from the POST to the `end` event on the
 * job's stream; against the same up called directly on the engine the service builds
 * (`createDeps(...).engineFor(env).up`: OfflineEngine with the cached evaluator) in a warm process
 * of its own, over a new data directory each run.
 *
 * The program's evaluation (a child process, about 1.5 s, jittering by ±100 ms on a busy machine)
 * would drown a difference of tens of milliseconds, and it is the engine's time on both sides. So
 * each side previews first, with the same version (the service through `POST .../previews`, the
 * direct side with `engine.preview`), which evaluates the program and leaves the evaluation in the
 * cache the up then uses, exactly as the preview inside every deployment does. Those cold previews are
 * reported too (service vs direct). The note also gives the engine calls a deployment makes (preview,
 * image push, up) called directly in a row, to tell the procedure's engine time from the service's
 * own. A warm-up of each, then 3 of each, alternated; medians.
 */
import * as path from "path";
import { compiledChild } from "./lib/compile";
import type { Benchmark } from "./lib/bench";
import { ServiceProcess, withLog, writeEnvDir, writeTokens } from "./lib/fixtures";
import { httpJson } from "./lib/http";
import { IpcChild } from "./lib/proc";
import { median } from "./lib/stats";

const RUNS = 3;
const VERSION = "1.0.0";

export const engineOverhead: Benchmark = {
  name: "engine",
  aliases: ["engine-overhead"],
  title: "an offline deployment of local through the service vs OfflineEngine.up directly",
  rows: {
    added:
      "what the service adds to the engine's own up for an offline first deployment of local: POST to the `end` event minus OfflineEngine.up called directly, both after a preview of the same version (the program's evaluation cached on both sides); median − median",
    preview: "a cold preview of local (the program evaluated in a new child process) through the service, POST to `end`, against engine.preview directly (median of 3)",
  },
  timeoutMs: 90_000,
  async run(ctx) {
    const dir = ctx.tempDir("engine");
    const token = writeTokens(dir);
    const stacks = ["ov-warm", ...Array.from({ length: RUNS }, (_, i) => `ov-${i + 1}`)];
    const envDir = writeEnvDir(dir, stacks);
    const service = await ServiceProcess.start({ dir, token, envDir, maxConcurrent: 2 });
    ctx.defer(() => service.stop());
    const direct = new IpcChild(compiledChild("engine-direct"), { name: "engine-direct" });
    ctx.defer(() => direct.stop());
    await direct.started();

    const serviceJob = async (stack: string, kind: "previews" | "deployments") => {
      ctx.checkAborted();
      const t0 = performance.now();
      const job = await withLog(
        service.spawned.logFile,
        httpJson<{ id: string }>(`${service.url}/v1/stacks/${stack}/${kind}`, { method: "POST", headers: service.headers, body: { version: VERSION }, expect: 202 }),
      );
      const at = await service.waitSucceeded(job.id, 60_000);
      return at - t0;
    };
    const viaService = async (stack: string) => ({ preview: await serviceJob(stack, "previews"), up: await serviceJob(stack, "deployments") });
    const viaEngine = async (stack: string, i: number) => {
      ctx.checkAborted();
      const args = { envDir, stack, dataDir: path.join(dir, `direct-${i}`) };
      const preview = (await direct.call<{ ms: number }>("preview", args, 60_000)).ms;
      const up = await direct.call<{ ms: number; changes: { create: number } }>("up", args, 60_000);
      if (up.changes.create === 0) throw new Error(`the direct up of ${stack} created nothing: not a first deployment`);
      // The deployment's own engine calls (preview, image push, up) on another new data dir, cache warm.
      const seq = await direct.call<{ ms: number; previewMs: number; imageMs: number; upMs: number }>("sequence", { ...args, dataDir: path.join(dir, `direct-${i}-seq`) }, 60_000);
      return { preview, up: up.ms, seq };
    };
    const svc: { preview: number; up: number }[] = [];
    const eng: Awaited<ReturnType<typeof viaEngine>>[] = [];
    const w1 = await viaService(stacks[0]);
    const w2 = await viaEngine(stacks[0], 0);
    ctx.log(`warm-up: service preview ${Math.round(w1.preview)} ms + up ${Math.round(w1.up)} ms; direct preview ${Math.round(w2.preview)} ms + up ${Math.round(w2.up)} ms`);
    for (let i = 1; i <= RUNS; i++) {
      // Alternate which goes first.
      if (i % 2 === 1) {
        svc.push(await viaService(stacks[i]));
        eng.push(await viaEngine(stacks[i], i));
      } else {
        eng.push(await viaEngine(stacks[i], i));
        svc.push(await viaService(stacks[i]));
      }
      const s = svc[i - 1];
      const e = eng[i - 1];
      ctx.log(`run ${i}: service preview ${Math.round(s.preview)} ms, up ${Math.round(s.up)} ms; direct preview ${Math.round(e.preview)} ms, up ${Math.round(e.up)} ms, deployment's engine calls ${Math.round(e.seq.ms)} ms`);
    }
    const directUp = median(eng.map((e) => e.up));
    ctx.row("added", {
      what: this.rows.added,
      unit: "ms",
      figure: median(svc.map((s) => s.up)) - directUp,
      budget: { op: "<=", value: 100 },
      baseline: directUp,
      baselineWhat: "OfflineEngine.up called directly after a preview (the engine's own time); ratio = added / direct",
      runs: svc.map((s, i) => s.up - eng[i].up),
      note:
        `through the service ${svc.map((s) => Math.round(s.up)).join(", ")} ms; direct ${eng.map((e) => Math.round(e.up)).join(", ")} ms. ` +
        `The deployment's own engine calls made directly (preview ${Math.round(median(eng.map((e) => e.seq.previewMs)))} + image push ${Math.round(median(eng.map((e) => e.seq.imageMs)))} + up ${Math.round(median(eng.map((e) => e.seq.upMs)))} ms) take ${Math.round(median(eng.map((e) => e.seq.ms)))} ms: ` +
        `the service adds ${Math.round(median(svc.map((s) => s.up)) - median(eng.map((e) => e.seq.ms)))} ms to those`,
    });
    ctx.row("preview", {
      what: this.rows.preview,
      unit: "ms",
      figure: median(svc.map((s) => s.preview)),
      baseline: median(eng.map((e) => e.preview)),
      baselineWhat: "engine.preview called directly, cold",
      runs: svc.map((s) => s.preview),
      note: `direct ${eng.map((e) => Math.round(e.preview)).join(", ")} ms`,
    });
  },
};
