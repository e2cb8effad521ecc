/**
 * The program's settings: one zod schema, read and validated once from stack config by
 * `readSettings()` and passed to the components as typed args. The automation layer builds the same
 * object from an environment file (automation/environment.ts) and writes it into stack config, so
 * each update's recorded config says exactly what was deployed.
 */
import type * as pulumi from "@pulumi/pulumi";
import { z } from "zod";
import { parseCidr } from "./cidr";
import { parseSecretsManagerRef } from "./naming";
import { REGION_ZONES } from "./regions";

/** The Pulumi project name, and so the config namespace. */
export const PROJECT = "pulumi-aws-deployer";
/** Stack config keys the automation layer writes. */
export const CONFIG_KEYS = {
  settings: `${PROJECT}:settings`,
  version: `${PROJECT}:version`,
  imageDigest: `${PROJECT}:imageDigest`,
  region: "aws:region",
} as const;

/** `^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`, never `latest`: the deploy version is the image tag. */
export const VERSION_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
export const versionSchema = z
  .string()
  .regex(VERSION_RE, "must match ^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
  .refine((v) => v.toLowerCase() !== "latest", "must not be \"latest\": a deployment names the exact image it runs");

export const digestSchema = z.string().regex(/^sha256:[a-f0-9]{64}$/, "must be an image digest like sha256:<64 hex>");

/** CPU units → the memory sizes (MiB) Fargate accepts with it. */
export const FARGATE_SIZES: Readonly<Record<number, readonly number[]>> = {
  256: [512, 1024, 2048],
  512: range(1024, 4096, 1024),
  1024: range(2048, 8192, 1024),
  2048: range(4096, 16384, 1024),
  4096: range(8192, 30720, 1024),
  8192: range(16384, 61440, 4096),
  16384: range(32768, 122880, 8192),
};

function range(from: number, to: number, step: number): number[] {
  const out: number[] = [];
  for (let v = from; v <= to; v += step) out.push(v);
  return out;
}

/** The only values CloudWatch Logs accepts for a log group's retention (PutRetentionPolicy), in days. */
export const LOG_RETENTION_DAYS = [1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653] as const;

const logRetentionDays = z
  .number()
  .int()
  .refine((d) => (LOG_RETENTION_DAYS as readonly number[]).includes(d), { message: `must be one of the retention periods CloudWatch Logs accepts: ${LOG_RETENTION_DAYS.join(", ")}` });

const name = z.string().regex(/^[a-z][a-z0-9-]{0,19}$/, "must be lowercase letters, digits and dashes, starting with a letter, at most 20 characters");

const cidr = z.string().superRefine((value, ctx) => {
  const parsed = parseCidr(value);
  if (typeof parsed === "string") return ctx.addIssue({ code: "custom", message: parsed });
  if (parsed.prefix < 16 || parsed.prefix > 22) {
    ctx.addIssue({ code: "custom", message: `"${value}" must be between /16 and /22 so each zone gets a public and a private subnet` });
  }
});

export const networkSchema = z.strictObject({
  /** The VPC block; split into /(prefix+4) subnets, public first, private from the middle. */
  cidr,
  availabilityZones: z.number().int().min(2, "must be at least 2: an ALB needs two zones").max(6),
  /** none: private subnets have no internet route; single: one shared NAT; one-per-az: a NAT per zone. */
  natGateways: z.enum(["none", "single", "one-per-az"]),
  /** Days of VPC flow logs kept in CloudWatch. */
  flowLogRetentionDays: logRetentionDays.default(30),
});

const secretRef = z.union(
  [
    z.strictObject({ ssm: z.string().regex(/^\/[A-Za-z0-9_.\-/]+$/, "must be an SSM parameter path like /prod/web/db-url") }),
    z.strictObject({
      secretsManager: z.string().superRefine((ref, ctx) => {
        const parsed = parseSecretsManagerRef(ref);
        if (typeof parsed === "string") ctx.addIssue({ code: "custom", message: parsed });
      }),
    }),
  ],
  { error: "must be a reference, { ssm: /path } or { secretsManager: arn }, never the secret itself" },
);

/** `arn:aws:acm:<region>:<account>:certificate/<uuid>`: ACM certificate ids are UUIDs. */
export const ACM_CERTIFICATE_ARN_RE = /^arn:aws[a-z-]*:acm:([a-z0-9-]+):(\d{12}):certificate\/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** Names that hold secrets; such a value in `app.environment` is refused (move it to `app.secrets`). */
const SECRET_NAME_RE = /(PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY|PRIVATE_?KEY|CREDENTIALS?|DATABASE_URL|_DSN$)/i;

export const appSchema = z
  .strictObject({
    name,
    /** The default deploy version (image tag) when the caller gives none. */
    version: versionSchema.optional(),
    /** Build the image from this directory (relative to the repository root) and push it to ECR. */
    build: z.strictObject({ context: z.string().min(1), dockerfile: z.string().min(1).optional() }).optional(),
    /** Or run a prebuilt image: `<registry>/<repository>` without a tag; the deploy version is the tag. */
    image: z.string().regex(/^[a-z0-9.-]+(:\d+)?\/[a-z0-9._\/-]+$/, "must be <registry>/<repository> without a tag").optional(),
    port: z.number().int().min(1).max(65535),
    cpu: z.number().int(),
    memory: z.number().int(),
    desiredCount: z.number().int().min(0),
    autoscaling: z.strictObject({ min: z.number().int().min(0), max: z.number().int().min(1), cpuTarget: z.number().min(10).max(95) }),
    healthCheck: z.strictObject({
      path: z.string().regex(/^\/[^\s]*$/, "must be an absolute URL path"),
      intervalSeconds: z.number().int().min(5).max(300).default(30),
      healthyThreshold: z.number().int().min(2).max(10).default(3),
      /**
       * The container's own check, as ECS takes it: `["CMD", "/healthcheck"]` or `["CMD-SHELL", "…"]`;
       * `none` leaves it to the load balancer's target group. Default: BusyBox/GNU wget on
       * 127.0.0.1 (the image needs /bin/sh and wget).
       */
      containerCommand: z
        .union([
          z.literal("none"),
          z
            .array(z.string().min(1))
            .min(2, "must be [\"CMD\", <program>, …] or [\"CMD-SHELL\", <command>]")
            .refine((c) => c[0] === "CMD" || c[0] === "CMD-SHELL", "must start with \"CMD\" or \"CMD-SHELL\"")
            .refine((c) => !c.some((part) => /\blocalhost\b/.test(part)), "must not use localhost: BusyBox wget may resolve it to ::1 and not fall back to IPv4; use 127.0.0.1"),
        ])
        .optional(),
    }),
    environment: z.record(z.string().regex(/^[A-Z_][A-Z0-9_]*$/, "must be an UPPER_SNAKE_CASE name"), z.string()).default({}),
    secrets: z.record(z.string().regex(/^[A-Z_][A-Z0-9_]*$/, "must be an UPPER_SNAKE_CASE name"), secretRef).default({}),
    /**
     * The name the service answers on: a Route 53 alias to the load balancer in `hostedZoneId`, an
     * ACM certificate for it, and the stack's `url`. Required in production (a certificate cannot
     * cover the load balancer's own `*.elb.amazonaws.com` name). Without it, plain HTTP on the
     * load balancer's name.
     */
    domain: z
      .strictObject({
        name: z.string().regex(/^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$/, "must be a lowercase DNS name like app.example.com"),
        hostedZoneId: z.string().regex(/^Z[A-Z0-9]{1,31}$/, "must be a Route 53 hosted zone id like Z0123456789ABCDEFGHIJ"),
      })
      .optional(),
    /**
     * ACM certificate for `domain`, issued in this account and region. Default: the program requests
     * one and validates it through DNS in the hosted zone.
     */
    certificateArn: z
      .string()
      .regex(ACM_CERTIFICATE_ARN_RE, "must be an ACM certificate ARN, arn:aws:acm:<region>:<account>:certificate/<uuid> (ACM ids are UUIDs)")
      .optional(),
    /** Days of application logs kept. */
    logRetentionDays: logRetentionDays.default(30),
    /** Images kept in ECR by the lifecycle policy. */
    keepImages: z.number().int().min(1).max(1000).default(30),
  })
  .superRefine((app, ctx) => {
    if ((app.build === undefined) === (app.image === undefined)) {
      ctx.addIssue({ code: "custom", path: ["build"], message: "give either `build` or `image`, not both and not neither" });
    }
    const memories = FARGATE_SIZES[app.cpu];
    if (!memories) {
      ctx.addIssue({ code: "custom", path: ["cpu"], message: `${app.cpu} is not a Fargate CPU size (${Object.keys(FARGATE_SIZES).join(", ")})` });
    } else if (!memories.includes(app.memory)) {
      ctx.addIssue({ code: "custom", path: ["memory"], message: `${app.memory} MiB is not allowed with ${app.cpu} CPU units on Fargate (${memories[0]}–${memories[memories.length - 1]})` });
    }
    if (app.autoscaling.min > app.autoscaling.max) {
      ctx.addIssue({ code: "custom", path: ["autoscaling", "min"], message: `min ${app.autoscaling.min} is above max ${app.autoscaling.max}` });
    }
    if (app.desiredCount < app.autoscaling.min || app.desiredCount > app.autoscaling.max) {
      ctx.addIssue({ code: "custom", path: ["desiredCount"], message: `${app.desiredCount} is outside the autoscaling range ${app.autoscaling.min}–${app.autoscaling.max}` });
    }
    for (const key of Object.keys(app.environment)) {
      if (SECRET_NAME_RE.test(key)) {
        ctx.addIssue({ code: "custom", path: ["environment", key], message: "looks like a secret written in plain text; move it to app.secrets as { ssm: /path } or { secretsManager: arn }" });
      }
      if (key in app.secrets) ctx.addIssue({ code: "custom", path: ["environment", key], message: "is also defined in app.secrets" });
    }
  });

export const databaseSchema = z
  .strictObject({
    engine: z.enum(["postgres", "mysql"]),
    /**
     * Required: without it RDS picks its current default major, so environments created months
     * apart would run different majors. A major ("16", "8.0") lets minor upgrades apply; a full
     * version ("16.4") pins that too.
     */
    engineVersion: z.string().regex(/^\d+(\.\d+){0,2}$/, "must be an engine version like \"16\" or \"16.4\" (postgres) or \"8.0\" (mysql)"),
    instanceClass: z.string().regex(/^db\.[a-z0-9]+\.[a-z0-9]+$/, "must be an RDS instance class like db.t4g.medium"),
    multiAz: z.boolean().default(false),
    allocatedStorageGb: z.number().int().min(20).max(65536).default(20),
    /** Ceiling for RDS storage autoscaling. Default: five times allocatedStorageGb (at most 65536). */
    maxAllocatedStorageGb: z.number().int().max(65536).optional(),
    backupRetentionDays: z.number().int().min(1).max(35).default(7),
    /** A customer KMS key for the RDS-managed credentials secret; the execution role may decrypt with it. Default: `aws/secretsmanager`. */
    secretKmsKeyArn: z.string().regex(/^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key\/[0-9a-f-]{36}$/, "must be a KMS key ARN, arn:aws:kms:<region>:<account>:key/<key id>").optional(),
  })
  .superRefine((db, ctx) => {
    if (db.maxAllocatedStorageGb !== undefined && db.maxAllocatedStorageGb <= db.allocatedStorageGb) {
      ctx.addIssue({ code: "custom", path: ["maxAllocatedStorageGb"], message: `${db.maxAllocatedStorageGb} must be above allocatedStorageGb (${db.allocatedStorageGb}) for storage autoscaling` });
    }
    if (db.engine === "mysql" && !/^\d+\.\d+/.test(db.engineVersion)) {
      ctx.addIssue({ code: "custom", path: ["engineVersion"], message: `"${db.engineVersion}" is not a MySQL version; MySQL majors have two parts, like "8.0"` });
    }
  });

/** Who hears an alarm: an email address, an HTTPS endpoint, or an existing SNS topic (a pager, chat integration). */
export const alarmTargetSchema = z.union(
  [
    z.strictObject({ email: z.string().regex(/^[^\s@]+@[^\s@]+\.[^\s@]+$/, "must be an email address") }),
    z.strictObject({ https: z.string().regex(/^https:\/\/[^\s]+$/, "must be an https:// URL") }),
    z.strictObject({ topicArn: z.string().regex(/^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}$/, "must be an SNS topic ARN") }),
  ],
  { error: "must be { email: <address> }, { https: <url> } or { topicArn: <SNS topic ARN> }" },
);
export type AlarmTarget = z.infer<typeof alarmTargetSchema>;

