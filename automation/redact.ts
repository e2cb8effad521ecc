/**
 * Message hygiene: anything that may reach a user, a log, a job event or the audit trail goes through
 * `redactSecrets`, which replaces the values of the secret-bearing environment variables (and any
 * extra values the caller knows about) with `[secret]`. `redactDeep` does the same to every string of
 * a JSON-able value, and drops the values of keys that name a credential.
 */

/** Environment variables whose values must never appear in a message. */
export const SECRET_ENV_VARS: readonly string[] = [
  "PULUMI_CONFIG_PASSPHRASE",
  "PULUMI_ACCESS_TOKEN",
  "AWS_SECRET_ACCESS_KEY",
  "AWS_SESSION_TOKEN",
  // Not a secret on its own, but half of one, and it names the account's user: kept out as well.
  "AWS_ACCESS_KEY_ID",
  "DEPLOYER_WEBHOOK_SECRET",
];

export const REDACTED = "[secret]";

/** Keys whose values are credentials wherever they appear in structured data (logs, audit details). */
export const SECRET_KEY_RE = /^(authorization|cookie|token|tokens|password|passphrase|secret|secrets|apikey|api_key|accesskey|secretaccesskey|sessiontoken)$/i;

/**
 * Values shorter than this are not masked by substring in free text: replacing every "p" of a log
 * line destroys it and protects nothing (a value that short is guessed, not read off a log). Fields
 * that name a credential are still censored whatever their value (`redactDeep`, the logger's paths).
 */
export const MIN_MASKED_LENGTH = 6;

/** The secret values present in `env`, plus `extra`, longest first so overlapping values redact whole; values shorter than MIN_MASKED_LENGTH are left out. */
export function secretValues(env: NodeJS.ProcessEnv = process.env, extra: readonly string[] = []): string[] {
  const values = new Set<string>();
  for (const name of SECRET_ENV_VARS) {
    const value = env[name];
    if (value && value.length >= MIN_MASKED_LENGTH) values.add(value);
  }
  for (const value of extra) if (value && value.length >= MIN_MASKED_LENGTH) values.add(value);
  return [...values].sort((a, b) => b.length - a.length);
}

/** The secret variables set in `env` whose values are too short to be masked in free text (names only). */
export function shortSecretVariables(env: NodeJS.ProcessEnv = process.env): string[] {
  return SECRET_ENV_VARS.filter((name) => {
    const value = env[name];
    return value !== undefined && value !== "" && value.length < MIN_MASKED_LENGTH;
  });
}

/** The one warning a start gives about `shortSecretVariables`: names the variables, never a value. */
export function shortSecretWarning(names: readonly string[]): string {
  return `${names.join(", ")} ${names.length === 1 ? "is" : "are"} shorter than ${MIN_MASKED_LENGTH} characters, too short to be masked in free text (logs, job events, errors); ` +
    "fields that name a credential are still censored. Use a longer value.";
}

/** Replaces every occurrence of a secret value (of at least MIN_MASKED_LENGTH characters) in `text` with `[secret]`. */
export function redactSecrets(text: string, env: NodeJS.ProcessEnv = process.env, extra: readonly string[] = []): string {
  let out = text;
  for (const value of secretValues(env, extra)) out = out.split(value).join(REDACTED);
  return out;
}

/**
 * Like `redactSecrets`, for text that is already JSON (a serialized log line): a secret is also found in
 * its JSON-escaped form (a value with a quote or a backslash in it).
 */
export function redactSecretsInJson(json: string, env: NodeJS.ProcessEnv = process.env, extra: readonly string[] = []): string {
  return jsonRedactor(secretValues(env, extra))(json);
}

/**
 * A redaction of JSON text for a fixed set of secrets, computed once (a logger's line hook runs it on
 * every line): the identity when there are none.
 */
export function jsonRedactor(secrets: readonly string[]): (json: string) => string {
  const forms = new Set<string>();
  for (const value of secrets) {
    forms.add(value);
    forms.add(JSON.stringify(value).slice(1, -1));
  }
  const ordered = [...forms].filter((f) => f !== "").sort((a, b) => b.length - a.length);
  if (ordered.length === 0) return (json) => json;
  return (json) => {
    let out = json;
    for (const form of ordered) if (out.includes(form)) out = out.split(form).join(REDACTED);
    return out;
  };
}

/**
 * A copy of a JSON-able value with every string redacted and the values of credential-named keys
 * (`token`, `password`, `secret`, …) replaced by `[secret]`. Cycles and depth beyond 20 become `"[…]"`.
 */
export function redactDeep<T>(value: T, env: NodeJS.ProcessEnv = process.env, extra: readonly string[] = []): T {
  const secrets = secretValues(env, extra);
  const text = (s: string) => {
    let out = s;
    for (const v of secrets) out = out.split(v).join(REDACTED);
    return out;
  };
  const seen = new Set<unknown>();
  const walk = (v: unknown, depth: number): unknown => {
    if (typeof v === "string") return text(v);
    if (v === null || typeof v !== "object") return v;
    if (depth > 20 || seen.has(v)) return "[…]";
    seen.add(v);
    try {
      if (Array.isArray(v)) return v.map((x) => walk(x, depth + 1));
      const out: Record<string, unknown> = {};
      for (const [k, x] of Object.entries(v as Record<string, unknown>)) out[text(k)] = SECRET_KEY_RE.test(k) ? REDACTED : walk(x, depth + 1);
      return out;
    } finally {
      seen.delete(v);
    }
  };
  return walk(value, 0) as T;
}
