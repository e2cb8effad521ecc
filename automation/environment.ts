/**
 * Environment files: `environments/<stack>.yaml`, validated against one schema. Every refusal names
 * the file, the field path and the reason, and nothing runs. The program's part (`settings`) is the
 * schema from infra/config.ts; this file adds what only the automation layer uses: engine, backend,
 * secrets provider and the deploy rules.
 *
 * Each file stands alone: loading one reads that file only, so a bad file makes its own stack
 * invalid and nothing else. What concerns two files (VPC ranges that overlap in one account) is not a
 * load error but a finding of the review gate (`cidrOverlaps`, operations/gates.ts), so a deployment
 * of either stack stops naming both files while the other stacks keep running.
 */
import { existsSync, readdirSync, readFileSync, realpathSync, statSync } from "fs";
import * as path from "path";
import { parse as parseYaml, YAMLParseError } from "yaml";
import { z } from "zod";
import { cidrsOverlap, parseCidr } from "../infra/cidr";
import { REPO_ROOT } from "../infra/repo-root";
import {
  alarmsSchema,
  appSchema,
  databaseSchema,
  networkSchema,
  settingsSchema,
  tagsSchema,
  type Settings,
} from "../infra/config";
import { ConfigError, NotFoundError } from "./errors";
import { typeIssueMessage } from "./zod-issues";

/** Stack names that may be looked up; anything else is refused before the file system is touched. */
export const STACK_NAME_RE = /^[a-z][a-z0-9-]{0,39}$/;

export const SEVERITIES = ["INFORMATIONAL", "LOW", "MEDIUM", "HIGH", "CRITICAL"] as const;
export type Severity = (typeof SEVERITIES)[number];

const CRON_FIELD = /^(\*|\d+(-\d+)?)(\/\d+)?(,(\*|\d+(-\d+)?)(\/\d+)?)*$/;

export const deploySchema = z.strictObject({
  approvals: z
    .strictObject({
      /** Approvals from principals other than the requester before an up runs (prod: 2). */
      required: z.number().int().min(0).max(10).default(0),
      /** An approval wait ends as rejected after this long. */
      expiresHours: z.number().positive().max(24 * 14).default(24),
      /** Principals (token or OS user names) allowed to bypass approvals with `--yes` on the CLI. */
      bypass: z.array(z.string().min(1)).default([]),
    })
    .default({ required: 0, expiresHours: 24, bypass: [] }),
  /** Resource types that are never deleted or replaced unless the URN is named with --allow-destroy. */
  protect: z.array(z.string().regex(/^[a-zA-Z0-9-]+:[a-zA-Z0-9/-]+:[A-Za-z0-9]+$/, "must be a Pulumi type token like aws:rds/instance:Instance")).default([]),
  /** Image scan findings at or above this severity stop a deployment before the service changes. */
  maxScanSeverity: z.enum(SEVERITIES).default("HIGH"),
  smokeTests: z
    .array(
      z.strictObject({
        path: z.string().regex(/^\/[^\s]*$/, "must be an absolute URL path"),
        expectStatus: z.number().int().min(100).max(599).default(200),
        expectBodyContains: z.string().optional(),
      }),
    )
    .default([]),
  /** Redeploy the previous good deployment when verification fails. */
  autoRollback: z.boolean().default(false),
  /** Cron (5 fields, UTC) for scheduled drift checks. */
  driftSchedule: z
    .string()
    .refine((s) => {
      const f = s.trim().split(/\s+/);
      return f.length === 5 && f.every((x) => CRON_FIELD.test(x));
    }, "must be a 5-field cron expression like \"0 */6 * * *\"")
    .optional(),
  timeoutMinutes: z.number().int().min(1).max(24 * 60).default(60),
  /**
   * Whether an image whose scan result is unavailable (the scan failed, timed out, or the image is not
   * in ECR) may be deployed. In production such an image stops the deployment unless this is true,
   * and there `allowUnscannedImagesReason` must say why.
   */
  allowUnscannedImages: z.boolean().default(false),
  /** Why unscanned images are allowed: shown to the job, the audit trail and approvers. */
  allowUnscannedImagesReason: z.string().trim().min(1, "must say why unscanned images may be deployed").max(500).optional(),
  /** Review bounds: a preview above any of these stops the deployment. */
  bounds: z
    .strictObject({
      maxCreates: z.number().int().min(0).optional(),
      maxUpdates: z.number().int().min(0).optional(),
      maxDeletes: z.number().int().min(0).optional(),
      maxReplaces: z.number().int().min(0).optional(),
    })
    .default({}),
});

