/**
 * Observability, in two components because it sits on both sides of the service: the log group
 * must exist before the task definition that writes to it, and the alarms need the service, load
 * balancer and target group that only exist after. `Observability` (log group, alarm topic) comes
 * before the service; `Alarms` after it. Two components rather than one with a second `addAlarms()`
 * step: a component whose children appear after `registerOutputs` reads as finished when it is not.
 */
import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import { LOG_RETENTION_DAYS } from "./config";
import { ComponentArgumentError, checkName, childName, type AwsTarget } from "./naming";
import type { PolicyDocument } from "./security";

export const OBSERVABILITY_TYPE = "deployer:infra:Observability";
export const ALARMS_TYPE = "deployer:infra:Alarms";

export interface ObservabilityArgs {
  /** Days application logs are kept. Default 30. */
  readonly logRetentionDays?: number;
  /** Account and region, for the alarm topic key's policy. */
  readonly aws: AwsTarget;
  /** Subscriptions to the alarm topic. Default none. An email subscription stays pending until its owner confirms it. */
  readonly subscriptions?: readonly ({ readonly email: string } | { readonly https: string })[];
}

/** The application log group: `/ecs/<app>-<env>`. */
export function appLogGroupName(name: string): string {
  return `/ecs/${name}`;
}

/**
 * CloudWatch can only publish alarms to an encrypted topic if the key lets it use the key, and the
 * AWS-managed `alias/aws/sns` key's policy cannot be changed: alarms sent to a topic encrypted with
 * it are silently dropped. So the topic gets its own key, administered by the account, usable by
 * CloudWatch on behalf of this account only.
 */
export function alarmTopicKeyPolicy(target: AwsTarget): PolicyDocument {
  return {
    Version: "2012-10-17",
    Statement: [
      { Sid: "AccountAdministersKey", Effect: "Allow", Principal: { AWS: `arn:aws:iam::${target.accountId}:root` }, Action: "kms:*", Resource: "*" },
      {
        Sid: "CloudWatchPublishesAlarms",
        Effect: "Allow",
        Principal: { Service: "cloudwatch.amazonaws.com" },
        Action: ["kms:Decrypt", "kms:GenerateDataKey*"],
        Resource: "*",
        Condition: { StringEquals: { "aws:SourceAccount": target.accountId } },
      },
    ],
  };
}

export function validateObservabilityArgs(name: string, args: ObservabilityArgs): void {
  checkName(OBSERVABILITY_TYPE, name);
  const days = args.logRetentionDays;
  if (days !== undefined && !(LOG_RETENTION_DAYS as readonly number[]).includes(days)) {
    throw new ComponentArgumentError(OBSERVABILITY_TYPE, name, "logRetentionDays", `is ${days}; CloudWatch Logs accepts only ${LOG_RETENTION_DAYS.join(", ")}`);
  }
}

export class Observability extends pulumi.ComponentResource {
  public readonly logGroupName: pulumi.Output<string>;
  public readonly logGroupArn: pulumi.Output<string>;
  public readonly alarmTopicArn: pulumi.Output<string>;

  constructor(name: string, args: ObservabilityArgs, opts?: pulumi.ComponentResourceOptions) {
    validateObservabilityArgs(name, args);
    super(OBSERVABILITY_TYPE, name, {}, opts);
    const parent = { parent: this };
    const n = (role: string) => childName(name, role);

    const logGroup = new aws.cloudwatch.LogGroup(n("logs"), { name: appLogGroupName(name), retentionInDays: args.logRetentionDays ?? 30 }, parent);
    const key = new aws.kms.Key(
      n("alarms"),
      { description: `${name} alarm notifications`, enableKeyRotation: true, deletionWindowInDays: 30, policy: JSON.stringify(alarmTopicKeyPolicy(args.aws)) },
      parent,
    );
    new aws.kms.Alias(n("alarms"), { name: `alias/${n("alarms")}`, targetKeyId: key.keyId }, parent);
    const topic = new aws.sns.Topic(n("alarms"), { displayName: `${name} alarms`, kmsMasterKeyId: key.arn }, parent);
    (args.subscriptions ?? []).forEach((sub, i) => {
      const [protocol, endpoint] = "email" in sub ? ["email", sub.email] : ["https", sub.https];
      new aws.sns.TopicSubscription(n(`alarms-${protocol}-${i + 1}`), { topic: topic.arn, protocol, endpoint, ...(protocol === "https" ? { endpointAutoConfirms: false } : {}) }, parent);
    });

    this.logGroupName = logGroup.name;
    this.logGroupArn = logGroup.arn;
    this.alarmTopicArn = topic.arn;
    this.registerOutputs({ logGroupName: this.logGroupName, logGroupArn: this.logGroupArn, alarmTopicArn: this.alarmTopicArn });
  }
}

export interface AlarmsArgs {
  /** Where alarms and their recoveries are sent. */
  readonly topicArn: pulumi.Input<string>;
  /** Existing topics (a pager, a chat integration) that get every alarm too. Default none. */
  readonly extraTopicArns?: readonly string[];
  readonly clusterName: pulumi.Input<string>;
  readonly serviceName: pulumi.Input<string>;
  /** `app/<name>/<id>`: the ALB's CloudWatch dimension. */
  readonly loadBalancerArnSuffix: pulumi.Input<string>;
  /** `targetgroup/<name>/<id>`: the target group's CloudWatch dimension. */
  readonly targetGroupArnSuffix: pulumi.Input<string>;
  /** Average service CPU that alarms, over five minutes. Default 80. */
  readonly cpuHighPercent?: number;
  /** 5xx responses per minute (load balancer's own plus the targets') that alarm. Default 10. */
  readonly http5xxPerMinute?: number;
}

