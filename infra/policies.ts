/**
 * The deployment procedure's review rules as code. Pure functions over the resources a program
 * registered (evaluated under Pulumi's mock runtime, so every input is a resolved plain JSON value
 * with @pulumi/aws v7's camelCase input names). Nothing here touches the Pulumi runtime, so the same
 * rules can later back a Pulumi policy pack: each rule is a small function from one resource (plus
 * the context and the whole list, for rules that look across resources) to the problems it finds.
 */
import { LOG_RETENTION_DAYS } from "./config";
import { TAGGABLE_TYPES } from "./taggable";

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
const TYPES = {
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
type ResourceCheck = (resource: PolicyResource, context: PolicyContext, all: readonly PolicyResource[]) => string[];

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

function perResource(spec: RuleSpec): PolicyRule {
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

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function asArray(v: unknown): unknown[] {
  if (v === undefined || v === null) return [];
  return Array.isArray(v) ? v : [v];
}

function strings(v: unknown): string[] {
  return asArray(v).filter((x): x is string => typeof x === "string");
}

function isPositiveNumber(v: unknown): boolean {
  return typeof v === "number" && Number.isFinite(v) && v > 0;
}

function quote(v: unknown): string {
  return v === undefined ? "unset" : JSON.stringify(v);
}

function list(items: readonly string[]): string {
  return items.join(", ");
}

// ---------------------------------------------------------------------------------------------
// required-tags

const requiredTags: ResourceCheck = (r, context) => {
  const tags = isRecord(r.inputs.tags) ? r.inputs.tags : {};
  const missing: string[] = [];
  const wrong: string[] = [];
  for (const [key, expected] of Object.entries(context.requiredTags)) {
    if (!(key in tags) || tags[key] === undefined) missing.push(key);
    else if (tags[key] !== expected) wrong.push(`${key}=${quote(tags[key])} (expected ${quote(expected)})`);
  }
  const problems: string[] = [];
  if (missing.length > 0) problems.push(`is missing tag${missing.length > 1 ? "s" : ""} ${list(missing)}`);
  if (wrong.length > 0) problems.push(`has ${list(wrong)}`);
  if (problems.length === 0) return [];
  return [`${r.name} ${problems.join(" and ")}; the program's applyDefaultTags (infra/tags.ts) adds them to every taggable type, so call it before any resource is created and make sure the type is in TAGGABLE_TYPES`];
};

// ---------------------------------------------------------------------------------------------
// no-open-ingress

const HTTP_PORTS = new Set([80, 443]);

/** `/0` is every address, whatever the address part says ("0.0.0.0/0", "::/0"). */
function isWorldCidr(cidr: string): boolean {
  return /\/0+$/.test(cidr.trim());
}

interface Ingress {
  readonly protocol: string; // normalized: "all", "tcp", or whatever else was written
  readonly fromPort?: number;
  readonly toPort?: number;
  readonly cidrs: readonly string[];
}

function normalizeProtocol(p: unknown): string {
  const s = String(p ?? "").trim().toLowerCase();
  if (s === "-1" || s === "all") return "all";
  if (s === "6") return "tcp";
  return s;
}

function portText(rule: Ingress): string {
  if (rule.protocol === "all") return "all ports and protocols";
  const proto = rule.protocol === "tcp" ? "" : `${rule.protocol || "unknown protocol"} `;
  if (typeof rule.fromPort !== "number" || typeof rule.toPort !== "number") return `${proto}all ports`;
  if (rule.fromPort === rule.toPort) return `${proto}port ${rule.fromPort}`;
  return `${proto}ports ${rule.fromPort}-${rule.toPort}`;
}

/** Only a single TCP port, 80 or 443, may face the internet. */
function isHttpOnly(rule: Ingress): boolean {
  return rule.protocol === "tcp" && rule.fromPort === rule.toPort && typeof rule.fromPort === "number" && HTTP_PORTS.has(rule.fromPort);
}

function loadBalancerSecurityGroupIds(all: readonly PolicyResource[]): Set<string> {
  const ids = new Set<string>();
  for (const r of all) if (r.type === TYPES.loadBalancer) for (const id of strings(r.inputs.securityGroups)) ids.add(id);
  return ids;
}

function findSecurityGroup(id: unknown, all: readonly PolicyResource[]): PolicyResource | undefined {
  if (typeof id !== "string") return undefined;
  return all.find((r) => r.type === TYPES.securityGroup && r.id === id);
}

function openIngressMessages(subject: string, sg: PolicyResource | undefined, rules: readonly Ingress[], all: readonly PolicyResource[]): string[] {
  const attached = sg?.id !== undefined && loadBalancerSecurityGroupIds(all).has(sg.id);
  const out: string[] = [];
  for (const rule of rules) {
    for (const cidr of rule.cidrs.filter(isWorldCidr)) {
      if (attached && isHttpOnly(rule)) continue;
      const why = attached
        ? "a load balancer's security group may be open to the internet only on TCP 80 and 443, one port per rule"
        : `${sg ? `security group ${sg.name}` : "its security group"} is not attached to a load balancer; only the load balancer may be open, on TCP 80/443 — reach this group from the load balancer's security group (referencedSecurityGroupId) instead`;
      out.push(`${subject} ingress allows ${cidr} on ${portText(rule)}; ${why}`);
    }
  }
  return out;
}

const noOpenIngress: ResourceCheck = (r, _context, all) => {
  const i = r.inputs;
  if (r.type === TYPES.ingressRule) {
    const rule: Ingress = {
      protocol: normalizeProtocol(i.ipProtocol),
      fromPort: typeof i.fromPort === "number" ? i.fromPort : undefined,
      toPort: typeof i.toPort === "number" ? i.toPort : undefined,
      cidrs: [...strings(i.cidrIpv4), ...strings(i.cidrIpv6)],
    };
    const sg = findSecurityGroup(i.securityGroupId, all);
    return openIngressMessages(sg ? `${r.name} (on ${sg.name})` : r.name, sg, [rule], all);
  }
  if (r.type === TYPES.legacySecurityGroupRule) {
    if (i.type !== "ingress") return [];
    const rule: Ingress = {
      protocol: normalizeProtocol(i.protocol),
      fromPort: typeof i.fromPort === "number" ? i.fromPort : undefined,
      toPort: typeof i.toPort === "number" ? i.toPort : undefined,
      cidrs: [...strings(i.cidrBlocks), ...strings(i.ipv6CidrBlocks)],
    };
    const sg = findSecurityGroup(i.securityGroupId, all);
    return openIngressMessages(sg ? `${r.name} (on ${sg.name})` : r.name, sg, [rule], all);
  }
  // aws:ec2/securityGroup:SecurityGroup with inline `ingress` blocks
  const rules: Ingress[] = asArray(i.ingress)
    .filter(isRecord)
    .map((b) => ({
      protocol: normalizeProtocol(b.protocol),
      fromPort: typeof b.fromPort === "number" ? b.fromPort : undefined,
      toPort: typeof b.toPort === "number" ? b.toPort : undefined,
      cidrs: [...strings(b.cidrBlocks), ...strings(b.ipv6CidrBlocks)],
    }));
  return openIngressMessages(r.name, r, rules, all);
};

// ---------------------------------------------------------------------------------------------
// ecr-scan-and-immutable

const ecrScanAndImmutable: ResourceCheck = (r) => {
  const out: string[] = [];
  const scanning = r.inputs.imageScanningConfiguration;
  if (!(isRecord(scanning) && scanning.scanOnPush === true)) {
    out.push(`${r.name} does not scan images on push; set imageScanningConfiguration: { scanOnPush: true } so findings can stop a deployment`);
  }
  if (r.inputs.imageTagMutability !== "IMMUTABLE") {
    out.push(`${r.name} has imageTagMutability ${quote(r.inputs.imageTagMutability)}; set it to "IMMUTABLE" so a deployed version's tag can never point at a different image`);
  }
  return out;
};

// ---------------------------------------------------------------------------------------------
// no-latest-tag

const DIGEST_RE = /^sha256:[a-f0-9]{64}$/;

/**
 * Why an image reference is not pinned, or undefined when it is. A tag is whatever follows the last
 * ":" of the last path segment, so a registry port (`host:5000/repo`) is not mistaken for one.
 */
function imageReferenceProblem(ref: unknown): string | undefined {
  if (typeof ref !== "string" || ref.trim() === "") return "has no image reference";
  const at = ref.indexOf("@");
  if (at >= 0) {
    const digest = ref.slice(at + 1);
    return DIGEST_RE.test(digest) ? undefined : `pins "${ref}" to "${digest}", which is not a sha256:<64 hex> digest`;
  }
  const lastSegment = ref.slice(ref.lastIndexOf("/") + 1);
  const colon = lastSegment.lastIndexOf(":");
  if (colon < 0) return `uses "${ref}" with no tag, which means latest`;
  const tag = lastSegment.slice(colon + 1);
  if (tag === "") return `uses "${ref}" with an empty tag`;
  if (tag.toLowerCase() === "latest") return `uses "${ref}"`;
  return undefined;
}

const PIN_ADVICE = "tag images with the deploy version (never latest) or pin them @sha256:<digest>";

/** Parses `containerDefinitions` (a JSON string of an array); a string result is the reason it can't. */
function containerDefinitions(r: PolicyResource): Record<string, unknown>[] | string {
  let raw = r.inputs.containerDefinitions;
  if (typeof raw === "string") {
    try {
      raw = JSON.parse(raw);
    } catch (err) {
      return `${r.name} containerDefinitions is not valid JSON (${err instanceof Error ? err.message : String(err)}); give a JSON array of container definitions`;
    }
  }
  if (!Array.isArray(raw)) return `${r.name} containerDefinitions is not a JSON array of container definitions`;
  return raw.map((c) => (isRecord(c) ? c : {}));
}

function containerLabel(r: PolicyResource, c: Record<string, unknown>, index: number): string {
  return `${r.name} container ${typeof c.name === "string" ? `"${c.name}"` : `#${index}`}`;
}

const noLatestTag: ResourceCheck = (r) => {
  if (r.type === TYPES.dockerImage) {
    const problem = imageReferenceProblem(r.inputs.imageName);
    return problem ? [`${r.name} imageName ${problem}; ${PIN_ADVICE}`] : [];
  }
  const containers = containerDefinitions(r);
  if (typeof containers === "string") return [containers];
  return containers.flatMap((c, index) => {
    const problem = imageReferenceProblem(c.image);
    return problem ? [`${containerLabel(r, c, index)} ${problem}; ${PIN_ADVICE}`] : [];
  });
};

// ---------------------------------------------------------------------------------------------
// container-limits-and-health

/** Task-level cpu/memory are strings ("512", or "1 vCPU"/"2 GB"); a numeric one must be positive. */
function isTaskSize(v: unknown): boolean {
  if (typeof v === "number") return isPositiveNumber(v);
  if (typeof v !== "string" || v.trim() === "") return false;
  const n = Number(v);
  return Number.isNaN(n) || n > 0;
}

/** Whether an ECS service runs this task definition behind a target group whose health check is on. */
function behindHealthCheckedTargetGroup(task: PolicyResource, all: readonly PolicyResource[]): boolean {
  const taskRefs = new Set([task.id, task.inputs.arn].filter((v): v is string => typeof v === "string"));
  return all.some(
    (svc) =>
      svc.type === TYPES.ecsService &&
      typeof svc.inputs.taskDefinition === "string" &&
      taskRefs.has(svc.inputs.taskDefinition) &&
      asArray(svc.inputs.loadBalancers).some((lb) => {
        if (!isRecord(lb) || typeof lb.targetGroupArn !== "string") return false;
        const tg = all.find((t) => t.type === TYPES.targetGroup && t.id === lb.targetGroupArn);
        const hc = tg?.inputs.healthCheck;
        return tg !== undefined && !(isRecord(hc) && hc.enabled === false);
      }),
  );
}

const containerLimitsAndHealth: ResourceCheck = (r, _context, all) => {
  const out: string[] = [];
  const missingTask = (["cpu", "memory"] as const).filter((k) => !isTaskSize(r.inputs[k]));
  if (missingTask.length > 0) {
    out.push(`${r.name} has no task-level ${missingTask.join(" or ")}; set the task definition's cpu and memory (e.g. "512" and "1024") so Fargate sizes it`);
  }
  const containers = containerDefinitions(r);
  if (typeof containers === "string") return [...out, containers];
  if (containers.length === 0) out.push(`${r.name} defines no containers`);
  containers.forEach((c, index) => {
    const label = containerLabel(r, c, index);
    const missing: string[] = [];
    if (!isPositiveNumber(c.cpu)) missing.push("cpu");
    if (!isPositiveNumber(c.memory) && !isPositiveNumber(c.memoryReservation)) missing.push("memory (or memoryReservation)");
    if (missing.length > 0) out.push(`${label} has no ${missing.join(" or ")}; give every container positive cpu and memory limits`);
    const health = c.healthCheck;
    const command = isRecord(health) ? health.command : undefined;
    if (!(Array.isArray(command) && command.length > 0)) {
      // A check may be left to the load balancer: then a service must run this task behind one.
      if (health === undefined && behindHealthCheckedTargetGroup(r, all)) return;
      out.push(`${label} has no healthCheck command; add healthCheck: { command: ["CMD-SHELL", "wget -q -O /dev/null http://127.0.0.1:<port>/health || exit 1"] }, or run the task behind a load balancer whose target group checks it, so unhealthy tasks are replaced`);
    } else if (command.some((part) => typeof part === "string" && /\blocalhost\b/.test(part))) {
      out.push(`${label} health check uses localhost, which BusyBox wget may resolve to ::1 without falling back to IPv4 (a server on 0.0.0.0 never gets healthy); use 127.0.0.1`);
    }
  });
  return out;
};

// ---------------------------------------------------------------------------------------------
// log-retention

/** What CloudWatch Logs accepts (PutRetentionPolicy); anything else fails at `up`. */
const RETENTION_VALUES: ReadonlySet<number> = new Set(LOG_RETENTION_DAYS);

const logRetention: ResourceCheck = (r) => {
  const days = r.inputs.retentionInDays;
  if (!isPositiveNumber(days)) return [`${r.name} has retentionInDays ${quote(days)}, so logs are kept forever; set retentionInDays to a positive number of days (e.g. 30)`];
  if (!RETENTION_VALUES.has(days as number)) return [`${r.name} has retentionInDays ${quote(days)}, which CloudWatch Logs refuses; use one of ${LOG_RETENTION_DAYS.join(", ")}`];
  return [];
};

// ---------------------------------------------------------------------------------------------
// encryption-at-rest

const BUCKET_ENCRYPTION_TYPES = new Set<string>([TYPES.bucketEncryption, TYPES.bucketEncryptionV2]);

const encryptionAtRest: ResourceCheck = (r, _context, all) => {
  if (r.type === TYPES.rdsInstance) {
    return r.inputs.storageEncrypted === true ? [] : [`${r.name} does not encrypt its storage; set storageEncrypted: true (it cannot be turned on after creation without a snapshot restore)`];
  }
  // A bucket is identified by its id (what `bucket: bucket.id` resolves to) or its explicit name.
  const names = new Set([r.id, r.inputs.bucket].filter((v): v is string => typeof v === "string" && v !== ""));
  const encrypted = all.some((e) => BUCKET_ENCRYPTION_TYPES.has(e.type) && typeof e.inputs.bucket === "string" && names.has(e.inputs.bucket));
  // The deprecated inline block still encrypts the bucket.
  if (encrypted || isRecord(r.inputs.serverSideEncryptionConfiguration)) return [];
  return [`${r.name} has no server-side encryption configuration; add an aws.s3.BucketServerSideEncryptionConfiguration with bucket: <bucket>.id`];
};

// ---------------------------------------------------------------------------------------------
// rds-not-public

const rdsNotPublic: ResourceCheck = (r) =>
  r.inputs.publiclyAccessible === true ? [`${r.name} is publicly accessible; set publiclyAccessible: false and reach it from the service's security group`] : [];

// ---------------------------------------------------------------------------------------------
// no-iam-star

/** The IAM policy documents a resource carries, each with a label for messages. */
function policyDocuments(r: PolicyResource): { label: string; document: unknown }[] {
  if (r.type === TYPES.iamRole) {
    return asArray(r.inputs.inlinePolicies)
      .filter(isRecord)
      // `inlinePolicies: [{}]` is the provider's way of saying "no inline policies".
      .filter((p) => p.policy !== undefined && p.policy !== "")
      .map((p, index) => ({ label: `inline policy ${typeof p.name === "string" ? `"${p.name}"` : `#${index}`}`, document: p.policy }));
  }
  return [{ label: "policy", document: r.inputs.policy }];
}

function isStar(v: unknown): boolean {
  return v === "*" || v === "*:*";
}

/** Checks one document; returns messages without the resource name. */
function policyProblems(document: unknown): string[] {
  let doc = document;
  if (doc === undefined || doc === null || doc === "") return ["is empty; every policy must be a document the review can read"];
  if (typeof doc === "string") {
    try {
      doc = JSON.parse(doc);
    } catch (err) {
      return [`is not valid JSON (${err instanceof Error ? err.message : String(err)}); give a JSON policy document`];
    }
  }
  if (!isRecord(doc) || doc.Statement === undefined) return ["is not an IAM policy document (no Statement); give {Version, Statement: [...]}"];
  const out: string[] = [];
  asArray(doc.Statement).forEach((s, index) => {
    if (!isRecord(s)) {
      out.push(`statement #${index} is not an object`);
      return;
    }
    if (s.Effect !== "Allow") return;
    const sid = typeof s.Sid === "string" ? `statement "${s.Sid}"` : `statement #${index}`;
    const allResources = asArray(s.Resource).some(isStar) || s.NotResource !== undefined;
    const allActions = asArray(s.Action).some(isStar) || s.NotAction !== undefined;
    if (allResources && allActions) {
      const action = s.NotAction !== undefined ? "NotAction (every action but a few)" : 'Action "*"';
      const resource = s.NotResource !== undefined ? "NotResource (every resource but a few)" : 'Resource "*"';
      out.push(`${sid} allows ${action} on ${resource}; name the actions and the resources the workload needs`);
    }
  });
  return out;
}

const noIamStar: ResourceCheck = (r) =>
  policyDocuments(r).flatMap(({ label, document }) => policyProblems(document).map((p) => `${r.name} ${label} ${p}`));

// ---------------------------------------------------------------------------------------------
// secret-grant-arns

function parsedDocument(document: unknown): Record<string, unknown> | undefined {
  const doc = typeof document === "string" ? (() => { try { return JSON.parse(document) as unknown; } catch { return undefined; } })() : document;
  return isRecord(doc) ? doc : undefined;
}

/**
 * Why an IAM resource meant to name a Secrets Manager secret matches no real one, or undefined.
 * A real ARN ends in the secret's name plus `-` and six random characters.
 */
function secretResourceProblem(resource: string): string | undefined {
  const m = /:secretsmanager:[^:]*:[^:]*:secret:(.*)$/.exec(resource);
  if (!m) return undefined;
  const rest = m[1];
  if (rest.includes(":")) return `"${resource}" carries a JSON key or version after the name; IAM authorizes the secret, so grant on its ARN (with -?????? for the suffix)`;
  if (/(-\?{6}|\*)$/.test(rest) || /-[A-Za-z0-9]{6}$/.test(rest)) return undefined;
  return `"${resource}" is a partial ARN without the secret's six-character suffix, so it matches no real secret; append -??????`;
}

const secretGrantArnsCheck: ResourceCheck = (r) =>
  policyDocuments(r).flatMap(({ label, document }) => {
    const doc = parsedDocument(document);
    if (doc === undefined) return [];
    return asArray(doc.Statement)
      .filter(isRecord)
      .filter((st) => st.Effect === "Allow" && asArray(st.Action).some((a) => typeof a === "string" && /^secretsmanager:/i.test(a)))
      .flatMap((st) => strings(st.Resource).map(secretResourceProblem).filter((p): p is string => p !== undefined))
      .map((p) => `${r.name} ${label} ${p}`);
  });

// ---------------------------------------------------------------------------------------------
// https-on-own-name

const httpsOnOwnName: ResourceCheck = (r, _context, all) => {
  if (String(r.inputs.protocol).toUpperCase() !== "HTTPS") return [];
  const aliased = all.some((x) => x.type === TYPES.route53Record && asArray(x.inputs.aliases).some((a) => isRecord(a) && typeof a.name === "string" && a.name !== ""));
  return aliased
    ? []
    : [`${r.name} serves HTTPS, but no Route 53 alias gives the load balancer a name of its own; a certificate cannot cover *.elb.amazonaws.com, so every client would refuse it. Set app.domain`];
};

// ---------------------------------------------------------------------------------------------
// rds-pinned-version

const rdsPinnedVersion: ResourceCheck = (r) => {
  const out: string[] = [];
  if (typeof r.inputs.engineVersion !== "string" || r.inputs.engineVersion.trim() === "") {
    out.push(`${r.name} has no engineVersion, so RDS creates it on whatever major is current that day; pin database.engineVersion (e.g. "16")`);
  }
  const max = r.inputs.maxAllocatedStorage;
  if (!(typeof max === "number" && typeof r.inputs.allocatedStorage === "number" && max > r.inputs.allocatedStorage)) {
    out.push(`${r.name} has maxAllocatedStorage ${quote(max)}; set it above allocatedStorage so RDS grows the volume before it fills`);
  }
  return out;
};

// ---------------------------------------------------------------------------------------------
// production only

const production = (context: PolicyContext): boolean => context.production;

const prodMinTasks: ResourceCheck = (r) => {
  const n = r.inputs.desiredCount;
  return typeof n === "number" && n >= 2 ? [] : [`${r.name} has desiredCount ${quote(n)}; production services run at least 2 tasks so one can fail or be replaced without an outage`];
};

const prodMultiAzDatabase: ResourceCheck = (r) =>
  r.inputs.multiAz === true ? [] : [`${r.name} is a single-AZ database; set multiAz: true in production (database.multiAz in the environment file)`];

const prodDeletionProtection: ResourceCheck = (r) => {
  if (r.type === TYPES.rdsInstance) {
    return r.inputs.deletionProtection === true ? [] : [`${r.name} has no deletion protection; set deletionProtection: true in production`];
  }
  return r.inputs.enableDeletionProtection === true ? [] : [`${r.name} has no deletion protection; set enableDeletionProtection: true in production`];
};

/**
 * A production alarm must reach someone: one of its actions is a topic of this stack with a
 * subscription, or a topic from outside the stack (whose subscribers are managed there).
 */
const prodAlarmsNotify: ResourceCheck = (r, _context, all) => {
  const ownTopics = new Map(all.filter((t) => t.type === TYPES.snsTopic).map((t) => [t.id ?? "", t] as const));
  const subscribed = new Set(all.filter((x) => x.type === TYPES.snsSubscription).map((x) => x.inputs.topic));
  const actions = strings(r.inputs.alarmActions);
  const reaches = actions.some((a) => (ownTopics.has(a) ? subscribed.has(a) : /^arn:aws[a-z-]*:sns:/.test(a)));
  return reaches
    ? []
    : [`${r.name} notifies no one: ${actions.length === 0 ? "it has no alarmActions" : `no subscription on ${list(actions)}`}; give alarms.notify ({ email }, { https } or { topicArn }) in production`];
};

/**
 * `forceDestroy: false` / `forceDelete: false` do not keep a bucket or repository: they make
 * destroy fail (BucketNotEmpty, RepositoryNotEmpty) halfway through. Production keeps them with
 * `retainOnDelete`.
 */
const prodDestroyKeepsData: ResourceCheck = (r) => {
  if (r.retainOnDelete === true) return [];
  const [flag, error] = r.type === TYPES.bucket ? ["forceDestroy", "BucketNotEmpty"] : ["forceDelete", "RepositoryNotEmpty"];
  return [`${r.name} is not retained on delete; with ${flag} ${quote(r.inputs[flag])} a destroy would ${r.inputs[flag] === true ? "delete its contents" : `fail with ${error}`}. Production keeps it with the retainOnDelete resource option`];
};

// ---------------------------------------------------------------------------------------------

export const POLICY_RULES: readonly PolicyRule[] = [
  perResource({
    name: "required-tags",
    description: "Every taggable resource carries the environment's required tags with their exact values.",
    types: TAGGABLE_TYPES,
    check: requiredTags,
  }),
  perResource({
    name: "no-open-ingress",
    description: "No ingress from 0.0.0.0/0 or ::/0, except TCP 80/443 to a security group attached to a load balancer.",
    types: [TYPES.ingressRule, TYPES.legacySecurityGroupRule, TYPES.securityGroup],
    check: noOpenIngress,
  }),
  perResource({
    name: "ecr-scan-and-immutable",
    description: "ECR repositories scan on push and have immutable tags.",
    types: [TYPES.ecrRepository],
    check: ecrScanAndImmutable,
  }),
  perResource({
    name: "no-latest-tag",
    description: "Images are referenced by an explicit tag other than latest, or by sha256 digest.",
    types: [TYPES.dockerImage, TYPES.taskDefinition],
    check: noLatestTag,
  }),
  perResource({
    name: "container-limits-and-health",
    description: "Task definitions set cpu and memory; each container sets cpu, memory (or memoryReservation) and a health check command on 127.0.0.1, not localhost (or none, behind a health-checked target group).",
    types: [TYPES.taskDefinition],
    check: containerLimitsAndHealth,
  }),
  perResource({
    name: "log-retention",
    description: "Log groups have a finite retention period, one of the values CloudWatch Logs accepts.",
    types: [TYPES.logGroup],
    check: logRetention,
  }),
  perResource({
    name: "encryption-at-rest",
    description: "S3 buckets have a server-side encryption configuration; RDS instances encrypt storage.",
    types: [TYPES.bucket, TYPES.rdsInstance],
    check: encryptionAtRest,
  }),
  perResource({
    name: "rds-not-public",
    description: "RDS instances are not publicly accessible.",
    types: [TYPES.rdsInstance],
    check: rdsNotPublic,
  }),
  perResource({
    name: "no-iam-star",
    description: "No IAM policy allows every action on every resource (Action or NotAction with Resource \"*\"), and every policy document parses.",
    types: [TYPES.iamRolePolicy, TYPES.iamPolicy, TYPES.iamRole, TYPES.bucketPolicy, TYPES.iamUserPolicy, TYPES.iamGroupPolicy],
    check: noIamStar,
  }),
  perResource({
    name: "secret-grant-arns",
    description: "IAM grants on Secrets Manager name secrets as real ARNs match them: no JSON key or version in the resource, and the random suffix present or wildcarded.",
    types: [TYPES.iamRolePolicy, TYPES.iamPolicy, TYPES.iamRole, TYPES.iamUserPolicy, TYPES.iamGroupPolicy],
    check: secretGrantArnsCheck,
  }),
  perResource({
    name: "https-on-own-name",
    description: "An HTTPS listener's load balancer is reached through a Route 53 alias (the domain its certificate covers), not its *.elb.amazonaws.com name.",
    types: [TYPES.listener],
    check: httpsOnOwnName,
  }),
  perResource({
    name: "rds-pinned-version",
    description: "RDS instances pin engineVersion and have storage autoscaling (maxAllocatedStorage above allocatedStorage).",
    types: [TYPES.rdsInstance],
    check: rdsPinnedVersion,
  }),
  perResource({
    name: "prod-min-tasks",
    description: "Production ECS services run at least 2 tasks.",
    types: [TYPES.ecsService],
    when: production,
    check: prodMinTasks,
  }),
  perResource({
    name: "prod-multi-az-database",
    description: "Production RDS instances are Multi-AZ.",
    types: [TYPES.rdsInstance],
    when: production,
    check: prodMultiAzDatabase,
  }),
  perResource({
    name: "prod-alarms-notify",
    description: "Production alarms reach someone: a subscribed topic of the stack, or an external topic.",
    types: [TYPES.metricAlarm],
    when: production,
    check: prodAlarmsNotify,
  }),
  perResource({
    name: "prod-destroy-keeps-data",
    description: "Production S3 buckets and ECR repositories are kept on destroy (retainOnDelete), not left to fail it or to be emptied.",
    types: [TYPES.bucket, TYPES.ecrRepository],
    when: production,
    check: prodDestroyKeepsData,
  }),
  perResource({
    name: "prod-deletion-protection",
    description: "Production RDS instances and load balancers have deletion protection.",
    types: [TYPES.rdsInstance, TYPES.loadBalancer],
    when: production,
    check: prodDeletionProtection,
  }),
];

/** Runs every rule; violations come in rule order, then resource order. */
export function checkPolicies(resources: readonly PolicyResource[], context: PolicyContext): Violation[] {
  return POLICY_RULES.flatMap((rule) => rule.check(resources, context));
}
