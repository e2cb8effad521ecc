/** Temporary directories for one spec file, removed together at the end. */
import { mkdtempSync, rmSync } from "fs";
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
