/**
 * What every review rule is built from: the shapes rules read and return, the resource type tokens
 * they look at, \`perResource\` (one body per concern, applied to each resource of its types, failing
 * closed on a resource it cannot read) and small readers over untyped inputs.
 */
export interface PolicyResource {
  readonly urn: string;
  readonly type: string;
  readonly name: string;
  readonly parent?: string;
  readonly id?: string;
  readonly inputs: Record<string, unknown>;
  /** The `retainOnDelete` resource option: destroy leaves the resource in the cloud. */
  readonly retainOnDelete?: boolean;
}

export interface PolicyContext {
  readonly environment: string;
  readonly production: boolean;
  /** tags every taggable resource must carry, key → value */
  readonly requiredTags: Readonly<Record<string, string>>;
}

export type Severity = "mandatory" | "advisory";

export interface Violation {
  readonly rule: string;
  readonly severity: Severity;
  /** the offending resource's URN */
  readonly resource: string;
  readonly message: string;
}

export interface PolicyRule {
  readonly name: string;
  readonly description: string;
  readonly severity: Severity;
  check(resources: readonly PolicyResource[], context: PolicyContext): Violation[];
}

/** Resource type tokens the rules look at. */
export const TYPES = {
  securityGroup: "aws:ec2/securityGroup:SecurityGroup",
  ingressRule: "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule",
  legacySecurityGroupRule: "aws:ec2/securityGroupRule:SecurityGroupRule",
  loadBalancer: "aws:lb/loadBalancer:LoadBalancer",
  targetGroup: "aws:lb/targetGroup:TargetGroup",
  listener: "aws:lb/listener:Listener",
  metricAlarm: "aws:cloudwatch/metricAlarm:MetricAlarm",
  snsTopic: "aws:sns/topic:Topic",
  snsSubscription: "aws:sns/topicSubscription:TopicSubscription",
  route53Record: "aws:route53/record:Record",
  ecrRepository: "aws:ecr/repository:Repository",
  dockerImage: "docker:index/image:Image",
  taskDefinition: "aws:ecs/taskDefinition:TaskDefinition",
  ecsService: "aws:ecs/service:Service",
  logGroup: "aws:cloudwatch/logGroup:LogGroup",
  bucket: "aws:s3/bucket:Bucket",
  bucketEncryption: "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
  bucketEncryptionV2: "aws:s3/bucketServerSideEncryptionConfigurationV2:BucketServerSideEncryptionConfigurationV2",
  bucketPolicy: "aws:s3/bucketPolicy:BucketPolicy",
  rdsInstance: "aws:rds/instance:Instance",
  iamRole: "aws:iam/role:Role",
  iamRolePolicy: "aws:iam/rolePolicy:RolePolicy",
  iamPolicy: "aws:iam/policy:Policy",
  iamUserPolicy: "aws:iam/userPolicy:UserPolicy",
  iamGroupPolicy: "aws:iam/groupPolicy:GroupPolicy",
} as const;

/**
 * What a rule body returns for one resource: the messages of its violations (empty when compliant).
 * The rule name, severity and URN are added by `perResource`, so bodies stay one concern each.
 */
export type ResourceCheck = (resource: PolicyResource, context: PolicyContext, all: readonly PolicyResource[]) => string[];

interface RuleSpec {
  readonly name: string;
  readonly description: string;
  readonly severity?: Severity;
  /** the rule runs only on resources of these types */
  readonly types: ReadonlySet<string> | readonly string[];
  /** the rule runs only when this holds (production-only rules) */
  readonly when?: (context: PolicyContext) => boolean;
  readonly check: ResourceCheck;
}

export function perResource(spec: RuleSpec): PolicyRule {
  const severity = spec.severity ?? "mandatory";
  const types = spec.types instanceof Set ? spec.types : new Set(spec.types as readonly string[]);
  return {
    name: spec.name,
    description: spec.description,
    severity,
    check(resources, context) {
      if (spec.when && !spec.when(context)) return [];
      const out: Violation[] = [];
      for (const r of resources) {
        if (!types.has(r.type)) continue;
        let messages: string[];
        try {
          messages = spec.check(r, context, resources);
        } catch (err) {
          // Fail closed: a resource a rule cannot read is a resource nobody reviewed.
          messages = [`${r.name} could not be checked (${err instanceof Error ? err.message : String(err)}); fix its inputs so the rule can read them`];
        }
        for (const message of messages) out.push({ rule: spec.name, severity, resource: r.urn, message });
      }
      return out;
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Small readers over untyped inputs

export function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

export function asArray(v: unknown): unknown[] {
  if (v === undefined || v === null) return [];
  return Array.isArray(v) ? v : [v];
}

export function strings(v: unknown): string[] {
  return asArray(v).filter((x): x is string => typeof x === "string");
}

export function isPositiveNumber(v: unknown): boolean {
  return typeof v === "number" && Number.isFinite(v) && v > 0;
}

export function quote(v: unknown): string {
  return v === undefined ? "unset" : JSON.stringify(v);
}

export function list(items: readonly string[]): string {
  return items.join(", ");
}