export type DeployRules = z.infer<typeof deploySchema>;

/** The file's shape. Settings' refinements (Fargate sizes, zones…) run again on the assembled settings. */
export const environmentFileSchema = z.strictObject({
  engine: z.enum(["pulumi", "offline"]),
  /** The directory with the Pulumi.yaml to run, relative to the repository root (default: the root, whose program is infra/). */
  program: z.string().min(1).max(256).optional(),
  /** Where Pulumi keeps state: file://<path> (relative paths from the repository root) or s3://bucket[/prefix][?region=]. */
  backend: z.string().regex(/^(file:\/\/.+|s3:\/\/[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](\/[^?\s]*)?(\?[^\s]*)?)$/, "must be file://<path> or s3://<bucket>[/prefix][?region=…]"),
  /** passphrase (PULUMI_CONFIG_PASSPHRASE from the environment) or awskms://<key>?region=<region>. */
  secretsProvider: z.string().regex(/^(passphrase|awskms:\/\/\S+)$/, "must be passphrase or awskms://<key id or alias>?region=<region>"),
  production: z.boolean().default(false),
  deletionProtection: z.boolean().default(false),
  aws: z.strictObject({ region: z.string(), accountId: z.string() }),
  network: networkSchema,
  app: appSchema,
  database: databaseSchema.optional(),
  alarms: alarmsSchema.optional(),
  deploy: deploySchema.default(deploySchema.parse({})),
  tags: tagsSchema,
});

export interface Environment {
  /** The stack name; also the file's base name. */
  readonly name: string;
  readonly file: string;
  readonly engine: "pulumi" | "offline";
  readonly backend: string;
  readonly secretsProvider: string;
  /** The absolute directory of the program's Pulumi.yaml, when the file names one; else the repository root's program. */
  readonly program?: string;
  readonly deploy: DeployRules;
  /** What the program receives (infra/config.ts). */
  readonly settings: Settings;
  /** The directory the file was loaded from, whose siblings the overlap gate compares it with. */
  readonly envDir?: string;
}

/** Another environment of the same account whose VPC range overlaps this one's. */
export interface CidrOverlap {
  readonly stack: string;
  readonly file: string;
  readonly cidr: string;
  readonly accountId: string;
}

export interface LoadOptions {
  /** Directory of environment files; default `environments/` under the repository root. */
  readonly envDir?: string;
}

export { REPO_ROOT };
export const DEFAULT_ENV_DIR = path.join(REPO_ROOT, "environments");

function envDirOf(options?: LoadOptions): string {
  return path.resolve(options?.envDir ?? DEFAULT_ENV_DIR);
}

function fail(file: string, fieldPath: readonly PropertyKey[], reason: string): never {
  const field = fieldPath.length ? fieldPath.map(String).join(".") : "(file)";
  throw new ConfigError(`${file}: ${field}: ${reason}`, { details: { file, field, reason } });
}

/** Stack names with a file in the directory, sorted. */
export function listEnvironments(options?: LoadOptions): string[] {
  const dir = envDirOf(options);
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((f) => f.endsWith(".yaml"))
    .map((f) => f.slice(0, -".yaml".length))
    .filter((n) => STACK_NAME_RE.test(n))
    .sort();
}

/** Checks a stack name before it goes anywhere near the file system. */
export function assertStackName(stack: string): void {
  if (!STACK_NAME_RE.test(stack)) {
    throw new ConfigError(`stack: "${truncate(stack)}" is not a stack name (lowercase letters, digits and dashes, starting with a letter, at most 40 characters)`, {
      details: { field: "stack" },
    });
  }
}

function truncate(s: string): string {
  const printable = s.replace(/[^\x20-\x7e]/g, "?");
  return printable.length > 60 ? `${printable.slice(0, 60)}…` : printable;
}

