/** Temporary directories for one spec file, removed together at the end. */
import { mkdtempSync, readdirSync, rmSync, statSync } from "fs";
import { tmpdir } from "os";
import * as path from "path";

export interface TempDirs {
  /** A new empty directory under the OS temp dir. */
  make(prefix?: string): string;
  /** Removes every directory made so far. */
  cleanup(): void;
}

export function tempDirs(): TempDirs {
  const dirs: string[] = [];
  return {
    make(prefix = "deployer-test-") {
      const dir = mkdtempSync(path.join(tmpdir(), prefix));
      dirs.push(dir);
      return dir;
    },
    cleanup() {
      for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Every file under `dir` (relative paths, directories marked with a trailing slash), sorted. */
export function tree(dir: string, skip: ReadonlySet<string> = new Set()): string[] {
  const out: string[] = [];
  const walk = (d: string, rel: string) => {
    for (const name of readdirSync(d)) {
      const full = path.join(d, name);
      if (skip.has(full)) continue;
      const r = rel ? `${rel}/${name}` : name;
      if (statSync(full).isDirectory()) {
        out.push(`${r}/`);
        walk(full, r);
      } else out.push(r);
    }
  };
  walk(dir, "");
  return out.sort();
}
