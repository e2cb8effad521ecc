/**
 * The deployment procedure's review rules as code. Pure functions over the resources a program
 * registered (evaluated under Pulumi's mock runtime, so every input is a resolved plain JSON value
 * with @pulumi/aws v7's camelCase input names). Nothing here touches the Pulumi runtime, so the same
 * rules can later back a Pulumi policy pack: each rule is a small function from one resource (plus
 * the context and the whole list, for rules that look across resources) to the problems it finds.
 * The rules live by concern (network, containers, data, iam, production); this file lists them.
 */
import { TAGGABLE_TYPES } from "../taggable";
import { TYPES, perResource, isRecord, quote, list, type PolicyResource, type PolicyContext, type Violation, type PolicyRule, type ResourceCheck } from "./rule";
import { httpsOnOwnName, noOpenIngress } from "./network";
import { containerLimitsAndHealth, ecrScanAndImmutable, noLatestTag } from "./containers";
import { encryptionAtRest, logRetention, rdsNotPublic, rdsPinnedVersion } from "./data";
import { noIamStar, secretGrantArnsCheck } from "./iam";
import { prodAlarmsNotify, prodDeletionProtection, prodDestroyKeepsData, prodMinTasks, prodMultiAzDatabase, production } from "./production";

export type { PolicyContext, PolicyResource, PolicyRule, Severity, Violation } from "./rule";

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
