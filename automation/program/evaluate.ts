/**
 * Evaluates the infra program under Pulumi's mock runtime: no engine, no cloud. Used by `validate`
 * and by the offline engine's child process. Config goes in through `setAllConfig` exactly as the
 * engine would pass it, so `readSettings()` is exercised too; every registered resource comes back
 * with its URN (computed the way the engine does, from the parent chain), parent, inputs and the
 * mocked outputs.
 */
import * as pulumi from "@pulumi/pulumi";
import * as path from "path";
import { PROJECT, type ProgramConfig } from "../../infra/config";
import { stackConfig } from "./stack-config";
import { createMocks } from "./mocks";
import { maskWireSecrets } from "./secrets";

export interface EvaluatedResource {
  readonly urn: string;
  readonly type: string;
  readonly name: string;
  /** The parent's URN; absent for children of the stack. */
  readonly parent?: string;
  readonly custom: boolean;
  readonly id?: string;
  readonly inputs: Record<string, unknown>;
  readonly outputs: Record<string, unknown>;
  /** Set when the program marks the resource `retainOnDelete`: destroy drops it from state and leaves it in the cloud. */
  readonly retainOnDelete?: true;
}

export interface StackOutput {
  readonly value: unknown;
  readonly secret: boolean;
}

export interface Evaluation {
  readonly stack: string;
  readonly resources: EvaluatedResource[];
  readonly outputs: Record<string, StackOutput>;
}

export { stackConfig } from "./stack-config";

type ProgramFn = () => Record<string, unknown> | Promise<Record<string, unknown>>;

const INFRA_ENTRY = path.join(__dirname, "..", "..", "infra");

/**
 * Runs the program for `config.settings.environment`. `program` defaults to the repo's infra entry
 * (infra/index.ts); tests pass their own.
 */
export interface EvaluateOptions {
  /** Answers provider functions before the standard mocks do (tests: an account whose zones differ); undefined falls through. */
  readonly call?: (token: string, inputs: Record<string, unknown>) => Record<string, unknown> | undefined;
}

export async function evaluateProgram(config: ProgramConfig, program?: ProgramFn, options: EvaluateOptions = {}): Promise<Evaluation> {
  const stack = config.settings.environment;
  pulumi.runtime.setAllConfig(stackConfig(config));
  const seen = new Map<string, { inputs: Record<string, unknown>; outputs: Record<string, unknown>; id?: string; custom: boolean }>();
  const mocks = createMocks(config.settings.aws);
  await pulumi.runtime.setMocks(
    {
      newResource: async (args) => {
        const result = await mocks.newResource(args);
        seen.set(`${args.type}::${args.name}`, { inputs: args.inputs, outputs: result.state, id: args.custom ? result.id : undefined, custom: args.custom ?? true });
        return result;
      },
      call: (args) => options.call?.(args.token, args.inputs) ?? mocks.call(args),
    },
    PROJECT,
    stack,
    false,
  );

  // The transformation sees each resource as it is constructed, with its parent; from the chain of
  // parent types follows the URN the engine would give it.
  const qualified = new WeakMap<pulumi.Resource, { type: string; urn: string }>();
  const order: { type: string; name: string; urn: string; parent?: string; retainOnDelete?: true }[] = [];
  const secretOutputs = new Set<string>();
  let resolved: Record<string, unknown> | undefined;
  // Pulumi captures `new Error().stack` for every promise and resource it creates; with ts-node's
  // source-map support each capture maps every frame, a third of an evaluation's time. Mocked
  // evaluations never show those stacks, so V8's plain formatting serves while the program runs.
  const prepareStackTrace = Error.prepareStackTrace;
  (Error as { prepareStackTrace?: unknown }).prepareStackTrace = undefined;
  try {
    resolved = await pulumi.runtime.runInPulumiStack(async () => {
      pulumi.runtime.registerStackTransformation((args) => {
        const parent = args.opts.parent ? qualified.get(args.opts.parent) : undefined;
        const qualifiedType = parent ? `${parent.type}$${args.type}` : args.type;
        const urn = `urn:pulumi:${stack}::${PROJECT}::${qualifiedType}::${args.name}`;
        qualified.set(args.resource, { type: qualifiedType, urn });
        order.push({ type: args.type, name: args.name, urn, parent: parent?.urn, ...(args.opts.retainOnDelete === true ? { retainOnDelete: true as const } : {}) });
        return undefined;
      });
      const fn: ProgramFn = program ?? loadInfraEntry();
      const outputs = await fn();
      for (const [key, value] of Object.entries(outputs ?? {})) {
        if (pulumi.Output.isInstance(value) && (await pulumi.isSecret(value))) secretOutputs.add(key);
      }
      return outputs;
    });
  } finally {
    // The stack's outputs resolve before its own registerResourceOutputs call (and, when the program
    // throws, the registrations already started) reach the mock monitor. Drain the RPC queue here,
    // or those calls land on the next evaluation's monitor, which does not know their URNs, and
    // reject with nobody listening: an unhandled rejection in whoever evaluates next.
    await pulumi.runtime.disconnect();
    Error.prepareStackTrace = prepareStackTrace;
  }

  const resources = order.map(({ type, name, urn, parent, retainOnDelete }) => {
    const rec = seen.get(`${type}::${name}`);
    // Secrets nested in inputs arrive in Pulumi's wire form with the plaintext inside: masked here.
    return { urn, type, name, parent, custom: rec?.custom ?? true, id: rec?.id, inputs: maskWireSecrets(rec?.inputs ?? {}), outputs: maskWireSecrets(rec?.outputs ?? {}), ...(retainOnDelete ? { retainOnDelete } : {}) };
  });
  const outputs: Record<string, StackOutput> = {};
  for (const [key, value] of Object.entries(resolved ?? {})) outputs[key] = { value, secret: secretOutputs.has(key) };
  return { stack, resources, outputs };
}

function loadInfraEntry(): ProgramFn {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const entry = require(INFRA_ENTRY) as ProgramFn;
  if (typeof entry !== "function") throw new Error("infra/index.ts must export the program function (export = ...)");
  return entry;
}
