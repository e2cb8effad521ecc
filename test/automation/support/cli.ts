/** Runs the CLI in-process with captured output, as `npm run <op> -- …` would. */
import { runCli, type CliIo } from "../../../automation/cli/main";

export interface CliRun {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
  readonly ms: number;
}

export async function cli(argv: readonly string[], io: Partial<Omit<CliIo, "stdout" | "stderr">> & { env: NodeJS.ProcessEnv }): Promise<CliRun> {
  let stdout = "";
  let stderr = "";
  const started = Date.now();
  const code = await runCli(argv, {
    isTTY: false,
    ...io,
    stdout: (t) => (stdout += t),
    stderr: (t) => (stderr += t),
  });
  return { code, stdout, stderr, ms: Date.now() - started };
}

/** Lines that look like a stack trace frame. */
export function stackFrames(text: string): string[] {
  return text.split("\n").filter((l) => /^\s+at\s/.test(l));
}
