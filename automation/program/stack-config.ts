/**
 * What a deployment runs and records: the program config, the stack config written from it, and the
 * policy context. Pure, and free of the Pulumi runtime, so the service can import it cheaply.
 */
import { CONFIG_KEYS, PROJECT, type ProgramConfig } from "../../infra/config";
import type { PolicyContext } from "../../infra/policies";
import { requiredTags } from "../../infra/taggable";
import type { Environment } from "../environment";

/** The stack config the automation layer writes for a deployment (also what the pulumi engine sets). */
export function stackConfig(config: ProgramConfig): Record<string, string> {
  const values: Record<string, string> = {
    [CONFIG_KEYS.region]: config.settings.aws.region,
    [CONFIG_KEYS.settings]: JSON.stringify(config.settings),
    [CONFIG_KEYS.version]: config.version,
  };
  if (config.imageDigest !== undefined) values[CONFIG_KEYS.imageDigest] = config.imageDigest;
  return values;
}

/**
 * The stack config after a deployment writes `written`: exactly `written`. Whatever an earlier
 * deployment set and this one does not (a rollback's image digest pin, say) is removed, never left
 * behind to change what the program runs. Both engines write a stack's config through this.
 */
export function completeStackConfig(_current: Readonly<Record<string, unknown>>, written: Readonly<Record<string, string>>): Record<string, string> {
  return { ...written };
}

/**
 * What the program reads from a stack config (infra/config.ts readSettings): the settings, the
 * version and the digest pin. `fallback` stands in for settings the config does not hold.
 */
export function programConfigOf(values: Readonly<Record<string, string>>, fallback: ProgramConfig["settings"]): ProgramConfig {
  const settings = values[CONFIG_KEYS.settings] !== undefined ? (JSON.parse(values[CONFIG_KEYS.settings]) as ProgramConfig["settings"]) : fallback;
  const digest = values[CONFIG_KEYS.imageDigest];
  return { settings, version: values[CONFIG_KEYS.version] ?? "", ...(digest !== undefined ? { imageDigest: digest } : {}) };
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
