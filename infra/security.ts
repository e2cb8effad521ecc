/**
 * Security: the security groups (load balancer → service → database, each open only to the one
 * before it) and the two ECS roles. Rules are separate `SecurityGroupIngressRule` /
 * `SecurityGroupEgressRule` resources rather than inline blocks, so each rule is reviewable and
 * replaceable on its own and the policy rules can check them one by one.
 */
import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import { ComponentArgumentError, checkName, childName, parseSecretsManagerRef, secretGrantArns, secretValueFrom, type AwsTarget, type SecretRef } from "./naming";

export const SECURITY_TYPE = "deployer:infra:Security";

export type DatabaseEngine = "postgres" | "mysql";

export interface PolicyStatement {
  readonly Sid?: string;
  readonly Effect: "Allow" | "Deny";
  readonly Principal?: "*" | Readonly<Record<string, string | readonly string[]>>;
  readonly Action: string | readonly string[];
  readonly Resource?: string | readonly string[];
  readonly Condition?: Readonly<Record<string, Readonly<Record<string, string | readonly string[]>>>>;
}

export interface PolicyDocument {
  readonly Version: "2012-10-17";
  readonly Statement: readonly PolicyStatement[];
}

export interface SecurityArgs {
  readonly vpcId: pulumi.Input<string>;
  /** The port the container listens on; the only port the load balancer may reach. */
  readonly appPort: number;
  /** The database engine when there is a database: its port opens to the service group only. Default: no database group. */
  readonly databaseEngine?: DatabaseEngine;
  /** The ECR repository tasks pull from. Default: none, and the execution role gets no ECR permission (public images). */
  readonly repositoryArn?: pulumi.Input<string>;
  /** The application log group; the execution role may write streams there and nowhere else. */
  readonly logGroupArn: pulumi.Input<string>;
  /** The secrets the container reads at start; the execution role may read exactly these. Default: none. */
  readonly secrets?: Readonly<Record<string, SecretRef>>;
  /** Account and region, for SSM parameter ARNs and the roles' confused-deputy conditions. */
  readonly aws: AwsTarget;
}

export function databasePort(engine: DatabaseEngine): number {
  return engine === "postgres" ? 5432 : 3306;
}

/**
 * Trust for an AWS service, limited to calls made on behalf of this account (and, when given, of
 * resources matching `sourceArn`) so another account cannot make the service act with this role.
 */
export function assumeRolePolicy(service: string, target: AwsTarget, sourceArn?: string): PolicyDocument {
  return {
    Version: "2012-10-17",
    Statement: [
      {
        Effect: "Allow",
        Principal: { Service: service },
        Action: "sts:AssumeRole",
        Condition: {
          StringEquals: { "aws:SourceAccount": target.accountId },
          ...(sourceArn === undefined ? {} : { ArnLike: { "aws:SourceArn": sourceArn } }),
        },
      },
    ],
  };
}

/** The ARNs the execution role may read secrets from, split by service. */
export function secretArns(target: AwsTarget, secrets: Readonly<Record<string, SecretRef>>): { ssm: string[]; secretsManager: string[] } {
  const refs = Object.keys(secrets).sort().map((k) => secrets[k]);
  const unique = (values: string[]) => [...new Set(values)];
  return {
    ssm: unique(refs.filter((r) => "ssm" in r).map((r) => secretValueFrom(target, r))),
    secretsManager: unique(refs.flatMap((r) => ("secretsManager" in r ? secretGrantArns(r.secretsManager) : []))),
  };
}

export interface ExecutionRoleScope {
  readonly repositoryArn?: string;
  readonly logGroupArn: string;
  readonly ssmParameterArns: readonly string[];
  readonly secretArns: readonly string[];
}

/**
 * What ECS needs to start the task: pull this image, write this log group, read these secrets.
 * Statements for things the task does not use are left out rather than scoped to nothing.
 * SSM SecureStrings under the default `aws/ssm` key need no `kms:Decrypt`; a customer key would.
 */
