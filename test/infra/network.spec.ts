import { expect } from "chai";
import type { Evaluation } from "../../automation/program/evaluate";
import { Network, natLayout, subnetLayout, validateNetworkArgs, zoneForSlot, type NetworkArgs } from "../../infra/network";
import { ACCOUNT, REGION, devInput, evaluateDev, evaluateProd, evaluateSerially, evaluated, input, list, named, ofType, programConfig, statements, variant } from "./fixtures";

const VPC = "aws:ec2/vpc:Vpc";
const SUBNET = "aws:ec2/subnet:Subnet";
const NAT = "aws:ec2/natGateway:NatGateway";
const EIP = "aws:ec2/eip:Eip";
const ROUTE = "aws:ec2/route:Route";
const ROUTE_TABLE = "aws:ec2/routeTable:RouteTable";
const ASSOCIATION = "aws:ec2/routeTableAssociation:RouteTableAssociation";

describe("infra/network", () => {
  let dev: Evaluation;
  let prod: Evaluation;
  let noNat: Evaluation;

  before(async () => {
    dev = await evaluateDev();
    prod = await evaluateProd();
    noNat = await evaluated("dev-no-nat", () => programConfig(variant(devInput, (s) => (s.network.natGateways = "none"))));
  });

  describe("VPC and subnets", () => {
    it("creates one VPC on the configured block with DNS support and hostnames", () => {
      const vpcs = ofType(prod, VPC);
      expect(vpcs.map((v) => v.name)).to.deep.equal(["web-prod-vpc"]);
      expect(vpcs[0].inputs).to.include({ cidrBlock: "10.40.0.0/16", enableDnsSupport: true, enableDnsHostnames: true });
    });

    it("puts public subnet i at /20 block i and private subnet i at block 8+i", () => {
      const cidr = (name: string) => input(named(prod, SUBNET, name), "cidrBlock");
      expect(["a", "b", "c"].map((z) => cidr(`web-prod-public-${z}`))).to.deep.equal(["10.40.0.0/20", "10.40.16.0/20", "10.40.32.0/20"]);
      expect(["a", "b", "c"].map((z) => cidr(`web-prod-private-${z}`))).to.deep.equal(["10.40.128.0/20", "10.40.144.0/20", "10.40.160.0/20"]);
    });

    it("creates a public and a private subnet in each configured zone", () => {
      expect(ofType(dev, SUBNET)).to.have.length(4);
      expect(ofType(prod, SUBNET)).to.have.length(6);
      const zones = ofType(prod, SUBNET).map((s) => `${input(s, "availabilityZone")}:${(input<Record<string, string>>(s, "tags")).Tier}`);
      expect(zones.sort()).to.deep.equal(["us-east-1a:private", "us-east-1a:public", "us-east-1b:private", "us-east-1b:public", "us-east-1c:private", "us-east-1c:public"]);
    });

    it("gives no instance a public address at launch, even in public subnets", () => {
      for (const subnet of ofType(prod, SUBNET)) expect(input(subnet, "mapPublicIpOnLaunch"), subnet.name).to.equal(false);
    });

    it("strips every rule from the VPC's default security group", () => {
      const sg = named(prod, "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup", "web-prod-default-sg");
      expect(input(sg, "ingress") ?? []).to.deep.equal([]);
      expect(input(sg, "egress") ?? []).to.deep.equal([]);
    });
  });

  describe("routing", () => {
    it("routes the public subnets to the internet gateway", () => {
      const igw = named(dev, "aws:ec2/internetGateway:InternetGateway", "web-dev-igw");
      const route = named(dev, ROUTE, "web-dev-public-default");
      const table = named(dev, ROUTE_TABLE, "web-dev-public-rt");
      expect(route.inputs).to.include({ destinationCidrBlock: "0.0.0.0/0", gatewayId: igw.id, routeTableId: table.id });
      for (const z of ["a", "b"]) {
        const assoc = named(dev, ASSOCIATION, `web-dev-public-${z}`);
        expect(assoc.inputs).to.include({ routeTableId: table.id, subnetId: named(dev, SUBNET, `web-dev-public-${z}`).id });
      }
    });

    it("with a single NAT, puts one NAT and EIP in the first public subnet and routes every private subnet through it", () => {
      const nats = ofType(dev, NAT);
      expect(nats.map((n) => n.name)).to.deep.equal(["web-dev-nat-a"]);
      expect(ofType(dev, EIP)).to.have.length(1);
      expect(input(nats[0], "subnetId")).to.equal(named(dev, SUBNET, "web-dev-public-a").id);
      expect(input(nats[0], "allocationId")).to.equal(named(dev, EIP, "web-dev-nat-a").id);
      for (const z of ["a", "b"]) {
        expect(input(named(dev, ROUTE, `web-dev-private-${z}-default`), "natGatewayId"), z).to.equal(nats[0].id);
      }
    });

    it("with a NAT per zone, routes each private subnet through its own zone's NAT", () => {
      expect(ofType(prod, NAT)).to.have.length(3);
      expect(ofType(prod, EIP)).to.have.length(3);
      for (const z of ["a", "b", "c"]) {
        const nat = named(prod, NAT, `web-prod-nat-${z}`);
        expect(input(nat, "subnetId"), z).to.equal(named(prod, SUBNET, `web-prod-public-${z}`).id);
        const route = named(prod, ROUTE, `web-prod-private-${z}-default`);
        expect(route.inputs, z).to.include({ natGatewayId: nat.id, destinationCidrBlock: "0.0.0.0/0", routeTableId: named(prod, ROUTE_TABLE, `web-prod-private-${z}-rt`).id });
        expect(input(named(prod, ASSOCIATION, `web-prod-private-${z}`), "subnetId"), z).to.equal(named(prod, SUBNET, `web-prod-private-${z}`).id);
      }
    });

    it("with no NAT, creates no NAT or EIP and gives private subnets no default route", () => {
      expect(ofType(noNat, NAT)).to.be.empty;
      expect(ofType(noNat, EIP)).to.be.empty;
      expect(ofType(noNat, ROUTE).map((r) => r.name)).to.deep.equal(["web-dev-public-default"]);
      expect(ofType(noNat, ROUTE_TABLE).map((r) => r.name).sort()).to.deep.equal(["web-dev-private-a-rt", "web-dev-private-b-rt", "web-dev-public-rt"]);
    });
  });

  describe("availability zones", () => {
    const ZONES_TOKEN = "aws:index/getAvailabilityZones:getAvailabilityZones";

    it("places subnets in the zones the account reports at deploy time, not the region model's names", async () => {
      // An account where us-east-1a is not available: slot i takes the account's i-th zone.
      let asked: Record<string, unknown> | undefined;
      const ev = await evaluateSerially(programConfig(devInput), undefined, {
        call: (token, inputs) => (token === ZONES_TOKEN ? ((asked = inputs), { id: REGION, names: ["us-east-1b", "us-east-1d"], zoneIds: ["use1-az2", "use1-az4"] }) : undefined),
      });
      expect(asked).to.deep.include({ state: "available" });
      expect(input(named(ev, SUBNET, "web-dev-public-a"), "availabilityZone")).to.equal("us-east-1b");
      expect(input(named(ev, SUBNET, "web-dev-private-b"), "availabilityZone")).to.equal("us-east-1d");
    });

    it("refuses, naming availabilityZones, when the account has fewer zones available than asked", () => {
      expect(() => zoneForSlot("web-dev", REGION, ["us-east-1a"], 2, 0)).to.throw(/`availabilityZones` asks for 2 zones, but the account has 1 available in us-east-1 \(us-east-1a\)/);
      expect(zoneForSlot("web-dev", REGION, ["us-east-1b", "us-east-1d"], 2, 1)).to.equal("us-east-1d");
    });

    it("offline and in validation, answers the lookup from the region model", () => {
      expect(["a", "b", "c"].map((z) => input(named(prod, SUBNET, `web-prod-public-${z}`), "availabilityZone"))).to.deep.equal(["us-east-1a", "us-east-1b", "us-east-1c"]);
    });
  });

  describe("VPC endpoints", () => {
    const ENDPOINT = "aws:ec2/vpcEndpoint:VpcEndpoint";

    it("with no NAT, reaches ECR, S3, logs and the secret stores through VPC endpoints", () => {
      const services = ofType(noNat, ENDPOINT).map((r) => input<string>(r, "serviceName")).sort();
      expect(services).to.deep.equal(["ecr.api", "ecr.dkr", "logs", "s3", "secretsmanager", "ssm"].map((s) => `com.amazonaws.${REGION}.${s}`).sort());
    });

    it("puts the S3 gateway endpoint on every private route table", () => {
      const s3 = ofType(noNat, ENDPOINT).find((r) => input<string>(r, "serviceName").endsWith(".s3"))!;
      expect(input(s3, "vpcEndpointType")).to.equal("Gateway");
      expect(input<string[]>(s3, "routeTableIds")).to.have.length(2);
    });

    it("opens the interface endpoints to HTTPS from inside the VPC only", () => {
      const rule = named(noNat, "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule", "web-dev-endpoints-https");
      expect(rule.inputs).to.include({ cidrIpv4: devInput.network.cidr, fromPort: 443, toPort: 443, ipProtocol: "tcp" });
    });

    it("adds the S3 gateway endpoint even with a NAT, so ECR layer pulls skip NAT data charges", () => {
      for (const ev of [dev, prod]) {
        const s3 = ofType(ev, ENDPOINT).filter((r) => input<string>(r, "serviceName") === `com.amazonaws.${REGION}.s3`);
        expect(s3, ev.stack).to.have.length(1);
        expect(input(s3[0], "vpcEndpointType")).to.equal("Gateway");
        const privateTables = ofType(ev, ROUTE_TABLE).filter((t) => /-private-[a-z]-rt$/.test(t.name)).map((t) => t.id);
        expect(input<string[]>(s3[0], "routeTableIds")).to.have.members(privateTables);
      }
    });

    it("creates no interface endpoints when a NAT gives the tasks a way out", () => {
      expect(ofType(dev, ENDPOINT).filter((r) => input(r, "vpcEndpointType") === "Interface")).to.be.empty;
    });
  });

  describe("flow logs", () => {
    it("logs ALL traffic of the VPC to a log group kept for flowLogRetentionDays", () => {
      const group = named(dev, "aws:cloudwatch/logGroup:LogGroup", "web-dev-flow-logs");
      expect(group.inputs).to.include({ name: "/vpc/web-dev/flow-logs", retentionInDays: 14 });
      const flow = named(dev, "aws:ec2/flowLog:FlowLog", "web-dev-flow-logs");
      expect(flow.inputs).to.include({ trafficType: "ALL", logDestinationType: "cloud-watch-logs", logDestination: group.outputs.arn, vpcId: named(dev, VPC, "web-dev-vpc").id });
      expect(input(flow, "iamRoleArn")).to.equal(named(dev, "aws:iam/role:Role", "web-dev-flow-logs").outputs.arn);
    });

    it("defaults flow-log retention to 30 days", () => {
      expect(input(named(prod, "aws:cloudwatch/logGroup:LogGroup", "web-prod-flow-logs"), "retentionInDays")).to.equal(30);
    });

    it("trusts only the flow-logs service, on behalf of this account", () => {
      const [trust] = statements(named(dev, "aws:iam/role:Role", "web-dev-flow-logs"), "assumeRolePolicy");
      expect(trust.Principal).to.deep.equal({ Service: "vpc-flow-logs.amazonaws.com" });
      expect(trust.Condition?.StringEquals).to.deep.equal({ "aws:SourceAccount": ACCOUNT });
      expect(trust.Condition?.ArnLike).to.deep.equal({ "aws:SourceArn": `arn:aws:ec2:${REGION}:${ACCOUNT}:vpc-flow-log/*` });
    });

    it("lets the flow-log role write only to its own log group", () => {
      const groupArn = named(dev, "aws:cloudwatch/logGroup:LogGroup", "web-dev-flow-logs").outputs.arn as string;
      const policy = statements(named(dev, "aws:iam/rolePolicy:RolePolicy", "web-dev-flow-logs"), "policy");
      const write = policy.find((st) => st.Sid === "WriteFlowLogs")!;
      expect(list(write.Action)).to.have.members(["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"]);
      expect(list(write.Resource)).to.have.members([groupArn, `${groupArn}:*`]);
    });

    it("grants every action AWS lists for flow-log delivery, DescribeLogGroups on the account's groups only", () => {
      const policy = statements(named(dev, "aws:iam/rolePolicy:RolePolicy", "web-dev-flow-logs"), "policy");
      const actions = policy.flatMap((st) => list(st.Action));
      expect(actions).to.include.members(["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogGroups", "logs:DescribeLogStreams"]);
      const find = policy.find((st) => list(st.Action).includes("logs:DescribeLogGroups"))!;
      expect(list(find.Action)).to.deep.equal(["logs:DescribeLogGroups"]);
      expect(list(find.Resource)).to.deep.equal([`arn:aws:logs:${REGION}:${ACCOUNT}:log-group:*`]);
    });

    it("refuses a flow-log retention CloudWatch does not accept, naming flowLogRetentionDays", () => {
      const args: NetworkArgs = { cidr: "10.0.0.0/16", availabilityZones: ["us-east-1a", "us-east-1b"], natGateways: "single", flowLogRetentionDays: 45, aws: { region: REGION, accountId: ACCOUNT } };
      expect(() => validateNetworkArgs("web-dev", args)).to.throw(/`flowLogRetentionDays` is 45; CloudWatch Logs accepts only 1, 3, 5/);
    });
  });

  describe("layout helpers", () => {
    it("splits a /22 into /26 subnets", () => {
      const [a] = subnetLayout("10.0.4.0/22", ["eu-west-1a", "eu-west-1b"]);
      expect(a).to.deep.equal({ zone: "eu-west-1a", suffix: "a", publicCidr: "10.0.4.0/26", privateCidr: "10.0.6.0/26" });
    });

    it("plans NATs per strategy", () => {
      expect(natLayout("none", 3)).to.deep.equal({ natZones: [], routeVia: [undefined, undefined, undefined] });
      expect(natLayout("single", 3)).to.deep.equal({ natZones: [0], routeVia: [0, 0, 0] });
      expect(natLayout("one-per-az", 3)).to.deep.equal({ natZones: [0, 1, 2], routeVia: [0, 1, 2] });
    });
  });

  describe("argument checks", () => {
    const args: NetworkArgs = { cidr: "10.0.0.0/16", availabilityZones: ["us-east-1a", "us-east-1b"], natGateways: "single", aws: { region: REGION, accountId: ACCOUNT } };

    it("refuses a single zone, naming availabilityZones", () => {
      expect(() => new Network("web-dev", { ...args, availabilityZones: ["us-east-1a"] })).to.throw(/`availabilityZones`.*2 to 6/);
    });

    it("refuses a block too small to split, naming cidr", () => {
      expect(() => new Network("web-dev", { ...args, cidr: "10.0.0.0/24" })).to.throw(/`cidr` is \/24/);
    });

    it("refuses an unknown NAT strategy, naming natGateways", () => {
      expect(() => new Network("web-dev", { ...args, natGateways: "two" as never })).to.throw(/`natGateways`/);
    });
  });
});
