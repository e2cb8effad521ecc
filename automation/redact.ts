/**
 * Message hygiene: anything that may reach a user, a log or a job event goes through
 * `redactSecrets`, which replaces the values of the secret-bearing environment variables (and any
 * extra values the caller knows about) with `[secret]`.
 */

/** Environment variables whose values must never appear in a message. */
export const SECRET_ENV_VARS: readonly string[] = [
  "PULUMI_CONFIG_PASSPHRASE",
  "AWS_SECRET_ACCESS_KEY",
  "AWS_SESSION_TOKEN",
  "PULUMI_ACCESS_TOKEN",
];

export const REDACTED = "[secret]";

/** The secret values present in `env`, plus `extra`, longest first so overlapping values redact whole. */
export function secretValues(env: NodeJS.ProcessEnv = process.env, extra: readonly string[] = []): string[] {
  const values = new Set<string>();
  for (const name of SECRET_ENV_VARS) {
    const value = env[name];
    if (value) values.add(value);
  }
  for (const value of extra) if (value) values.add(value);
  return [...values].sort((a, b) => b.length - a.length);
}

/**
 * Replaces every occurrence of a secret value in `text` with `[secret]`. Even very short values are
 * replaced: a mangled message is better than a leaked passphrase.
 */
export function redactSecrets(text: string, env: NodeJS.ProcessEnv = process.env, extra: readonly string[] = []): string {
  let out = text;
  for (const value of secretValues(env, extra)) out = out.split(value).join(REDACTED);
  return out;
}