export const alarmsSchema = z.strictObject({
  cpuHighPercent: z.number().min(1).max(100).default(80),
  http5xxPerMinute: z.number().int().min(1).default(10),
  /** Where alarms go. Required in production: an alarm nobody receives is no alarm. Email subscriptions must be confirmed by their owner. */
  notify: z.array(alarmTargetSchema).default([]),
});

const tagKey = z.string().regex(/^[A-Za-z0-9 _.:/=+@-]{1,128}$/, "must be a valid AWS tag key");
export const tagsSchema = z.record(tagKey, z.string().max(256)).default({});

/** Everything the Pulumi program needs, as written to stack config under `settings`. */
export const settingsSchema = z
  .strictObject({
    /** The environment (and stack) name. */
    environment: z.string().regex(/^[a-z][a-z0-9-]{0,39}$/),
    /** Production rules: HTTPS required, at least two tasks, multi-AZ database, deletion protection. */
    production: z.boolean().default(false),
    /** Deletion protection on the database and load balancer, final snapshots, no force-destroy of buckets. */
    deletionProtection: z.boolean().default(false),
    aws: z.strictObject({
      region: z.string().refine((r) => r in REGION_ZONES, { message: `must be one of the modelled regions: ${Object.keys(REGION_ZONES).join(", ")}` }),
      accountId: z.string().regex(/^\d{12}$/, "must be a 12-digit AWS account id (quote it in YAML)"),
    }),
    network: networkSchema,
    app: appSchema,
    database: databaseSchema.optional(),
    alarms: alarmsSchema.default({ cpuHighPercent: 80, http5xxPerMinute: 10, notify: [] }),
    tags: tagsSchema,
  })
  .superRefine((s, ctx) => {
    const zones = REGION_ZONES[s.aws.region];
    if (zones && s.network.availabilityZones > zones.length) {
      ctx.addIssue({ code: "custom", path: ["network", "availabilityZones"], message: `${s.aws.region} has ${zones.length} availability zones in the region model, ${s.network.availabilityZones} asked` });
    }
    // Load balancer and target group names are at most 32 characters, and Pulumi's auto-naming adds
    // a role and an 8-character suffix to `<app>-<env>`.
    const base = `${s.app.name}-${s.environment}`;
    if (base.length > 20) {
      ctx.addIssue({ code: "custom", path: ["app", "name"], message: `"${base}" (app name and environment) is ${base.length} characters; AWS load balancer names leave room for 20` });
    }
    if (s.app.certificateArn !== undefined) {
      const m = ACM_CERTIFICATE_ARN_RE.exec(s.app.certificateArn);
      if (s.app.domain === undefined) {
        ctx.addIssue({ code: "custom", path: ["app", "certificateArn"], message: "needs app.domain: a certificate cannot cover the load balancer's *.elb.amazonaws.com name, so HTTPS needs the environment's own name" });
      } else if (m && m[1] !== s.aws.region) {
        ctx.addIssue({ code: "custom", path: ["app", "certificateArn"], message: `is in ${m[1]}; a load balancer in ${s.aws.region} can only use a certificate from its own region` });
      } else if (m && m[2] !== s.aws.accountId) {
        ctx.addIssue({ code: "custom", path: ["app", "certificateArn"], message: `belongs to account ${m[2]}, not the environment's aws.accountId ${s.aws.accountId}` });
      }
    }
    if (s.database !== undefined) {
      // The program wires the database into the task itself (infra/service.ts DATABASE_ENVIRONMENT).
      for (const key of ["DATABASE_HOST", "DATABASE_PORT", "DATABASE_NAME", "DATABASE_USER", "DATABASE_PASSWORD"]) {
        for (const where of ["environment", "secrets"] as const) {
          if (key in s.app[where]) ctx.addIssue({ code: "custom", path: ["app", where, key], message: "is set by the deployer from the environment's database; remove it" });
        }
      }
      if ("DATABASE_URL" in s.app.secrets) {
        ctx.addIssue({ code: "custom", path: ["app", "secrets", "DATABASE_URL"], message: "cannot track this environment's database: the endpoint exists only after the database, and RDS rotates the password every 7 days. Remove it; the task gets DATABASE_HOST, DATABASE_PORT, DATABASE_NAME, DATABASE_USER and DATABASE_PASSWORD from the database and its managed secret" });
      }
    }
    for (const reserved of ["Environment", "Project", "ManagedBy"]) {
      if (reserved in s.tags) ctx.addIssue({ code: "custom", path: ["tags", reserved], message: "is set by the deployer and cannot be overridden" });
    }
  });

