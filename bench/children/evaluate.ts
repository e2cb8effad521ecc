/**
 * Program evaluation alone, in a warm process: `validate` (the program under Pulumi's mocks plus the
 * policy rules) and `evaluateProgram` (the program only) for one environment, after warm-up runs.
 */
import { loadEnvironment } from "../../automation/environment";
import { programConfig, validate, VALIDATE_PLACEHOLDER_VERSION } from "../../automation/operations/validate";
import { evaluateProgram } from "../../automation/program/evaluate";
import { serve } from "../lib/ipc-child";

serve({
  run: async (args: { stack: string; warmup: number; runs: number }) => {
    const loadStart = performance.now();
    const env = loadEnvironment(args.stack);
    const version = env.settings.app.version ?? VALIDATE_PLACEHOLDER_VERSION;
    const first = performance.now();
    const result = await validate(env);
    const firstMs = performance.now() - first;
    const loadMs = first - loadStart;
    for (let i = 1; i < args.warmup; i++) await validate(env);
    const evaluate: number[] = [];
    const full: number[] = [];
    for (let i = 0; i < args.runs; i++) {
      let t = performance.now();
      await evaluateProgram(programConfig(env, version));
      evaluate.push(performance.now() - t);
      t = performance.now();
      await validate(env);
      full.push(performance.now() - t);
    }
    return { resources: result.resources.length, violations: result.violations.length, loadMs, firstMs, evaluate, validate: full };
  },
});
