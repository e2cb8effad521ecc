/**
 * Which resource types carry tags and which tags every one of them must have. Kept apart from
 * tags.ts (the transformation) so the policy rules and the automation layer can read it without
 * loading the Pulumi runtime.
 */

/** The AWS resource types this program creates that accept `tags`. The policy rules use the same list. */
export const TAGGABLE_TYPES: ReadonlySet<string> = new Set([
  "aws:ec2/vpc:Vpc",
  "aws:ec2/subnet:Subnet",
  "aws:ec2/internetGateway:InternetGateway",
  "aws:ec2/eip:Eip",
  "aws:ec2/natGateway:NatGateway",
  "aws:ec2/routeTable:RouteTable",
  "aws:ec2/flowLog:FlowLog",
  "aws:ec2/vpcEndpoint:VpcEndpoint",
  "aws:ec2/securityGroup:SecurityGroup",
  "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup",
  "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule",
  "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule",
  "aws:iam/role:Role",
  "aws:iam/policy:Policy",
  "aws:ecr/repository:Repository",
  "aws:ecs/cluster:Cluster",
  "aws:ecs/taskDefinition:TaskDefinition",
  "aws:ecs/service:Service",
  "aws:lb/loadBalancer:LoadBalancer",
  "aws:lb/targetGroup:TargetGroup",
  "aws:lb/listener:Listener",
  "aws:appautoscaling/target:Target",
  "aws:rds/instance:Instance",
  "aws:rds/subnetGroup:SubnetGroup",
  "aws:s3/bucket:Bucket",
  "aws:cloudwatch/logGroup:LogGroup",
  "aws:cloudwatch/metricAlarm:MetricAlarm",
  "aws:sns/topic:Topic",
  "aws:kms/key:Key",
  "aws:acm/certificate:Certificate",
]);

/** The tags every taggable resource carries: the deployer's three, then the environment's own. */
export function requiredTags(environment: string, project: string, extra: Readonly<Record<string, string>>): Record<string, string> {
  return { ...extra, Environment: environment, Project: project, ManagedBy: "pulumi" };
}
