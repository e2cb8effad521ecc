import { expect } from "chai";
import type { Evaluation } from "../../automation/program/evaluate";
import { PROJECT } from "../../infra/config";
import { baseName, childName, ecrRepositoryArn, secretValueFrom, zoneSuffix } from "../../infra/naming";
import { Network } from "../../infra/network";
import { checkPolicies } from "../../infra/policies";
import { Registry } from "../../infra/registry";
import { TAGGABLE_TYPES, requiredTags } from "../../infra/tags";
import { ACCOUNT, REGION, devInput, evaluateDev, evaluateProd, evaluateSerially, input, named, ofType, programConfig, prodInput, variant } from "./fixtures";

/** Types the program creates that take no tags in AWS. */
const UNTAGGABLE = new Set([
  "random:index/randomId:RandomId",
  "aws:route53/record:Record",
  "aws:acm/certificateValidation:CertificateValidation",
  "aws:sns/topicSubscription:TopicSubscription",
  "aws:ec2/route:Route",
  "aws:ec2/routeTableAssociation:RouteTableAssociation",
  "aws:iam/rolePolicy:RolePolicy",
  "aws:ecr/lifecyclePolicy:LifecyclePolicy",
  "docker:index/image:Image",
  "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
  "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
  "aws:s3/bucketVersioning:BucketVersioning",
  "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration",
  "aws:s3/bucketPolicy:BucketPolicy",
  "aws:appautoscaling/policy:Policy",
  "aws:kms/alias:Alias",
]);

const COMPONENTS = ["Network", "Observability", "Registry", "Security", "Storage", "Service", "Alarms"].map((c) => `deployer:infra:${c}`);

