/**
 * Network: a VPC with a public and a private subnet in each zone, NAT per strategy, and flow logs.
 * The ALB lives in the public subnets; tasks and the database live in the private ones.
 */
import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import { parseCidr, subnetCidr } from "./cidr";
import { LOG_RETENTION_DAYS } from "./config";
import { ComponentArgumentError, checkName, childName, zoneSuffix, type AwsTarget } from "./naming";
import { assumeRolePolicy, type PolicyDocument } from "./security";

export const NETWORK_TYPE = "deployer:infra:Network";

export type NatStrategy = "none" | "single" | "one-per-az";

export interface NetworkArgs {
  /** The VPC block, /16 to /22. It is split into /(prefix+4) subnets: public i at block i, private i at block 8+i. */
  readonly cidr: string;
  /**
   * Zone slots, 2 to 6, named from the region model (infra/regions.ts): one public and one private
   * subnet each. The names give the children their letters and the count; where each subnet lives
   * follows `zoneLookup`.
   */
  readonly availabilityZones: readonly string[];
  /**
   * `deploy-time` (the default): the zones are the account's, read from EC2 when the program runs
   * (`aws.getAvailabilityZones`, available and not opt-in), slot i in the i-th. Zone names map to
   * different physical zones per account, and an account may lack a modelled one.
   * `static`: the slot names themselves, as the region model lists them.
   */
  readonly zoneLookup?: "deploy-time" | "static";
  /**
   * `none`: private subnets have no route out (tasks then need VPC endpoints to reach ECR and logs);
   * `single`: one NAT in the first zone shared by every private subnet (cheap, one zone's failure cuts egress);
   * `one-per-az`: a NAT in each zone, each private subnet using its own zone's.
   */
  readonly natGateways: NatStrategy;
  /** Days flow logs are kept. Default 30. */
  readonly flowLogRetentionDays?: number;
  /** Account and region, for the flow-log role's confused-deputy conditions. */
  readonly aws: AwsTarget;
}

/** One zone's pair of subnets. */
export interface ZoneLayout {
  readonly zone: string;
  /** The zone's letter, used in child names (`web-prod-public-a`). */
  readonly suffix: string;
  readonly publicCidr: string;
  readonly privateCidr: string;
}

/**
 * Public subnet i takes block i and private subnet i block 8+i of the /(prefix+4) split, so adding
 * a zone later never moves an existing subnet (which would replace it and everything inside).
 */
export function subnetLayout(cidr: string, zones: readonly string[]): ZoneLayout[] {
  const parent = parseCidr(cidr);
  if (typeof parent === "string") throw new Error(parent);
  const prefix = parent.prefix + 4;
  return zones.map((zone, i) => ({
    zone,
    suffix: zoneSuffix(zone),
    publicCidr: subnetCidr(cidr, prefix, i),
    privateCidr: subnetCidr(cidr, prefix, 8 + i),
  }));
}

/** Which NATs exist (by zone index) and which NAT each zone's private route table uses. */
export interface NatLayout {
  readonly natZones: readonly number[];
  /** For each zone, the index into `natZones` its private route table routes through; undefined: no route out. */
  readonly routeVia: readonly (number | undefined)[];
}

export function natLayout(strategy: NatStrategy, zoneCount: number): NatLayout {
  const zones = Array.from({ length: zoneCount }, (_, i) => i);
  switch (strategy) {
    case "none":
      return { natZones: [], routeVia: zones.map(() => undefined) };
    case "single":
      return { natZones: [0], routeVia: zones.map(() => 0) };
    case "one-per-az":
      return { natZones: zones, routeVia: zones };
  }
}

/**
 * The flow-log service may write streams in its own log group and nowhere else. AWS lists the two
 * Describe actions as required too: the service looks the group and its streams up before writing.
 */
export function flowLogsPolicy(logGroupArn: string): PolicyDocument {
  return {
    Version: "2012-10-17",
    Statement: [
      {
        Sid: "WriteFlowLogs",
        Effect: "Allow",
        Action: ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
        Resource: [logGroupArn, `${logGroupArn}:*`],
      },
      // DescribeLogGroups lists groups, so IAM authorizes it on the account's log-group pattern, not
      // on one group: read-only, and it reveals group names, never their events.
      { Sid: "FindFlowLogGroup", Effect: "Allow", Action: "logs:DescribeLogGroups", Resource: logGroupArn.replace(/:log-group:.*$/, ":log-group:*") },
    ],
  };
}

