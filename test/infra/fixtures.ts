/**
 * Settings fixtures for the infra tests, and a shared evaluation cache: the program is evaluated
 * under mocks once per fixture per process (about half a second each) and every spec file reads
 * the same result. Evaluations are serialized, since the Pulumi runtime state is process-global.
 */
import { evaluateProgram, type EvaluatedResource, type Evaluation } from "../../automation/program/evaluate";
import { settingsSchema, type ProgramConfig, type SettingsInput } from "../../infra/config";

export const ACCOUNT = "123456789012";
export const REGION = "us-east-1";
export const CERTIFICATE_ARN = `arn:aws:acm:${REGION}:${ACCOUNT}:certificate/0b0e6f5d-2c1a-4a43-9d1e-4f6a1c2b3d4e`;
export const STRIPE_SECRET_ARN = `arn:aws:secretsmanager:${REGION}:${ACCOUNT}:secret:prod/web/stripe-AbCdEf`;
export const DOMAIN = "web.example.com";
export const HOSTED_ZONE_ID = "Z0123456789ABCDEFGHIJ";
export const PAGER_TOPIC_ARN = `arn:aws:sns:${REGION}:${ACCOUNT}:pagerduty-platform`;
export const DIGEST = `sha256:${"ab".repeat(32)}`;

/** A development environment: two zones, one NAT, one task, no database, plain HTTP. */
export const devInput: SettingsInput = {
  environment: "dev",
  aws: { region: REGION, accountId: ACCOUNT },
  network: { cidr: "10.20.0.0/16", availabilityZones: 2, natGateways: "single", flowLogRetentionDays: 14 },
  app: {
    name: "web",
    build: { context: "examples/app" },
    port: 8080,
    cpu: 256,
    memory: 512,
    desiredCount: 1,
    autoscaling: { min: 1, max: 2, cpuTarget: 70 },
    healthCheck: { path: "/health" },
    environment: { LOG_LEVEL: "debug" },
    secrets: { API_TOKEN: { ssm: "/dev/web/api-token" } },
    logRetentionDays: 7,
    keepImages: 10,
  },
  alarms: { cpuHighPercent: 90, http5xxPerMinute: 20 },
  tags: { CostCenter: "1234", Owner: "platform" },
};

/** A production environment: three zones, a NAT each, three tasks, a multi-AZ database, HTTPS, protected. */
export const prodInput: SettingsInput = {
  environment: "prod",
  production: true,
  deletionProtection: true,
  aws: { region: REGION, accountId: ACCOUNT },
  network: { cidr: "10.40.0.0/16", availabilityZones: 3, natGateways: "one-per-az" },
  app: {
    name: "web",
    build: { context: "examples/app" },
    port: 8080,
    cpu: 512,
    memory: 1024,
    desiredCount: 3,
    autoscaling: { min: 3, max: 10, cpuTarget: 60 },
    healthCheck: { path: "/health", intervalSeconds: 15 },
    environment: { LOG_LEVEL: "info" },
    secrets: { SESSION_SECRET: { ssm: "/prod/web/session-secret" }, STRIPE_KEY: { secretsManager: STRIPE_SECRET_ARN } },
    domain: { name: DOMAIN, hostedZoneId: HOSTED_ZONE_ID },
    certificateArn: CERTIFICATE_ARN,
    logRetentionDays: 90,
  },
  database: { engine: "postgres", engineVersion: "16", instanceClass: "db.t4g.medium", multiAz: true, backupRetentionDays: 14 },
  alarms: { cpuHighPercent: 80, http5xxPerMinute: 10, notify: [{ email: "oncall@example.com" }, { topicArn: PAGER_TOPIC_ARN }] },
  tags: { CostCenter: "5678", Owner: "platform" },
};

/** A deep copy of `base` changed by `change`, so fixtures are never mutated between tests. */
export function variant(base: SettingsInput, change: (s: SettingsInput) => void): SettingsInput {
  const copy = structuredClone(base);
  change(copy);
  return copy;
}

export function programConfig(input: SettingsInput, extra: { version?: string; imageDigest?: string } = {}): ProgramConfig {
  return { settings: settingsSchema.parse(input), version: extra.version ?? "1.0.0", imageDigest: extra.imageDigest };
}

let queue: Promise<unknown> = Promise.resolve();

/** Runs `evaluateProgram` after every evaluation already started has finished. */
export function evaluateSerially(config: ProgramConfig, program?: Parameters<typeof evaluateProgram>[1], options?: Parameters<typeof evaluateProgram>[2]): Promise<Evaluation> {
  const run = queue.then(() => evaluateProgram(config, program, options));
  queue = run.catch(() => undefined);
  return run;
}

const cache = new Map<string, Promise<Evaluation>>();

/** The evaluation of a named fixture, computed once per process. */
export function evaluated(key: string, make: () => ProgramConfig): Promise<Evaluation> {
  let hit = cache.get(key);
  if (hit === undefined) {
    hit = evaluateSerially(make());
    cache.set(key, hit);
  }
  return hit;
}

export const evaluateDev = () => evaluated("dev", () => programConfig(devInput));
export const evaluateProd = () => evaluated("prod", () => programConfig(prodInput));

export function ofType(ev: Evaluation, type: string): EvaluatedResource[] {
  return ev.resources.filter((r) => r.type === type);
}

/** The one resource of `type` named `name`; fails loudly when there is none. */
export function named(ev: Evaluation, type: string, name: string): EvaluatedResource {
  const found = ev.resources.find((r) => r.type === type && r.name === name);
  if (found === undefined) {
    const names = ofType(ev, type).map((r) => r.name);
    throw new Error(`no ${type} named ${name} (have: ${names.join(", ") || "none"})`);
  }
  return found;
}

/** The resource whose (mocked) id is `id`. */
export function byId(ev: Evaluation, id: unknown): EvaluatedResource {
  const found = ev.resources.find((r) => r.custom && r.id === id);
  if (found === undefined) throw new Error(`no resource with id ${String(id)}`);
  return found;
}

export function input<T = unknown>(r: EvaluatedResource, key: string): T {
  return r.inputs[key] as T;
}

export function output<T = unknown>(r: EvaluatedResource, key: string): T {
  return r.outputs[key] as T;
}

export interface Statement {
  Sid?: string;
  Effect: string;
  Principal?: unknown;
  Action: string | string[];
  Resource?: string | string[];
  Condition?: Record<string, Record<string, unknown>>;
}

/** The statements of a JSON policy document held in an input. */
export function statements(r: EvaluatedResource, key: string): Statement[] {
  const doc = JSON.parse(input<string>(r, key)) as { Statement: Statement[] };
  return doc.Statement;
}

export const list = (v: string | string[] | undefined): string[] => (v === undefined ? [] : Array.isArray(v) ? v : [v]);