describe("infra/stack", () => {
  let dev: Evaluation;
  let prod: Evaluation;

  before(async () => {
    dev = await evaluateDev();
    prod = await evaluateProd();
  });

  describe("composition", () => {
    it("composes the seven components, each named <app>-<env>", () => {
      const components = prod.resources.filter((r) => r.type.startsWith("deployer:infra:"));
      expect(components.map((c) => `${c.type}::${c.name}`)).to.deep.equal(COMPONENTS.map((t) => `${t}::web-prod`));
    });

    it("nests every cloud resource under a component, in its URN and its parent", () => {
      for (const r of prod.resources.filter((x) => x.custom)) {
        expect(r.urn, r.name).to.match(/::deployer:infra:[A-Za-z]+\$[^:]+:[^:]+:[^:]+::/);
        expect(r.parent, r.name).to.match(/::deployer:infra:[A-Za-z]+::web-prod$/);
      }
    });

    it("names every cloud resource <app>-<env>-<role>", () => {
      for (const r of prod.resources.filter((x) => x.custom)) expect(r.name).to.match(/^web-prod-[a-z0-9-]+$/);
    });

    it("gives every resource a distinct URN", () => {
      expect(new Set(prod.resources.map((r) => r.urn)).size).to.equal(prod.resources.length);
    });
  });

  describe("tags", () => {
    const expected = (env: string, extra: Record<string, string>) => requiredTags(env, PROJECT, extra);

    it("tags every taggable resource with Environment, Project, ManagedBy and the environment's own tags", () => {
      for (const [ev, env, extra] of [[dev, "dev", { CostCenter: "1234", Owner: "platform" }], [prod, "prod", { CostCenter: "5678", Owner: "platform" }]] as const) {
        const taggable = ev.resources.filter((r) => TAGGABLE_TYPES.has(r.type));
        expect(taggable.length).to.be.above(30);
        for (const r of taggable) expect(input(r, "tags"), r.name).to.deep.include(expected(env, extra));
      }
    });

    it("keeps a resource's own tags alongside the required ones", () => {
      expect(input(named(dev, "aws:ec2/subnet:Subnet", "web-dev-private-a"), "tags")).to.include({ Name: "web-dev-private-a", Tier: "private", Environment: "dev" });
    });

    it("creates no resource type that is neither tagged nor known to take no tags", () => {
      const types = new Set([...dev.resources, ...prod.resources].filter((r) => r.custom).map((r) => r.type));
      const unknown = [...types].filter((t) => !TAGGABLE_TYPES.has(t) && !UNTAGGABLE.has(t));
      expect(unknown).to.deep.equal([]);
    });
  });

  describe("outputs", () => {
    const KEYS = ["vpcId", "url", "albDnsName", "clusterName", "serviceName", "taskDefinitionArn", "targetGroupArn", "repositoryUrl", "imageRef", "logGroupName", "alarmTopicArn"];

    it("returns every output a deployment records, none of them secret", () => {
      expect(Object.keys(dev.outputs)).to.have.members(KEYS);
      for (const [key, out] of Object.entries(dev.outputs)) {
        expect(out.value, key).to.be.a("string").and.not.be.empty;
        expect(out.secret, key).to.equal(false);
      }
    });

    it("adds databaseEndpoint and databaseSecretArn only when there is a database", () => {
      expect(Object.keys(prod.outputs)).to.have.members([...KEYS, "databaseEndpoint", "databaseSecretArn"]);
      expect(dev.outputs).to.not.have.property("databaseEndpoint");
      expect(dev.outputs).to.not.have.property("databaseSecretArn");
    });
  });

  describe("policy rules", () => {
    it("passes every rule in development and production", () => {
      for (const [ev, production, env, tags] of [[dev, false, "dev", devInput.tags], [prod, true, "prod", prodInput.tags]] as const) {
        const violations = checkPolicies(ev.resources, { environment: env, production, requiredTags: requiredTags(env, PROJECT, tags ?? {}) });
        expect(violations, env).to.deep.equal([]);
      }
    });
  });

  describe("production compared with development", () => {
    const count = (ev: Evaluation, type: string) => ofType(ev, type).length;

    it("has a NAT per zone instead of one", () => {
      expect([count(dev, "aws:ec2/natGateway:NatGateway"), count(prod, "aws:ec2/natGateway:NatGateway")]).to.deep.equal([1, 3]);
    });

    it("has a database, its security group and its endpoint", () => {
      expect([count(dev, "aws:rds/instance:Instance"), count(prod, "aws:rds/instance:Instance")]).to.deep.equal([0, 1]);
      expect([count(dev, "aws:ec2/securityGroup:SecurityGroup"), count(prod, "aws:ec2/securityGroup:SecurityGroup")]).to.deep.equal([2, 3]);
    });

    it("serves HTTPS and redirects HTTP instead of serving plain HTTP", () => {
      expect(ofType(dev, "aws:lb/listener:Listener").map((l) => input(l, "protocol"))).to.deep.equal(["HTTP"]);
      expect(ofType(prod, "aws:lb/listener:Listener").map((l) => input(l, "protocol"))).to.have.members(["HTTPS", "HTTP"]);
    });

    it("protects its data and load balancer from deletion", () => {
      const flags = (ev: Evaluation) => [
        input(ofType(ev, "aws:lb/loadBalancer:LoadBalancer")[0], "enableDeletionProtection"),
        input(ofType(ev, "aws:s3/bucket:Bucket")[0], "forceDestroy"),
        input(ofType(ev, "aws:ecr/repository:Repository")[0], "forceDelete"),
      ];
      expect(flags(dev)).to.deep.equal([false, true, true]);
      expect(flags(prod)).to.deep.equal([true, false, false]);
    });

    it("runs more tasks", () => {
      const desired = (ev: Evaluation) => input(ofType(ev, "aws:ecs/service:Service")[0], "desiredCount");
      expect([desired(dev), desired(prod)]).to.deep.equal([1, 3]);
    });
  });

  describe("names", () => {
    it("lets two components of the same type coexist under different names", async () => {
      const ev = await evaluateSerially(programConfig(devInput), () => {
        const target = { region: REGION, accountId: ACCOUNT };
        for (const app of ["web", "api"]) {
          new Network(baseName(app, "dev"), { cidr: app === "web" ? "10.1.0.0/16" : "10.2.0.0/16", availabilityZones: ["us-east-1a", "us-east-1b"], natGateways: "none", aws: target });
          new Registry(baseName(app, "dev"), { image: `ghcr.io/acme/${app}`, version: "1.0.0" });
        }
        return {};
      });
      expect(new Set(ev.resources.map((r) => r.urn)).size).to.equal(ev.resources.length);
      expect(ofType(ev, "aws:ec2/vpc:Vpc").map((v) => v.name)).to.have.members(["web-dev-vpc", "api-dev-vpc"]);
      expect(ofType(ev, "aws:cloudwatch/logGroup:LogGroup").map((g) => input(g, "name"))).to.have.members(["/vpc/web-dev/flow-logs", "/vpc/api-dev/flow-logs"]);
    });

    it("derives names, zone letters and secret ARNs", () => {
      expect(childName(baseName("web", "prod"), "public-a")).to.equal("web-prod-public-a");
      expect(zoneSuffix("ap-northeast-1d")).to.equal("d");
      expect(secretValueFrom({ region: REGION, accountId: ACCOUNT }, { ssm: "/a/b" })).to.equal(`arn:aws:ssm:${REGION}:${ACCOUNT}:parameter/a/b`);
      expect(ecrRepositoryArn("ghcr.io/acme/web")).to.equal(undefined);
    });
  });

  describe("evaluation", () => {
    it("can run again in the same process with different settings, sharing nothing with the last run", async () => {
      const qa = await evaluateSerially(programConfig(variant(devInput, (s) => (s.environment = "qa"))));
      expect(qa.resources.every((r) => r.urn.startsWith("urn:pulumi:qa::"))).to.equal(true);
      expect(qa.resources.length).to.equal(dev.resources.length);
      expect(input(named(qa, "aws:ec2/vpc:Vpc", "web-qa-vpc"), "tags")).to.include({ Environment: "qa" });
    });

    it("masks secrets nested in resource inputs, such as the registry password the image push uses", async () => {
      const image = named(dev, "docker:index/image:Image", "web-dev-image");
      expect(input(image, "registry")).to.equal("[secret]");
      expect(JSON.stringify(dev.resources)).not.to.contain("offline-registry-password");
    });

    it("reports a program that throws, and runs the next one normally", async () => {
      const broken = programConfig(variant(prodInput, (s) => (delete s.app.certificateArn, delete s.app.domain)));
      let error: unknown;
      await evaluateSerially(broken).catch((e: unknown) => (error = e));
      expect(String(error)).to.match(/Service "web-prod": `domain` is required in production/);
      const again = await evaluateSerially(programConfig(variant(devInput, (s) => (s.environment = "qa2"))));
      expect(again.outputs.url.value).to.match(/^http:\/\/web-qa2-alb-/);
    });
  });
});
