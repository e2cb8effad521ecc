/**
 * The offline engine called directly, built the way the service builds it (automation/deps.ts:
 * `new OfflineEngine({dataDir, evaluate: cachedEvaluator(evaluateInChild)})`), without the service,
 * the queue, the operation's gates or HTTP. One evaluation cache for the whole process, one engine per
 * data directory, so a preview warms what follows, as inside a deployment.
 *
 * Commands ({envDir, stack, dataDir}), each answering with the milliseconds of the engine calls:
 * `preview`; `up`; `sequence`: the engine calls a deployment makes (automation/operations/deploy.ts):
 * preview, the targeted up that pushes the image (image and repository resources that change), up.
 */
import { evaluateInChild, OfflineEngine } from "../../automation/engine/offline";
import type { ResourceStep } from "../../automation/engine/port";
import { loadEnvironment } from "../../automation/environment";
import { programConfig } from "../../automation/operations/validate";
import { cachedEvaluator } from "../../automation/program/cache";
import { serve } from "../lib/ipc-child";

interface Args {
  readonly envDir: string;
  readonly stack: string;
  readonly dataDir: string;
}

/** deploy.ts's image push: these resource types, when they change, go first. */
const IMAGE_TYPE = "docker:index/image:Image";
const REPOSITORY_TYPE = "aws:ecr/repository:Repository";

const evaluate = cachedEvaluator(evaluateInChild);
const engines = new Map<string, OfflineEngine>();

function setup(args: Args) {
  const env = loadEnvironment(args.stack, { envDir: args.envDir });
  if (env.engine !== "offline") throw new Error(`${args.stack} is not an offline environment`);
  let engine = engines.get(args.dataDir);
  if (!engine) {
    engine = new OfflineEngine({ dataDir: args.dataDir, evaluate });
    engines.set(args.dataDir, engine);
  }
  return { env, engine, config: programConfig(env, env.settings.app.version ?? "1.0.0") };
}

serve({
  preview: async (args: Args) => {
    const { env, engine, config } = setup(args);
    const t = performance.now();
    const r = await engine.preview(env, { config });
    return { ms: performance.now() - t, changes: r.changes };
  },
  up: async (args: Args) => {
    const { env, engine, config } = setup(args);
    const t = performance.now();
    const r = await engine.up(env, { config });
    return { ms: performance.now() - t, changes: r.changes };
  },
  sequence: async (args: Args) => {
    const { env, engine, config } = setup(args);
    const t0 = performance.now();
    const preview = await engine.preview(env, { config });
    const t1 = performance.now();
    const target = preview.steps
      .filter((s: ResourceStep) => (s.type === IMAGE_TYPE || s.type === REPOSITORY_TYPE) && s.op !== "same" && s.op !== "delete")
      .map((s) => s.urn);
    if (target.length > 0) await engine.up(env, { config, target });
    const t2 = performance.now();
    const up = await engine.up(env, { config });
    const t3 = performance.now();
    return { ms: t3 - t0, previewMs: t1 - t0, imageMs: t2 - t1, upMs: t3 - t2, changes: up.changes };
  },
});