export function executionRolePolicy(scope: ExecutionRoleScope): PolicyDocument {
  const statements: PolicyStatement[] = [];
  if (scope.repositoryArn !== undefined) {
    // GetAuthorizationToken has no resource-level scope in IAM: "*" is the only valid resource.
    statements.push({ Sid: "EcrLogin", Effect: "Allow", Action: "ecr:GetAuthorizationToken", Resource: "*" });
    statements.push({ Sid: "EcrPull", Effect: "Allow", Action: ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"], Resource: scope.repositoryArn });
  }
  statements.push({ Sid: "WriteLogs", Effect: "Allow", Action: ["logs:CreateLogStream", "logs:PutLogEvents"], Resource: `${scope.logGroupArn}:*` });
  if (scope.ssmParameterArns.length > 0) {
    statements.push({ Sid: "ReadParameters", Effect: "Allow", Action: "ssm:GetParameters", Resource: [...scope.ssmParameterArns] });
  }
  if (scope.secretArns.length > 0) {
    statements.push({ Sid: "ReadSecrets", Effect: "Allow", Action: "secretsmanager:GetSecretValue", Resource: [...scope.secretArns] });
  }
  return { Version: "2012-10-17", Statement: statements };
}

export function validateSecurityArgs(name: string, args: SecurityArgs): void {
  checkName(SECURITY_TYPE, name);
  const fail = (arg: string, reason: string) => new ComponentArgumentError(SECURITY_TYPE, name, arg, reason);
  if (!Number.isInteger(args.appPort) || args.appPort < 1 || args.appPort > 65535) throw fail("appPort", `is ${args.appPort}; give a port from 1 to 65535`);
  if (args.databaseEngine !== undefined && !["postgres", "mysql"].includes(args.databaseEngine)) throw fail("databaseEngine", `is "${args.databaseEngine}"; give postgres or mysql`);
  if (!/^\d{12}$/.test(args.aws.accountId)) throw fail("aws.accountId", "must be a 12-digit account id");
  for (const [key, ref] of Object.entries(args.secrets ?? {})) {
    if ("ssm" in ref) {
      if (!/^\/[A-Za-z0-9_.\-/]+$/.test(ref.ssm)) throw fail(`secrets.${key}`, "must be { ssm: /path } or { secretsManager: <secret ARN> }");
    } else {
      const parsed = typeof ref.secretsManager === "string" ? parseSecretsManagerRef(ref.secretsManager) : "must be { ssm: /path } or { secretsManager: <secret ARN> }";
      if (typeof parsed === "string") throw fail(`secrets.${key}.secretsManager`, parsed);
    }
  }
}

export class Security extends pulumi.ComponentResource {
  public readonly loadBalancerSecurityGroupId: pulumi.Output<string>;
  public readonly serviceSecurityGroupId: pulumi.Output<string>;
  /** Only when `databaseEngine` is given. */
  public readonly databaseSecurityGroupId?: pulumi.Output<string>;
  public readonly executionRoleArn: pulumi.Output<string>;
  public readonly taskRoleArn: pulumi.Output<string>;
  /** The task role's name, for attaching the application's own permissions. */
  public readonly taskRoleName: pulumi.Output<string>;
  /** The execution role's name, for grants made by other components (the database secret). */
  public readonly executionRoleName: pulumi.Output<string>;

  constructor(name: string, args: SecurityArgs, opts?: pulumi.ComponentResourceOptions) {
    validateSecurityArgs(name, args);
    super(SECURITY_TYPE, name, {}, opts);
    const parent = { parent: this };
    const n = (role: string) => childName(name, role);
    const tcp = (port: number) => ({ ipProtocol: "tcp", fromPort: port, toPort: port });

    const lbSg = new aws.ec2.SecurityGroup(n("lb-sg"), { vpcId: args.vpcId, description: `${name} load balancer`, tags: { Name: n("lb-sg") } }, parent);
    const serviceSg = new aws.ec2.SecurityGroup(n("service-sg"), { vpcId: args.vpcId, description: `${name} ECS service`, tags: { Name: n("service-sg") } }, parent);

    // The only ingress from the internet in the whole program: HTTP (to redirect or serve) and HTTPS.
    for (const port of [80, 443]) {
      const proto = port === 443 ? "https" : "http";
      new aws.vpc.SecurityGroupIngressRule(n(`lb-${proto}-ipv4`), { securityGroupId: lbSg.id, ...tcp(port), cidrIpv4: "0.0.0.0/0", description: `${proto.toUpperCase()} from anywhere` }, parent);
      new aws.vpc.SecurityGroupIngressRule(n(`lb-${proto}-ipv6`), { securityGroupId: lbSg.id, ...tcp(port), cidrIpv6: "::/0", description: `${proto.toUpperCase()} from anywhere` }, parent);
    }
    new aws.vpc.SecurityGroupEgressRule(n("lb-to-service"), { securityGroupId: lbSg.id, ...tcp(args.appPort), referencedSecurityGroupId: serviceSg.id, description: "to the service tasks" }, parent);
    new aws.vpc.SecurityGroupIngressRule(n("service-from-lb"), { securityGroupId: serviceSg.id, ...tcp(args.appPort), referencedSecurityGroupId: lbSg.id, description: "from the load balancer" }, parent);
    // Tasks reach ECR, CloudWatch Logs, SSM and Secrets Manager over HTTPS through the NAT. DNS to
    // the VPC resolver is not subject to security groups, so no rule is needed for it.
    new aws.vpc.SecurityGroupEgressRule(n("service-https"), { securityGroupId: serviceSg.id, ...tcp(443), cidrIpv4: "0.0.0.0/0", description: "AWS APIs and registries over HTTPS" }, parent);

    if (args.databaseEngine !== undefined) {
      const port = databasePort(args.databaseEngine);
      const dbSg = new aws.ec2.SecurityGroup(n("db-sg"), { vpcId: args.vpcId, description: `${name} ${args.databaseEngine} database`, tags: { Name: n("db-sg") } }, parent);
      new aws.vpc.SecurityGroupIngressRule(n("db-from-service"), { securityGroupId: dbSg.id, ...tcp(port), referencedSecurityGroupId: serviceSg.id, description: "from the service tasks" }, parent);
      new aws.vpc.SecurityGroupEgressRule(n("service-to-db"), { securityGroupId: serviceSg.id, ...tcp(port), referencedSecurityGroupId: dbSg.id, description: "to the database" }, parent);
      this.databaseSecurityGroupId = dbSg.id;
    }

    const ecsSourceArn = `arn:aws:ecs:${args.aws.region}:${args.aws.accountId}:*`;
    const trust = JSON.stringify(assumeRolePolicy("ecs-tasks.amazonaws.com", args.aws, ecsSourceArn));
    const executionRole = new aws.iam.Role(n("execution"), { description: `ECS starts ${name} tasks with this role: image pull, logs, secrets`, assumeRolePolicy: trust }, parent);
    const secrets = secretArns(args.aws, args.secrets ?? {});
    const repositoryArn: pulumi.Output<string | undefined> = args.repositoryArn === undefined ? pulumi.output(undefined) : pulumi.output(args.repositoryArn);
    new aws.iam.RolePolicy(
      n("execution"),
      {
        role: executionRole.id,
        policy: pulumi
          .all([repositoryArn, pulumi.output(args.logGroupArn)])
          .apply(([repo, logGroupArn]) => JSON.stringify(executionRolePolicy({ repositoryArn: repo, logGroupArn, ssmParameterArns: secrets.ssm, secretArns: secrets.secretsManager }))),
      },
      parent,
    );

    // The application's own identity. It gets nothing by default: its logs go through the execution
    // role, and whatever AWS access the app needs is added here, scoped, when it needs it.
    const taskRole = new aws.iam.Role(n("task"), { description: `Application identity of ${name} tasks; no permissions by default`, assumeRolePolicy: trust }, parent);

    this.loadBalancerSecurityGroupId = lbSg.id;
    this.serviceSecurityGroupId = serviceSg.id;
    this.executionRoleArn = executionRole.arn;
    this.taskRoleArn = taskRole.arn;
    this.taskRoleName = taskRole.name;
    this.executionRoleName = executionRole.name;
    this.registerOutputs({
      loadBalancerSecurityGroupId: this.loadBalancerSecurityGroupId,
      serviceSecurityGroupId: this.serviceSecurityGroupId,
      databaseSecurityGroupId: this.databaseSecurityGroupId,
      executionRoleArn: this.executionRoleArn,
      taskRoleArn: this.taskRoleArn,
      taskRoleName: this.taskRoleName,
      executionRoleName: this.executionRoleName,
    });
  }
}