/** The role (name suffix) of each alarm. */
export type AlarmRole = "cpu-high" | "http-5xx" | "unhealthy-hosts" | "tasks-below-desired";

/** Every alarm's definition, without the notification actions; tests read these without mocks. */
export function alarmDefinitions(args: AlarmsArgs): Record<AlarmRole, aws.cloudwatch.MetricAlarmArgs> {
  const service = { ClusterName: args.clusterName, ServiceName: args.serviceName };
  const lb = { LoadBalancer: args.loadBalancerArnSuffix };
  const metric = (id: string, namespace: string, metricName: string, stat: string, dimensions: Record<string, pulumi.Input<string>>) => ({
    id,
    returnData: false,
    metric: { namespace, metricName, stat, period: 60, dimensions },
  });
  return {
    "cpu-high": {
      alarmDescription: `Service CPU at or above ${args.cpuHighPercent ?? 80}% for 5 minutes`,
      namespace: "AWS/ECS",
      metricName: "CPUUtilization",
      dimensions: service,
      statistic: "Average",
      period: 60,
      evaluationPeriods: 5,
      threshold: args.cpuHighPercent ?? 80,
      comparisonOperator: "GreaterThanOrEqualToThreshold",
      treatMissingData: "missing",
    },
    "http-5xx": {
      alarmDescription: `${args.http5xxPerMinute ?? 10} or more 5xx responses a minute (load balancer and targets), 2 minutes in a row`,
      metricQueries: [
        metric("elb", "AWS/ApplicationELB", "HTTPCode_ELB_5XX_Count", "Sum", lb),
        metric("target", "AWS/ApplicationELB", "HTTPCode_Target_5XX_Count", "Sum", lb),
        // A minute with no errors has no datapoint, not a zero: FILL keeps one series from hiding the other.
        { id: "errors", label: "5xx responses", expression: "FILL(elb, 0) + FILL(target, 0)", returnData: true },
      ],
      evaluationPeriods: 2,
      threshold: args.http5xxPerMinute ?? 10,
      comparisonOperator: "GreaterThanOrEqualToThreshold",
      treatMissingData: "notBreaching",
    },
    "unhealthy-hosts": {
      alarmDescription: "A target failed the load balancer's health check for 2 minutes",
      namespace: "AWS/ApplicationELB",
      metricName: "UnHealthyHostCount",
      dimensions: { ...lb, TargetGroup: args.targetGroupArnSuffix },
      statistic: "Maximum",
      period: 60,
      evaluationPeriods: 2,
      threshold: 0,
      comparisonOperator: "GreaterThanThreshold",
      treatMissingData: "notBreaching",
    },
    // Compared with the service's own desired count rather than a fixed number, so autoscaling
    // in to its minimum is not an alarm while a crash-looping task is.
    "tasks-below-desired": {
      alarmDescription: "Fewer tasks running than the service wants, for 5 minutes",
      metricQueries: [
        metric("running", "ECS/ContainerInsights", "RunningTaskCount", "Minimum", service),
        metric("desired", "ECS/ContainerInsights", "DesiredTaskCount", "Maximum", service),
        { id: "missing", label: "tasks missing", expression: "desired - running", returnData: true },
      ],
      evaluationPeriods: 5,
      threshold: 0,
      comparisonOperator: "GreaterThanThreshold",
      // No Container Insights data at all means nothing is reporting: treat it as a problem.
      treatMissingData: "breaching",
    },
  };
}

export function validateAlarmsArgs(name: string, args: AlarmsArgs): void {
  checkName(ALARMS_TYPE, name);
  const fail = (arg: string, reason: string) => new ComponentArgumentError(ALARMS_TYPE, name, arg, reason);
  const cpu = args.cpuHighPercent;
  if (cpu !== undefined && !(cpu > 0 && cpu <= 100)) throw fail("cpuHighPercent", `is ${cpu}; give a percentage above 0 and at most 100`);
  for (const [i, arn] of (args.extraTopicArns ?? []).entries()) {
    if (!/^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}$/.test(arn)) throw fail(`extraTopicArns[${i}]`, `"${arn}" is not an SNS topic ARN`);
  }
  const errors = args.http5xxPerMinute;
  if (errors !== undefined && (!Number.isInteger(errors) || errors < 1)) throw fail("http5xxPerMinute", `is ${errors}; give a whole number of at least 1`);
}

export class Alarms extends pulumi.ComponentResource {
  /** Alarm names by role. */
  public readonly alarmNames: Record<AlarmRole, pulumi.Output<string>>;

  constructor(name: string, args: AlarmsArgs, opts?: pulumi.ComponentResourceOptions) {
    validateAlarmsArgs(name, args);
    super(ALARMS_TYPE, name, {}, opts);
    const definitions = alarmDefinitions(args);
    const names = {} as Record<AlarmRole, pulumi.Output<string>>;
    for (const role of Object.keys(definitions) as AlarmRole[]) {
      const alarmName = childName(name, role);
      // Named, not auto-named: the name is what a notification's reader sees first.
      const actions = [args.topicArn, ...(args.extraTopicArns ?? [])];
      const alarm = new aws.cloudwatch.MetricAlarm(alarmName, { ...definitions[role], name: alarmName, alarmActions: actions, okActions: actions }, { parent: this });
      names[role] = alarm.name;
    }
    this.alarmNames = names;
    this.registerOutputs({ alarmNames: this.alarmNames });
  }
}
