/**
 * The offline engine's child process: evaluates the program under Pulumi's mock runtime and sends the
 * evaluation back over IPC. A process of its own because the mock runtime is global (one program per
 * process) and so a hung program can be interrupted (SIGINT) or killed without touching the caller.
 *
 * Protocol: the parent sends one `ChildRequest`; the child answers with one `ChildResponse` and exits.
 * Secret values never leave this process in clear: secret stack outputs, and resource properties
 * whose input was a secret (or listed in `additionalSecretOutputs`), are replaced with SECRET_MASK.
 *
 * Started as `node -r automation/register.js automation/engine/offline-child.ts` (transpile-only).
 */
import * as pulumi from "@pulumi/pulumi";
import type { ProgramConfig } from "../../infra/config";
import { evaluateProgram, type Evaluation } from "../program/evaluate";
import { maskWireSecrets } from "../program/secrets";
import { SECRET_MASK } from "./port";

export interface ChildRequest {
  readonly type: "evaluate";
  readonly config: ProgramConfig;
  /** A module whose export (`export =` or default) is the program function; default: the infra entry. */
  readonly programPath?: string;
}

export type ChildResponse =
  | { readonly type: "result"; readonly evaluation: Evaluation }
  | { readonly type: "error"; readonly message: string };

type ProgramFn = () => Record<string, unknown> | Promise<Record<string, unknown>>;

/** How deep to look for secret Outputs inside a resource's input objects. */
const SECRET_SCAN_DEPTH = 4;

/** Secret property paths per resource (`type::name`, as evaluate.ts keys them), and of the stack outputs. */
type SecretPaths = Map<string, string[][]>;
const STACK_OUTPUTS = "pulumi:pulumi:Stack::outputs";

function loadProgram(programPath: string): ProgramFn {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const mod = require(programPath);
  const fn = typeof mod === "function" ? mod : mod?.default;
  if (typeof fn !== "function") throw new Error(`${programPath} must export the program function (export = ... or export default)`);
  return fn as ProgramFn;
}

/**
 * Wraps the program so that, before it runs, a stack transformation records which inputs of each
 * resource are secret. The program module is required inside, after the mocks are set, exactly as
 * evaluate.ts does for the infra entry.
 */
function withSecretScan(programPath: string | undefined, secrets: SecretPaths, pending: Promise<void>[]): ProgramFn {
  const load = (): ProgramFn => {
    if (programPath !== undefined) return loadProgram(programPath);
    // The infra entry, loaded the way evaluate.ts loads it.
    return loadProgram(require.resolve("../../infra"));
  };
  return async () => {
    pulumi.runtime.registerStackTransformation((args) => {
      const key = `${args.type}::${args.name}`;
      const found: string[][] = [];
      scan(args.props, [], 0, found, pending);
      for (const out of (args.opts as pulumi.CustomResourceOptions).additionalSecretOutputs ?? []) found.push([out]);
      secrets.set(key, found);
      return undefined;
    });
    const outputs = await load()();
    // evaluate.ts sees a top-level secret Output; an object holding one is secret too, as Pulumi has it.
    const found: string[][] = [];
    scan(outputs ?? {}, [], 0, found, pending);
    secrets.set(STACK_OUTPUTS, found);
    return outputs;
  };
}

function scan(value: unknown, path: string[], depth: number, found: string[][], pending: Promise<void>[]): void {
  if (depth > SECRET_SCAN_DEPTH || value === null || typeof value !== "object") return;
  if (pulumi.Output.isInstance(value)) {
    if (path.length === 0) return;
    pending.push(
      pulumi.isSecret(value).then(
        (secret) => {
          if (secret) found.push(path);
        },
        () => undefined,
      ),
    );
    return;
  }
  if (Array.isArray(value)) {
    value.forEach((v, i) => scan(v, [...path, String(i)], depth + 1, found, pending));
    return;
  }
  if (Object.getPrototypeOf(value) !== Object.prototype) return;
  for (const [k, v] of Object.entries(value)) scan(v, [...path, k], depth + 1, found, pending);
}

function maskPath(target: unknown, path: readonly string[]): void {
  let node: any = target;
  for (let i = 0; i < path.length - 1; i++) {
    if (node === null || typeof node !== "object") return;
    node = node[path[i]];
  }
  const last = path[path.length - 1];
  if (node !== null && typeof node === "object" && last in node) node[last] = SECRET_MASK;
}

/** Plain JSON (drops undefined and functions), masked where secret. */
function sanitize(evaluation: Evaluation, secrets: SecretPaths): Evaluation {
  const plain = maskWireSecrets(JSON.parse(JSON.stringify(evaluation))) as Evaluation;
  for (const r of plain.resources) {
    for (const p of secrets.get(`${r.type}::${r.name}`) ?? []) {
      maskPath(r.inputs, p);
      maskPath(r.outputs, p);
    }
  }
  const secretKeys = new Set((secrets.get(STACK_OUTPUTS) ?? []).map((p) => p[0]));
  for (const [key, out] of Object.entries(plain.outputs)) {
    const secret = out.secret || secretKeys.has(key) || out.value === SECRET_MASK;
    plain.outputs[key] = secret ? { value: SECRET_MASK, secret: true } : out;
  }
  return plain;
}

/** The message of a failure without its stack trace: the first few lines that are not stack frames. */
export function briefMessage(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  const lines = text
    .split("\n")
    .map((l) => l.trimEnd())
    .filter((l) => l.trim() !== "" && !/^\s*at\s/.test(l));
  const brief = lines.slice(0, 5).join("\n");
  return brief.length > 1000 ? `${brief.slice(0, 1000)}…` : brief || "the program failed without a message";
}

export async function evaluateMasked(request: ChildRequest): Promise<Evaluation> {
  const secrets: SecretPaths = new Map();
  const pending: Promise<void>[] = [];
  const evaluation = await evaluateProgram(request.config, withSecretScan(request.programPath, secrets, pending));
  await Promise.all(pending);
  return sanitize(evaluation, secrets);
}

function respond(message: ChildResponse): void {
  if (!process.send) return;
  process.send(message, () => process.exit(message.type === "result" ? 0 : 1));
}

function main(): void {
  if (!process.send) {
    process.stderr.write("offline-child: must be started by the offline engine (child_process.fork with an IPC channel)\n");
    process.exit(2);
  }
  let answered = false;
  const fail = (err: unknown) => {
    if (answered) return;
    answered = true;
    respond({ type: "error", message: briefMessage(err) });
  };
  // What escapes evaluateProgram's promise (a rejection nobody awaits, a throw in a timer) still fails the run.
  process.on("unhandledRejection", fail);
  process.on("uncaughtException", fail);
  // The parent went away: nobody is waiting for the answer.
  process.on("disconnect", () => process.exit(1));
  process.once("message", (request: ChildRequest) => {
    evaluateMasked(request).then((evaluation) => {
      if (answered) return;
      answered = true;
      respond({ type: "result", evaluation });
    }, fail);
  });
}

if (require.main === module) main();
