/**
 * Environment files for tests: a copy of the repository's `environments/` in a temp dir with some
 * files edited (as plain data, written back as YAML), so tests load variants the way the deployer
 * does, through the same schema.
 */
import { cpSync, readFileSync, writeFileSync } from "fs";
import * as path from "path";
import { parse, stringify } from "yaml";
import { DEFAULT_ENV_DIR, loadEnvironment, type Environment } from "../../../automation/environment";

/** A mutable view of one environment file's YAML document. */
export type EnvDoc = Record<string, any>;
export type EnvEdits = Readonly<Record<string, (doc: EnvDoc) => void>>;

/** Copies `environments/` into `dir` and applies `edits` (stack name → edit of its file). Returns `dir`. */
export function copyEnvironments(dir: string, edits: EnvEdits = {}): string {
  cpSync(DEFAULT_ENV_DIR, dir, { recursive: true });
  for (const [stack, edit] of Object.entries(edits)) editEnvironment(dir, stack, edit);
  return dir;
}

/** Rewrites `<dir>/<stack>.yaml` through `edit`. */
export function editEnvironment(dir: string, stack: string, edit: (doc: EnvDoc) => void): void {
  const file = path.join(dir, `${stack}.yaml`);
  const doc = parse(readFileSync(file, "utf8")) as EnvDoc;
  edit(doc);
  writeFileSync(file, stringify(doc));
}

/** Loads `stack` from an env dir (default: the repository's). */
export function environment(stack: string, envDir?: string): Environment {
  return loadEnvironment(stack, envDir === undefined ? undefined : { envDir });
}
