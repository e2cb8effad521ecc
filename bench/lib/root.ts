/** The repository root: the nearest directory above this file with Pulumi.yaml (works from bench/ and from dist/bench/). */
import { existsSync } from "fs";
import * as path from "path";

function findRoot(from: string): string {
  for (let dir = from; ; dir = path.dirname(dir)) {
    if (existsSync(path.join(dir, "Pulumi.yaml"))) return dir;
    if (path.dirname(dir) === dir) throw new Error(`no Pulumi.yaml above ${from}`);
  }
}

export const REPO_ROOT = findRoot(__dirname);
