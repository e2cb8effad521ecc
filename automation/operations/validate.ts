/**
 * validate: evaluates the program for an environment under Pulumi's mock runtime (no engine, no
 * cloud) and runs the policy rules over what it registered. The same evaluation backs the review
 * gate of a deployment.
 */
import { PROJECT, type ProgramConfig } from "../../infra/config";
import { checkPolicies, type PolicyContext, type Violation } from "../../infra/policies";
import { requiredTags } from "../../infra/tags";
import type { Environment } from "../environment";
import { evaluateProgram, type EvaluatedResource, type StackOutput } from "../program/evaluate";

/** The version `validate` evaluates with when neither `--version` nor `app.version` gives one. */
export const VALIDATE_PLACEHOLDER_VERSION = "0.0.0-validate";

export interface ValidateResult {
  readonly stack: string;
  readonly version: string;
  readonly resources: readonly EvaluatedResource[];
  readonly outputs: Record<string, StackOutput>;
  readonly violations: readonly Violation[];
}

export function policyContext(env: Environment): PolicyContext {
  return {
    environment: env.name,
    production: env.settings.production,
    requiredTags: requiredTags(env.name, PROJECT, env.settings.tags),
  };
}

/** The program config for a deployment of `version` (optionally pinned to a digest). */
export function programConfig(env: Environment, version: string, imageDigest?: string): ProgramConfig {
  return { settings: env.settings, version, imageDigest };
}

export async function validate(env: Environment, options: { version?: string } = {}): Promise<ValidateResult> {
  const version = options.version ?? env.settings.app.version ?? VALIDATE_PLACEHOLDER_VERSION;
  const evaluation = await evaluateProgram(programConfig(env, version));
  const violations = checkPolicies(evaluation.resources, policyContext(env));
  return { stack: env.name, version, resources: evaluation.resources, outputs: evaluation.outputs, violations };
}