/** `file` as shown in messages: relative to the working directory when below it. */
function displayPath(file: string): string {
  const relative = path.relative(process.cwd(), file);
  return relative.startsWith("..") ? file : relative;
}

/** Loads and validates `<envDir>/<stack>.yaml`; only that file is read. */
export function loadEnvironment(stack: string, options?: LoadOptions): Environment {
  assertStackName(stack);
  const dir = envDirOf(options);
  const file = path.join(dir, `${stack}.yaml`);
  const display = displayPath(file);
  // Remember the result until the file changes: the key is its size and modification time, so an
  // edit is seen at once. One stat per load when nothing changed.
  let key: string;
  let text: string;
  try {
    const st = statSync(file);
    key = `${st.size}:${st.mtimeMs}`;
    const cached = loaded.get(file);
    if (cached && cached.key === key && cached.display === display) return cached.env;
    text = readFileSync(file, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") {
      const known = listEnvironments(options);
      throw new NotFoundError(`stack "${stack}" has no environment file ${display}${known.length ? ` (known: ${known.join(", ")})` : ""}`, { details: { field: "stack" } });
    }
    fail(display, [], `cannot be read: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
  const env = parseEnvironment(stack, text, display, dir);
  loaded.set(file, { key, display, env });
  return env;
}

const loaded = new Map<string, { key: string; display: string; env: Environment }>();

/** Validates YAML text as the environment `stack`. `envDir`, when given, is where its siblings are (the overlap gate). */
export function parseEnvironment(stack: string, text: string, display: string, envDir?: string): Environment {
  let raw: unknown;
  try {
    raw = parseYaml(text, { uniqueKeys: true });
  } catch (err) {
    const reason = err instanceof YAMLParseError ? err.message.split("\n")[0] : String(err);
    fail(display, [], `is not valid YAML: ${reason}`);
  }
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) fail(display, [], "must be a YAML mapping");

  const parsed = environmentFileSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    fail(display, issue.path, issueMessage(issue, raw));
  }
  const f = parsed.data;
  const settingsInput = {
    environment: stack,
    production: f.production,
    deletionProtection: f.deletionProtection,
    aws: f.aws,
    network: f.network,
    app: f.app,
    database: f.database,
    alarms: f.alarms,
    tags: f.tags,
  };
  const settingsResult = settingsSchema.safeParse(settingsInput);
  if (!settingsResult.success) {
    const issue = settingsResult.error.issues[0];
    fail(display, issue.path, issueMessage(issue, settingsInput));
  }
  const settings = settingsResult.data;
  const program = f.program === undefined ? undefined : programDir(display, f.program);
  checkProductionRules(display, settings, f.deploy);
  return {
    name: stack,
    file: display,
    engine: f.engine,
    backend: f.backend,
    secretsProvider: f.secretsProvider,
    ...(program !== undefined ? { program } : {}),
    deploy: f.deploy,
    settings,
    ...(envDir !== undefined ? { envDir: path.resolve(envDir) } : {}),
  };
}

/**
 * `program`: a directory inside the repository (relative to its root, symbolic links resolved)
 * that holds a Pulumi.yaml. Programs are code the repository reviews; nothing outside it runs.
 */
function programDir(display: string, value: string): string {
  if (path.isAbsolute(value) || /[\0\\]/.test(value)) fail(display, ["program"], "must be a path relative to the repository root");
  const root = realpathSync(REPO_ROOT);
  const joined = path.resolve(root, value);
  if (!existsSync(joined) || !statSync(joined).isDirectory()) fail(display, ["program"], `${value} is not a directory of the repository`);
  const real = realpathSync(joined);
  const rel = path.relative(root, real);
  if (rel.startsWith("..") || path.isAbsolute(rel) || rel.split(path.sep).includes("node_modules")) {
    fail(display, ["program"], `${value} lies outside the repository (programs must be directories of the repository, outside node_modules)`);
  }
  if (!existsSync(path.join(real, "Pulumi.yaml"))) fail(display, ["program"], `${value} holds no Pulumi.yaml`);
  return real;
}

/** The module a program directory's Pulumi.yaml runs (`main`, default the directory itself). */
export function programEntry(dir: string): string {
  let main: unknown;
  try {
    main = (parseYaml(readFileSync(path.join(dir, "Pulumi.yaml"), "utf8")) as { main?: unknown } | null)?.main;
  } catch {
    main = undefined;
  }
  return path.resolve(dir, typeof main === "string" && main !== "" ? main : ".");
}

function issueMessage(issue: z.core.$ZodIssue, root: unknown): string {
  if (issue.code === "unrecognized_keys") return `unknown key${issue.keys.length > 1 ? "s" : ""} ${issue.keys.map((k) => `"${k}"`).join(", ")}`;
  const typed = typeIssueMessage(issue, root);
  if (typed === "is required") return `is required (${String((issue as { expected?: unknown }).expected)})`;
  if (typed !== undefined) return typed;
  return issue.message;
}

/** Production rules a file can break on its own; the policy rules check the evaluated program too. */
function checkProductionRules(display: string, s: Settings, deploy: DeployRules): void {
  if (!s.production) return;
  if (deploy.allowUnscannedImages && deploy.allowUnscannedImagesReason === undefined) {
    fail(display, ["deploy", "allowUnscannedImagesReason"], "is required in production when deploy.allowUnscannedImages is true: say why unscanned images may be deployed");
  }
  if (s.alarms.notify.length === 0) fail(display, ["alarms", "notify"], "is required in production: the alarms would notify no one (give { email }, { https } or { topicArn } entries)");
  if (s.app.domain === undefined) fail(display, ["app", "domain"], "is required in production: the service serves HTTPS only, on its own name (give { name, hostedZoneId })");
  if (s.app.desiredCount < 2) fail(display, ["app", "desiredCount"], `is ${s.app.desiredCount}; production runs at least 2 tasks`);
  if (s.app.autoscaling.min < 2) fail(display, ["app", "autoscaling", "min"], `is ${s.app.autoscaling.min}; production runs at least 2 tasks`);
  if (s.database && !s.database.multiAz) fail(display, ["database", "multiAz"], "must be true in production");
  if (!s.deletionProtection) fail(display, ["deletionProtection"], "must be true in production");
}

/**
 * VPCs of environments in the same account must not overlap: they are peered and routed together.
 * The other files of `env`'s directory whose `network.cidr` overlaps `env`'s in the same account. A
 * sibling that does not parse is skipped: its own load reports its problems.
 */
export function cidrOverlaps(env: Environment): CidrOverlap[] {
  if (env.envDir === undefined) return [];
  const mine = parseCidr(env.settings.network.cidr);
  if (typeof mine === "string") return [];
  const found: CidrOverlap[] = [];
  for (const other of listEnvironments({ envDir: env.envDir })) {
    if (other === env.name) continue;
    const file = path.join(env.envDir, `${other}.yaml`);
    const network = networkOf(file);
    if (network === undefined || network.accountId !== env.settings.aws.accountId) continue;
    const theirs = parseCidr(network.cidr);
    if (typeof theirs === "string") continue;
    if (cidrsOverlap(mine, theirs)) found.push({ stack: other, file: displayPath(file), cidr: network.cidr, accountId: env.settings.aws.accountId });
  }
  return found;
}

/**
 * Another environment file's network CIDR and account, read leniently (a file that does not load is
 * its own stack's problem); remembered until the file changes, as loadEnvironment does, since every
 * deployment compares its CIDR with every other stack's.
 */
function networkOf(file: string): { cidr: string; accountId: string } | undefined {
  let key: string;
  try {
    const st = statSync(file);
    key = `${st.size}:${st.mtimeMs}`;
  } catch {
    return undefined;
  }
  const cached = networks.get(file);
  if (cached?.key === key) return cached.network;
  let network: { cidr: string; accountId: string } | undefined;
  try {
    const doc = parseYaml(readFileSync(file, "utf8")) as { network?: { cidr?: unknown }; aws?: { accountId?: unknown } } | null;
    const cidr = doc?.network?.cidr;
    network = typeof cidr === "string" ? { cidr, accountId: String(doc?.aws?.accountId) } : undefined;
  } catch {
    network = undefined;
  }
  networks.set(file, { key, network });
  return network;
}

const networks = new Map<string, { key: string; network: { cidr: string; accountId: string } | undefined }>();
