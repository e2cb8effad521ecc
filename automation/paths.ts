/** Where the deployer keeps what it writes at run time. */
import * as path from "path";

/** `DEPLOYER_DATA_DIR`, default `.deployer/` under the current directory (the repository root for npm scripts). */
export function dataDir(env: NodeJS.ProcessEnv = process.env): string {
  return path.resolve(env.DEPLOYER_DATA_DIR ?? ".deployer");
}

/** `<dataDir>/offline/<stack>`: the offline engine's snapshot of one stack. */
export function offlineStackDir(stack: string, base: string = dataDir()): string {
  return path.join(base, "offline", stack);
}
