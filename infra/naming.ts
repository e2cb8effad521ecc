/**
 * Names, ARNs and argument errors, in one place. Every component is named `<app>-<env>` and names its
 * children `<app>-<env>-<role>`, so two stacks (or two instances in one stack) never collide, and a
 * child's name follows from its parent's alone. A child's role must never change once shipped: a
 * rename replaces the resource (add `aliases` when restructuring).
 */

/** The account and region a program deploys into; ARNs the program writes are built from it. */
export interface AwsTarget {
  readonly region: string;
  readonly accountId: string;
}

/** A secret the container reads at start: an SSM parameter path or a Secrets Manager ARN, never a value. */
export type SecretRef = { readonly ssm: string } | { readonly secretsManager: string };

const NAME_RE = /^[a-z][a-z0-9-]*[a-z0-9]$/;

/** `<app>-<env>`: the name every component of one deployment shares. */
export function baseName(app: string, environment: string): string {
  return `${app}-${environment}`;
}

/** `<component name>-<role>`, e.g. `web-prod-vpc`. */
export function childName(name: string, role: string): string {
  return `${name}-${role}`;
}

/** The zone's letter, used in subnet and NAT names: `us-east-1a` → `a`. */
export function zoneSuffix(zone: string): string {
  const m = /[a-z]$/.exec(zone);
  if (!m) throw new Error(`"${zone}" is not an availability zone name`);
  return m[0];
}

/** Thrown when a component is given arguments it cannot build from; names the component and argument. */
export class ComponentArgumentError extends Error {
  override readonly name = "ComponentArgumentError";
  constructor(component: string, instance: string, argument: string, reason: string) {
    super(`${component} "${instance}": \`${argument}\` ${reason}`);
  }
}

/** Checks a component's own name: children's names and some physical names are derived from it. */
export function checkName(component: string, name: string): void {
  if (!NAME_RE.test(name)) {
    throw new ComponentArgumentError(component, name, "name", "must be lowercase letters, digits and dashes, starting with a letter");
  }
}

/** `arn:aws:ssm:<region>:<account>:parameter/<path without the leading slash>`. */
export function ssmParameterArn(target: AwsTarget, path: string): string {
  return `arn:aws:ssm:${target.region}:${target.accountId}:parameter/${path.replace(/^\//, "")}`;
}

/** What ECS puts in a container's `secrets[].valueFrom`: the reference as written, JSON key included. */
export function secretValueFrom(target: AwsTarget, ref: SecretRef): string {
  return "ssm" in ref ? ssmParameterArn(target, ref.ssm) : ref.secretsManager;
}

/** A Secrets Manager reference as ECS reads `valueFrom`, taken apart. */
export interface SecretsManagerRef {
  /** `arn:…:secret:<name>` as written: complete (with the 6-character suffix) or partial. */
  readonly secretArn: string;
  readonly name: string;
  /** The JSON key ECS extracts, when the reference names one. */
  readonly jsonKey?: string;
  readonly versionStage?: string;
  readonly versionId?: string;
}

const SECRET_ARN_RE = /^(arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:)([A-Za-z0-9/_+=.@-]+)(?::(.*))?$/;

/**
 * Parses `arn:…:secret:<name>[:<json-key>:<version-stage>:<version-id>]`; a string is the reason it
 * is not one. ECS wants all three trailing fields once any is given (`…:password::`).
 */
export function parseSecretsManagerRef(ref: string): SecretsManagerRef | string {
  const m = SECRET_ARN_RE.exec(ref);
  if (!m) return "must be a Secrets Manager secret ARN, arn:aws:secretsmanager:<region>:<account>:secret:<name>";
  const [, prefix, name, rest] = m;
  if (rest === undefined) return { secretArn: prefix + name, name };
  const parts = rest.split(":");
  if (parts.length !== 3) return `"${rest}" after the secret name must be <json-key>:<version-stage>:<version-id> (empty fields allowed, as in ":password::")`;
  const [jsonKey, versionStage, versionId] = parts;
  if (versionStage !== "" && versionId !== "") return "names both a version stage and a version id; give at most one";
  return {
    secretArn: prefix + name,
    name,
    ...(jsonKey === "" ? {} : { jsonKey }),
    ...(versionStage === "" ? {} : { versionStage }),
    ...(versionId === "" ? {} : { versionId }),
  };
}

/**
 * The IAM resources that cover one secret: its ARN as written and the same with Secrets Manager's
 * random six-character suffix wildcarded. A complete ARN matches the first; a partial ARN (the name
 * without the suffix), which matches no real ARN, the second. A JSON key or version never belongs
 * in an IAM resource: `GetSecretValue` is authorized on the secret.
 */
export function secretGrantArns(ref: string): string[] {
  const parsed = parseSecretsManagerRef(ref);
  if (typeof parsed === "string") throw new Error(`secretsManager "${ref}" ${parsed}`);
  return [parsed.secretArn, `${parsed.secretArn}-??????`];
}

const ECR_IMAGE_RE = /^(\d{12})\.dkr\.ecr\.([a-z0-9-]+)\.amazonaws\.com\/(.+)$/;

/** The repository ARN of an ECR image reference (`<acct>.dkr.ecr.<region>.amazonaws.com/<repo>`), else undefined. */
export function ecrRepositoryArn(image: string): string | undefined {
  const m = ECR_IMAGE_RE.exec(image);
  return m ? `arn:aws:ecr:${m[2]}:${m[1]}:repository/${m[3]}` : undefined;
}
