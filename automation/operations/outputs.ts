/**
 * outputs: the stack's outputs with secret values masked, and written as JSON the way the procedure's
 * `terraform output -json > infrastructure-outputs.json` did.
 */
import { writeFileSync } from "fs";
import type { Engine, Outputs } from "../engine/port";
import type { Environment } from "../environment";

export const DEFAULT_OUTPUTS_FILE = "infrastructure-outputs.json";

export async function outputs(env: Environment, engine: Engine, options: { file?: string; signal?: AbortSignal } = {}): Promise<Outputs> {
  const values = await engine.outputs(env, { signal: options.signal });
  if (options.file !== undefined) {
    // Same shape as `terraform output -json`: { name: { value, sensitive } }, secrets masked.
    const doc = Object.fromEntries(Object.entries(values).map(([k, v]) => [k, { value: v.value, sensitive: v.secret }]));
    writeFileSync(options.file, JSON.stringify(doc, null, 2) + "\n");
  }
  return values;
}