export function validateNetworkArgs(name: string, args: NetworkArgs): void {
  checkName(NETWORK_TYPE, name);
  const fail = (arg: string, reason: string) => new ComponentArgumentError(NETWORK_TYPE, name, arg, reason);
  const cidr = parseCidr(args.cidr);
  if (typeof cidr === "string") throw fail("cidr", cidr.replace(/^"[^"]*" /, ""));
  if (cidr.prefix < 16 || cidr.prefix > 22) throw fail("cidr", `is /${cidr.prefix}; give /16 to /22 so each zone gets a /${cidr.prefix + 4} public and private subnet`);
  const zones = args.availabilityZones;
  if (zones.length < 2 || zones.length > 6) throw fail("availabilityZones", `has ${zones.length} zones; give 2 to 6 (an ALB needs two)`);
  if (new Set(zones).size !== zones.length) throw fail("availabilityZones", "lists a zone twice");
  if (!["none", "single", "one-per-az"].includes(args.natGateways)) throw fail("natGateways", `is "${args.natGateways}"; give none, single or one-per-az`);
  const retention = args.flowLogRetentionDays;
  if (retention !== undefined && !(LOG_RETENTION_DAYS as readonly number[]).includes(retention)) throw fail("flowLogRetentionDays", `is ${retention}; CloudWatch Logs accepts only ${LOG_RETENTION_DAYS.join(", ")}`);
}

/** What a task needs without internet access: image pulls, logs, and secrets from SSM / Secrets Manager. */
export const INTERFACE_ENDPOINTS = ["ecr.api", "ecr.dkr", "logs", "ssm", "secretsmanager"] as const;

export class Network extends pulumi.ComponentResource {
  public readonly vpcId: pulumi.Output<string>;
  public readonly publicSubnetIds: pulumi.Output<string>[];
  public readonly privateSubnetIds: pulumi.Output<string>[];
  /** One per NAT gateway; empty with `natGateways: none`. */
  public readonly natGatewayIds: pulumi.Output<string>[];
  public readonly flowLogGroupName: pulumi.Output<string>;

  constructor(name: string, args: NetworkArgs, opts?: pulumi.ComponentResourceOptions) {
    validateNetworkArgs(name, args);
    super(NETWORK_TYPE, name, {}, opts);
    const parent = { parent: this };
    const n = (role: string) => childName(name, role);
    const nameTag = (role: string) => ({ Name: n(role) });

    const vpc = new aws.ec2.Vpc(n("vpc"), { cidrBlock: args.cidr, enableDnsSupport: true, enableDnsHostnames: true, tags: nameTag("vpc") }, parent);

    // The default security group allows all traffic between its members; adopting it with no rules
    // means nothing can use it by accident (CIS AWS 5.4).
    new aws.ec2.DefaultSecurityGroup(n("default-sg"), { vpcId: vpc.id, tags: nameTag("default-sg") }, parent);

    const igw = new aws.ec2.InternetGateway(n("igw"), { vpcId: vpc.id, tags: nameTag("igw") }, parent);
    const layout = subnetLayout(args.cidr, args.availabilityZones);
    const zoneOf = deployedZones(name, args, parent);

    const publicSubnets = layout.map(
      (z, i) =>
        // Nothing in the public subnets needs an address at launch: the ALB and NATs get their own.
        new aws.ec2.Subnet(n(`public-${z.suffix}`), { vpcId: vpc.id, cidrBlock: z.publicCidr, availabilityZone: zoneOf(z, i), mapPublicIpOnLaunch: false, tags: { ...nameTag(`public-${z.suffix}`), Tier: "public" } }, parent),
    );
    const privateSubnets = layout.map(
      (z, i) => new aws.ec2.Subnet(n(`private-${z.suffix}`), { vpcId: vpc.id, cidrBlock: z.privateCidr, availabilityZone: zoneOf(z, i), mapPublicIpOnLaunch: false, tags: { ...nameTag(`private-${z.suffix}`), Tier: "private" } }, parent),
    );

    const publicRoutes = new aws.ec2.RouteTable(n("public-rt"), { vpcId: vpc.id, tags: nameTag("public-rt") }, parent);
    new aws.ec2.Route(n("public-default"), { routeTableId: publicRoutes.id, destinationCidrBlock: "0.0.0.0/0", gatewayId: igw.id }, parent);
    layout.forEach((z, i) => new aws.ec2.RouteTableAssociation(n(`public-${z.suffix}`), { subnetId: publicSubnets[i].id, routeTableId: publicRoutes.id }, parent));

    const nats = natLayout(args.natGateways, layout.length);
    const natGateways = nats.natZones.map((zi) => {
      const z = layout[zi];
      const eip = new aws.ec2.Eip(n(`nat-${z.suffix}`), { domain: "vpc", tags: nameTag(`nat-${z.suffix}`) }, parent);
      // AWS: a NAT gateway only works once the VPC has an internet gateway attached.
      return new aws.ec2.NatGateway(n(`nat-${z.suffix}`), { allocationId: eip.id, subnetId: publicSubnets[zi].id, connectivityType: "public", tags: nameTag(`nat-${z.suffix}`) }, { parent: this, dependsOn: [igw] });
    });

    // A route table per zone whatever the strategy, so moving between strategies changes routes,
    // never the tables or their associations.
    const privateTables = layout.map((z, i) => {
      const table = new aws.ec2.RouteTable(n(`private-${z.suffix}-rt`), { vpcId: vpc.id, tags: nameTag(`private-${z.suffix}-rt`) }, parent);
      new aws.ec2.RouteTableAssociation(n(`private-${z.suffix}`), { subnetId: privateSubnets[i].id, routeTableId: table.id }, parent);
      const via = nats.routeVia[i];
      if (via !== undefined) {
        new aws.ec2.Route(n(`private-${z.suffix}-default`), { routeTableId: table.id, destinationCidrBlock: "0.0.0.0/0", natGatewayId: natGateways[via].id }, parent);
      }
      return table;
    });

    // Always, NAT or not: ECR serves image layers from S3, and through a NAT every pulled byte is
    // billed as NAT data processing. The gateway endpoint is free and routes S3 traffic past the NAT.
    new aws.ec2.VpcEndpoint(n("s3-endpoint"), { vpcId: vpc.id, serviceName: `com.amazonaws.${args.aws.region}.s3`, vpcEndpointType: "Gateway", routeTableIds: privateTables.map((t) => t.id), tags: nameTag("s3-endpoint") }, parent);

    if (args.natGateways === "none") {
      // Without a NAT, Fargate tasks in the private subnets reach ECR's API, CloudWatch Logs and the
      // secret stores only through interface endpoints.
      const endpointsSg = new aws.ec2.SecurityGroup(n("endpoints-sg"), { vpcId: vpc.id, description: `HTTPS to the VPC endpoints of ${name}`, tags: nameTag("endpoints-sg") }, parent);
      new aws.vpc.SecurityGroupIngressRule(n("endpoints-https"), { securityGroupId: endpointsSg.id, cidrIpv4: args.cidr, ipProtocol: "tcp", fromPort: 443, toPort: 443, description: "HTTPS from inside the VPC" }, parent);
      for (const service of INTERFACE_ENDPOINTS) {
        new aws.ec2.VpcEndpoint(
          n(`${service.replace(".", "-")}-endpoint`),
          { vpcId: vpc.id, serviceName: `com.amazonaws.${args.aws.region}.${service}`, vpcEndpointType: "Interface", privateDnsEnabled: true, subnetIds: privateSubnets.map((s) => s.id), securityGroupIds: [endpointsSg.id], tags: nameTag(`${service}-endpoint`) },
          parent,
        );
      }
    }

    const flowLogGroup = new aws.cloudwatch.LogGroup(n("flow-logs"), { name: flowLogGroupNameOf(name), retentionInDays: args.flowLogRetentionDays ?? 30 }, parent);
    const flowLogRole = new aws.iam.Role(
      n("flow-logs"),
      {
        description: `VPC flow logs of ${name} into ${flowLogGroupNameOf(name)}`,
        assumeRolePolicy: JSON.stringify(assumeRolePolicy("vpc-flow-logs.amazonaws.com", args.aws, `arn:aws:ec2:${args.aws.region}:${args.aws.accountId}:vpc-flow-log/*`)),
      },
      parent,
    );
    const flowLogPolicy = new aws.iam.RolePolicy(n("flow-logs"), { role: flowLogRole.id, policy: flowLogGroup.arn.apply((arn) => JSON.stringify(flowLogsPolicy(arn))) }, parent);
    new aws.ec2.FlowLog(
      n("flow-logs"),
      { vpcId: vpc.id, trafficType: "ALL", logDestinationType: "cloud-watch-logs", logDestination: flowLogGroup.arn, iamRoleArn: flowLogRole.arn, maxAggregationInterval: 60, tags: nameTag("flow-logs") },
      // Without its policy the role cannot write, and the flow log would start in an error state.
      { parent: this, dependsOn: [flowLogPolicy] },
    );

    this.vpcId = vpc.id;
    this.publicSubnetIds = publicSubnets.map((s) => s.id);
    this.privateSubnetIds = privateSubnets.map((s) => s.id);
    this.natGatewayIds = natGateways.map((g) => g.id);
    this.flowLogGroupName = flowLogGroup.name;
    this.registerOutputs({ vpcId: this.vpcId, publicSubnetIds: this.publicSubnetIds, privateSubnetIds: this.privateSubnetIds, natGatewayIds: this.natGatewayIds, flowLogGroupName: this.flowLogGroupName });
  }
}

/** Where slot i's subnets go: the account's i-th available zone, read at deploy time, or the slot's own name. */
function deployedZones(name: string, args: NetworkArgs, opts: pulumi.InvokeOptions): (z: ZoneLayout, i: number) => pulumi.Input<string> {
  if (args.zoneLookup === "static") return (z) => z.zone;
  const zones = aws.getAvailabilityZonesOutput({ state: "available", filters: [{ name: "opt-in-status", values: ["opt-in-not-required"] }] }, opts);
  return (_z, i) => zones.names.apply((names) => zoneForSlot(name, args.aws.region, names, args.availabilityZones.length, i));
}

/** Slot i's zone among the account's available ones; throws, naming `availabilityZones`, when there are too few. */
export function zoneForSlot(name: string, region: string, available: readonly string[], slots: number, i: number): string {
  if (available.length < slots) {
    throw new ComponentArgumentError(NETWORK_TYPE, name, "availabilityZones", `asks for ${slots} zones, but the account has ${available.length} available in ${region} (${available.join(", ") || "none"})`);
  }
  return available[i];
}

/** Named, not auto-named, so operators find a VPC's flow logs by its deployment's name. */
export function flowLogGroupNameOf(name: string): string {
  return `/vpc/${name}/flow-logs`;
}