export type Settings = z.infer<typeof settingsSchema>;
export type SettingsInput = z.input<typeof settingsSchema>;
export type AppSettings = Settings["app"];
export type NetworkSettings = Settings["network"];
export type DatabaseSettings = NonNullable<Settings["database"]>;

/** What one deployment runs: the settings plus the version (image tag) and, when pinned, the digest. */
export interface ProgramConfig {
  readonly settings: Settings;
  readonly version: string;
  /** Pin the image by digest (rollback does this, so it never rebuilds). */
  readonly imageDigest?: string;
}

/** Reads and validates the stack config once. A bad value stops the program naming the key. */
export function readSettings(): ProgramConfig {
  // Required here, not at the top: the automation layer and the service import this file for its
  // schemas and must not pay for loading the Pulumi runtime.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { Config } = require("@pulumi/pulumi") as typeof pulumi;
  const cfg = new Config(PROJECT);
  const settings = settingsSchema.safeParse(cfg.requireObject("settings"));
  if (!settings.success) {
    const issue = settings.error.issues[0];
    throw new Error(`config ${CONFIG_KEYS.settings}.${issue.path.join(".")}: ${issue.message}`);
  }
  const version = versionSchema.safeParse(cfg.require("version"));
  if (!version.success) throw new Error(`config ${CONFIG_KEYS.version}: ${version.error.issues[0].message}`);
  const digest = cfg.get("imageDigest");
  if (digest !== undefined && !digestSchema.safeParse(digest).success) {
    throw new Error(`config ${CONFIG_KEYS.imageDigest}: must be an image digest like sha256:<64 hex>`);
  }
  return { settings: settings.data, version: version.data, imageDigest: digest };
}
