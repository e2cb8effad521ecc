/**
 * The repository root: the nearest directory above this file holding Pulumi.yaml. Found by walking
 * up rather than by a fixed `..`, so the same code works from the TypeScript sources and from the
 * compiled copy under dist/ that `npm start` runs.
 */
import { existsSync } from "fs";
import * as path from "path";

function findRoot(from: string): string {
  for (let dir = from; ; dir = path.dirname(dir)) {
    if (existsSync(path.join(dir, "Pulumi.yaml"))) return dir;
    if (path.dirname(dir) === dir) throw new Error(`no Pulumi.yaml above ${from}`);
  }
}

export const REPO_ROOT = findRoot(__dirname);
