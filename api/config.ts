/**
 * The service's configuration: environment variables, validated once at boot. A bad value stops the
 * process with one line naming the variable (main.ts), before anything is opened or spawned.
 */
import { z } from "zod";

const integer = (name: string, min: number, max: number, dflt: number) =>
  z
    .string()
    .trim()
    .regex(/^\d+$/, `must be a whole number from ${min} to ${max}`)
    .transform(Number)
    .pipe(z.number().int().min(min, `must be a whole number from ${min} to ${max}`).max(max, `must be a whole number from ${min} to ${max}`))
    .optional()
    .transform((v) => v ?? dflt)
    .describe(name);

const nonEmpty = z.string().trim().min(1, "must not be empty");

export const configSchema = z
  .object({
    PORT: integer("PORT", 0, 65535, 8080),
    /** Loopback by default: the service speaks plain HTTP, so bearer tokens need a TLS proxy in front to go further. */
    DEPLOYER_HOST: nonEmpty.regex(/^[A-Za-z0-9.:-]+$/, "must be an address or host name").default("127.0.0.1"),
    DEPLOYER_DATA_DIR: nonEmpty.default(".deployer"),
    /** PostgreSQL shared by several replicas (`postgres://user:password@host:5432/db`); SQLite in the data directory without it. */
    DEPLOYER_DATABASE_URL: nonEmpty.regex(/^postgres(ql)?:\/\//i, "must be a postgres:// or postgresql:// URL").optional(),
    DEPLOYER_ENV_DIR: nonEmpty.optional(),
    DEPLOYER_MAX_CONCURRENT: integer("DEPLOYER_MAX_CONCURRENT", 1, 64, 2),
    /** How long a stack's lease outlives its holder's last renewal: how soon a dead replica's jobs are taken over. */
    DEPLOYER_LEASE_TTL_SECONDS: integer("DEPLOYER_LEASE_TTL_SECONDS", 3, 3600, 60),
    DEPLOYER_SHUTDOWN_GRACE_SECONDS: integer("DEPLOYER_SHUTDOWN_GRACE_SECONDS", 2, 3600, 25),
    DEPLOYER_WEBHOOK_URL: z
      .string()
      .trim()
      .url("must be an http(s) URL")
      .regex(/^https?:\/\//, "must be an http(s) URL")
      .optional(),
    DEPLOYER_WEBHOOK_SECRET: z.string().min(16, "must be at least 16 characters").optional(),
    /** The tokens file; default `<data dir>/tokens.yaml`, created with one admin token on first start. */
    DEPLOYER_TOKENS_FILE: nonEmpty.optional(),
    DEPLOYER_RATE_LIMIT_PER_MINUTE: integer("DEPLOYER_RATE_LIMIT_PER_MINUTE", 1, 100_000, 60),
    DEPLOYER_UNAUTH_RATE_LIMIT_PER_MINUTE: integer("DEPLOYER_UNAUTH_RATE_LIMIT_PER_MINUTE", 1, 100_000, 30),
    DEPLOYER_AUDIT_RETENTION_DAYS: integer("DEPLOYER_AUDIT_RETENTION_DAYS", 1, 36_500, 90),
    DEPLOYER_EVENT_RETENTION_DAYS: integer("DEPLOYER_EVENT_RETENTION_DAYS", 1, 36_500, 30),
    DEPLOYER_MAX_QUEUED_PER_STACK: integer("DEPLOYER_MAX_QUEUED_PER_STACK", 1, 10_000, 20),
    DEPLOYER_MAX_QUEUED_PER_PRINCIPAL: integer("DEPLOYER_MAX_QUEUED_PER_PRINCIPAL", 1, 10_000, 40),
    /** Proxy hops in front of the service whose X-Forwarded-For names the client (rate limits, audit). */
    DEPLOYER_TRUST_PROXY: integer("DEPLOYER_TRUST_PROXY", 0, 10, 0),
    DEPLOYER_LOG_LEVEL: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),
    /** Test only: the offline engine runs this program instead of infra/ (the crash tests' hanging program). */
    DEPLOYER_OFFLINE_PROGRAM: nonEmpty.optional(),
  })
  .superRefine((c, ctx) => {
    if (c.DEPLOYER_WEBHOOK_URL !== undefined && c.DEPLOYER_WEBHOOK_SECRET === undefined) {
      ctx.addIssue({ code: "custom", path: ["DEPLOYER_WEBHOOK_SECRET"], message: "is required when DEPLOYER_WEBHOOK_URL is set (notifications are signed)" });
    }
  });

export type ServiceConfig = z.output<typeof configSchema>;

export class ServiceConfigError extends Error {
  constructor(readonly variable: string, reason: string) {
    super(`${variable}: ${reason}`);
    this.name = "ServiceConfigError";
  }
}

/** Reads the service's variables from `env` (empty values count as unset). */
export function loadConfig(env: NodeJS.ProcessEnv): ServiceConfig {
  const raw: Record<string, string> = {};
  for (const key of Object.keys(configSchema.shape)) {
    const value = env[key];
    if (value !== undefined && value !== "") raw[key] = value;
  }
  const result = configSchema.safeParse(raw);
  if (result.success) return result.data;
  const issue = result.error.issues[0];
  const variable = String(issue.path[0] ?? "configuration");
  // Never echo a secret's value; other values help, shortened.
  const given = raw[variable];
  const shown = given === undefined || /SECRET|DATABASE_URL/.test(variable) ? "" : ` (got "${given.replace(/[^\x20-\x7e]/g, "?").slice(0, 60)}")`;
  throw new ServiceConfigError(variable, `${issue.message}${shown}`);
}
