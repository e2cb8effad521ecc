/**
 * validate: evaluates the program for an environment under Pulumi's mock runtime (no engine, no
 * cloud) and runs the policy rules over what it registered. The same evaluation backs the review
 * gate of a deployment.
 */
import { checkPolicies, type Violation } from "../../infra/policies";
import type { Environment } from "../environment";
import { evaluateProgram, type EvaluatedResource, type StackOutput } from "../program/evaluate";
import { policyContext, programConfig } from "../program/stack-config";

export { policyContext, programConfig };

/** The version `validate` evaluates with when neither `--version` nor `app.version` gives one. */
export const VALIDATE_PLACEHOLDER_VERSION = "0.0.0-validate";

export interface ValidateResult {
  readonly stack: string;
  readonly version: string;
  readonly resources: readonly EvaluatedResource[];
  readonly outputs: Record<string, StackOutput>;
  readonly violations: readonly Violation[];
}

export async function validate(env: Environment, options: { version?: string } = {}): Promise<ValidateResult> {
  const version = options.version ?? env.settings.app.version ?? VALIDATE_PLACEHOLDER_VERSION;
  const evaluation = await evaluateProgram(programConfig(env, version));
  const violations = checkPolicies(evaluation.resources, policyContext(env));
  return { stack: env.name, version, resources: evaluation.resources, outputs: evaluation.outputs, violations };
}
