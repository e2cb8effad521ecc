import { expect } from "chai";
import fc from "fast-check";
import { checkPolicies, POLICY_RULES, PolicyContext, PolicyResource, Violation } from "../../infra/policies";
import { TAGGABLE_TYPES } from "../../infra/tags";

const TAGS = { CostCenter: "1234", Owner: "platform", Environment: "prod", Project: "pulumi-aws-deployer", ManagedBy: "pulumi" };
const PROD: PolicyContext = { environment: "prod", production: true, requiredTags: TAGS };
const DEV: PolicyContext = { environment: "dev", production: false, requiredTags: { ...TAGS, Environment: "dev" } };

const DIGEST = `sha256:${"ab".repeat(32)}`;
const REPO = "123456789012.dkr.ecr.us-east-1.amazonaws.com/web";

function resource(type: string, name: string, inputs: Record<string, unknown>, id?: string): PolicyResource {
  const tags = TAGGABLE_TYPES.has(type) ? { tags: { ...TAGS } } : {};
  return { urn: `urn:pulumi:prod::pulumi-aws-deployer::${type}::${name}`, type, name, id: id ?? `${name}-id`, inputs: { ...tags, ...inputs } };
}

function container(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    name: "web",
    image: `${REPO}:1.4.2`,
    cpu: 512,
    memory: 1024,
    healthCheck: { command: ["CMD-SHELL", "curl -f http://127.0.0.1:8080/health || exit 1"] },
    ...overrides,
  };
}

function policy(statement: unknown): string {
  return JSON.stringify({ Version: "2012-10-17", Statement: statement });
}

/** A small production stack that passes every rule; each test breaks one thing. */
function baseline(): PolicyResource[] {
  return [
    resource("aws:ec2/vpc:Vpc", "web-prod-vpc", { cidrBlock: "10.40.0.0/16" }),
    resource("aws:ec2/securityGroup:SecurityGroup", "web-prod-alb-sg", { vpcId: "web-prod-vpc-id" }, "sg-alb"),
    resource("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule", "web-prod-alb-https", {
      securityGroupId: "sg-alb", cidrIpv4: "0.0.0.0/0", fromPort: 443, toPort: 443, ipProtocol: "tcp",
    }),
    resource("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule", "web-prod-alb-http-v6", {
      securityGroupId: "sg-alb", cidrIpv6: "::/0", fromPort: 80, toPort: 80, ipProtocol: "tcp",
    }),
    resource("aws:ec2/securityGroup:SecurityGroup", "web-prod-app-sg", { vpcId: "web-prod-vpc-id" }, "sg-app"),
    resource("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule", "web-prod-app-from-alb", {
      securityGroupId: "sg-app", referencedSecurityGroupId: "sg-alb", fromPort: 8080, toPort: 8080, ipProtocol: "tcp",
    }),
    resource("aws:lb/loadBalancer:LoadBalancer", "web-prod-alb", { securityGroups: ["sg-alb"], enableDeletionProtection: true }),
    { ...resource("aws:ecr/repository:Repository", "web-prod-repo", { imageScanningConfiguration: { scanOnPush: true }, imageTagMutability: "IMMUTABLE" }), retainOnDelete: true },
    resource("docker:index/image:Image", "web-prod-image", { imageName: `${REPO}:1.4.2` }),
    resource("aws:ecs/taskDefinition:TaskDefinition", "web-prod-task", { cpu: "512", memory: "1024", containerDefinitions: JSON.stringify([container()]) }),
    resource("aws:ecs/service:Service", "web-prod-service", { desiredCount: 3 }),
    resource("aws:cloudwatch/logGroup:LogGroup", "web-prod-logs", { retentionInDays: 30 }),
    { ...resource("aws:s3/bucket:Bucket", "web-prod-assets", {}, "web-prod-assets-4f2a"), retainOnDelete: true },
    resource("aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration", "web-prod-assets-sse", {
      bucket: "web-prod-assets-4f2a", rules: [{ applyServerSideEncryptionByDefault: { sseAlgorithm: "aws:kms" } }],
    }),
    resource("aws:s3/bucketPolicy:BucketPolicy", "web-prod-assets-policy", {
      bucket: "web-prod-assets-4f2a",
      policy: policy([{ Effect: "Deny", Principal: "*", Action: "s3:*", Resource: "*", Condition: { Bool: { "aws:SecureTransport": "false" } } }]),
    }),
    resource("aws:rds/instance:Instance", "web-prod-db", { storageEncrypted: true, publiclyAccessible: false, multiAz: true, deletionProtection: true, engineVersion: "16", allocatedStorage: 20, maxAllocatedStorage: 100 }),
    resource("aws:iam/role:Role", "web-prod-task-role", {
      inlinePolicies: [{ name: "read-assets", policy: policy([{ Effect: "Allow", Action: ["s3:GetObject"], Resource: "arn:aws:s3:::web-prod-assets-4f2a/*" }]) }],
    }),
    resource("aws:iam/rolePolicy:RolePolicy", "web-prod-exec-policy", {
      policy: policy({ Effect: "Allow", Action: "logs:PutLogEvents", Resource: "arn:aws:logs:us-east-1:123456789012:log-group:web-prod-logs:*" }),
    }),
    // An object document (not a string) with the one legitimate use of Resource "*".
    resource("aws:iam/policy:Policy", "web-prod-ecr-pull", {
      policy: { Version: "2012-10-17", Statement: [{ Effect: "Allow", Action: "ecr:GetAuthorizationToken", Resource: "*" }] },
    }),
  ];
}

/** The baseline with one resource's inputs changed. */
function withInputs(name: string, change: (inputs: Record<string, unknown>) => Record<string, unknown>, resources = baseline()): PolicyResource[] {
  expect(resources.some((r) => r.name === name), `fixture ${name}`).to.equal(true);
  return resources.map((r) => (r.name === name ? { ...r, inputs: change({ ...r.inputs }) } : r));
}

function set(name: string, values: Record<string, unknown>, resources = baseline()): PolicyResource[] {
  return withInputs(name, (i) => ({ ...i, ...values }), resources);
}

function unset(name: string, key: string, resources = baseline()): PolicyResource[] {
  return withInputs(name, (i) => {
    delete i[key];
    return i;
  }, resources);
}

function add(...extra: PolicyResource[]): PolicyResource[] {
  return [...baseline(), ...extra];
}

function setContainers(containers: unknown[], resources = baseline()): PolicyResource[] {
  return set("web-prod-task", { containerDefinitions: JSON.stringify(containers) }, resources);
}

function violationsOf(rule: string, resources: readonly PolicyResource[], context = PROD): Violation[] {
  return checkPolicies(resources, context).filter((v) => v.rule === rule);
}

/** Asserts exactly one violation of `rule`, on `name`, whose message mentions every fragment. */
function expectOne(rule: string, resources: readonly PolicyResource[], name: string, ...fragments: string[]): Violation {
  const all = checkPolicies(resources, PROD);
  expect(all.map((v) => `${v.rule}: ${v.message}`)).to.have.length(1);
  const [v] = all;
  expect(v.rule).to.equal(rule);
  expect(v.severity).to.equal("mandatory");
  expect(v.resource).to.equal(resources.find((r) => r.name === name)?.urn);
  expect(v.message).to.contain(name);
  for (const f of fragments) expect(v.message).to.contain(f);
  return v;
}

describe("infra/policies", () => {
  describe("checkPolicies", () => {
    it("finds nothing wrong with a compliant production stack", () => {
      expect(checkPolicies(baseline(), PROD)).to.deep.equal([]);
    });

    it("names its rules in kebab-case, all mandatory", () => {
      expect(POLICY_RULES.map((r) => r.name)).to.deep.equal([
        "required-tags", "no-open-ingress", "ecr-scan-and-immutable", "no-latest-tag", "container-limits-and-health", "log-retention",
        "encryption-at-rest", "rds-not-public", "no-iam-star", "secret-grant-arns", "https-on-own-name", "rds-pinned-version", "prod-min-tasks", "prod-multi-az-database", "prod-alarms-notify", "prod-destroy-keeps-data", "prod-deletion-protection",
      ]);
      for (const rule of POLICY_RULES) {
        expect(rule.severity).to.equal("mandatory");
        expect(rule.description).to.not.equal("");
      }
    });

    it("does not apply the production rules outside production", () => {
      let resources = set("web-prod-service", { desiredCount: 1 });
      resources = set("web-prod-db", { multiAz: false, deletionProtection: false }, resources);
      resources = set("web-prod-alb", { enableDeletionProtection: false }, resources);
      const dev = resources.map((r) => (r.inputs.tags ? { ...r, inputs: { ...r.inputs, tags: { ...TAGS, Environment: "dev" } } } : r));
      expect(checkPolicies(dev, DEV)).to.deep.equal([]);
      expect(checkPolicies(resources, PROD).map((v) => v.rule)).to.have.members(["prod-min-tasks", "prod-multi-az-database", "prod-deletion-protection", "prod-deletion-protection"]);
    });

    it("ignores resource types no rule covers", () => {
      expect(checkPolicies(add(resource("pulumi:providers:aws", "default", {})), PROD)).to.deep.equal([]);
    });

    it("reports a resource whose inputs a rule cannot read instead of throwing", () => {
      const hostile = { get tags(): unknown { throw new Error("boom"); } };
      const resources = add({ urn: "urn:x", type: "aws:ec2/vpc:Vpc", name: "odd-vpc", inputs: hostile as Record<string, unknown> });
      const [v] = violationsOf("required-tags", resources);
      expect(v.message).to.contain("odd-vpc could not be checked (boom)");
    });
  });

  describe("required-tags", () => {
    it("refuses a taggable resource with no tags", () => {
      expectOne("required-tags", unset("web-prod-logs", "tags"), "web-prod-logs", "missing tags CostCenter, Owner, Environment, Project, ManagedBy");
    });

    it("refuses a missing required tag", () => {
      const resources = withInputs("web-prod-vpc", (i) => {
        const { Owner: _owner, ...tags } = i.tags as Record<string, string>;
        return { ...i, tags };
      });
      expectOne("required-tags", resources, "web-prod-vpc", "missing tag Owner");
    });

    it("refuses a required tag with the wrong value", () => {
      expectOne("required-tags", set("web-prod-db", { tags: { ...TAGS, Environment: "dev" } }), "web-prod-db", 'Environment="dev" (expected "prod")');
    });

    it("accepts extra tags beyond the required ones", () => {
      expect(checkPolicies(set("web-prod-vpc", { tags: { ...TAGS, Name: "web-prod-vpc" } }), PROD)).to.deep.equal([]);
    });

    it("does not require tags on types that take none", () => {
      const sse = baseline().find((r) => r.name === "web-prod-assets-sse");
      expect(sse?.inputs.tags).to.equal(undefined);
      expect(violationsOf("required-tags", baseline())).to.deep.equal([]);
    });
  });

  describe("no-open-ingress", () => {
    const rule = (name: string, inputs: Record<string, unknown>) => resource("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule", name, inputs);

    it("allows 0.0.0.0/0 and ::/0 on TCP 80/443 to the load balancer's security group", () => {
      expect(violationsOf("no-open-ingress", baseline())).to.deep.equal([]);
    });

    it("refuses ingress from 0.0.0.0/0 on port 22", () => {
      const resources = add(rule("web-prod-alb-ssh", { securityGroupId: "sg-alb", cidrIpv4: "0.0.0.0/0", fromPort: 22, toPort: 22, ipProtocol: "tcp" }));
      expectOne("no-open-ingress", resources, "web-prod-alb-ssh", "(on web-prod-alb-sg) ingress allows 0.0.0.0/0 on port 22", "80 and 443");
    });

    it("refuses ingress from ::/0 to a security group no load balancer uses, even on 443", () => {
      const resources = add(rule("web-prod-app-https", { securityGroupId: "sg-app", cidrIpv6: "::/0", fromPort: 443, toPort: 443, ipProtocol: "tcp" }));
      expectOne("no-open-ingress", resources, "web-prod-app-https", "allows ::/0 on port 443", "web-prod-app-sg is not attached to a load balancer");
    });

    it("refuses all protocols (-1) from the internet, even to the load balancer", () => {
      const resources = add(rule("web-prod-alb-all", { securityGroupId: "sg-alb", cidrIpv4: "0.0.0.0/0", ipProtocol: "-1" }));
      expectOne("no-open-ingress", resources, "web-prod-alb-all", "all ports and protocols");
    });

    it("refuses a port range that covers more than 80 or 443", () => {
      const resources = add(rule("web-prod-alb-range", { securityGroupId: "sg-alb", cidrIpv4: "0.0.0.0/0", fromPort: 80, toPort: 443, ipProtocol: "tcp" }));
      expectOne("no-open-ingress", resources, "web-prod-alb-range", "ports 80-443");
    });

    it("refuses UDP 443 from the internet", () => {
      const resources = add(rule("web-prod-alb-quic", { securityGroupId: "sg-alb", cidrIpv4: "0.0.0.0/0", fromPort: 443, toPort: 443, ipProtocol: "udp" }));
      expectOne("no-open-ingress", resources, "web-prod-alb-quic", "udp port 443");
    });

    it("refuses open ingress to a security group it cannot find", () => {
      const resources = add(rule("web-prod-stray", { securityGroupId: "sg-elsewhere", cidrIpv4: "0.0.0.0/0", fromPort: 443, toPort: 443, ipProtocol: "tcp" }));
      expectOne("no-open-ingress", resources, "web-prod-stray", "not attached to a load balancer");
    });

    it("allows a private CIDR on any port", () => {
      const resources = add(rule("web-prod-app-vpc", { securityGroupId: "sg-app", cidrIpv4: "10.40.0.0/16", fromPort: 0, toPort: 65535, ipProtocol: "tcp" }));
      expect(checkPolicies(resources, PROD)).to.deep.equal([]);
    });

    it("refuses an inline ingress block open to the internet on 0-65535", () => {
      const resources = set("web-prod-app-sg", { ingress: [{ fromPort: 0, toPort: 65535, protocol: "tcp", cidrBlocks: ["0.0.0.0/0"] }] });
      expectOne("no-open-ingress", resources, "web-prod-app-sg", "web-prod-app-sg ingress allows 0.0.0.0/0 on ports 0-65535");
    });

    it("allows an inline ingress block on 443 to the load balancer's security group", () => {
      const resources = set("web-prod-alb-sg", { ingress: [{ fromPort: 443, toPort: 443, protocol: "tcp", cidrBlocks: ["0.0.0.0/0"], ipv6CidrBlocks: ["::/0"] }] });
      expect(checkPolicies(resources, PROD)).to.deep.equal([]);
    });

    it("refuses an inline ingress block for all protocols over IPv6", () => {
      const resources = set("web-prod-alb-sg", { ingress: [{ fromPort: 0, toPort: 0, protocol: "-1", ipv6CidrBlocks: ["::/0"] }] });
      expectOne("no-open-ingress", resources, "web-prod-alb-sg", "allows ::/0 on all ports and protocols");
    });

    it("stops allowing 443 once the security group is detached from the load balancer", () => {
      const v = violationsOf("no-open-ingress", set("web-prod-alb", { securityGroups: ["sg-app"] }));
      expect(v.map((x) => x.message)).to.have.length(2);
      expect(v[0].message).to.contain("web-prod-alb-sg is not attached to a load balancer");
    });
  });

  describe("ecr-scan-and-immutable", () => {
    it("refuses a repository that does not scan on push", () => {
      expectOne("ecr-scan-and-immutable", set("web-prod-repo", { imageScanningConfiguration: { scanOnPush: false } }), "web-prod-repo", "scanOnPush: true");
    });

    it("refuses a repository with mutable tags", () => {
      expectOne("ecr-scan-and-immutable", set("web-prod-repo", { imageTagMutability: "MUTABLE" }), "web-prod-repo", '"MUTABLE"', '"IMMUTABLE"');
    });

    it("refuses a repository that leaves both unset", () => {
      const resources = unset("web-prod-repo", "imageTagMutability", unset("web-prod-repo", "imageScanningConfiguration"));
      expect(violationsOf("ecr-scan-and-immutable", resources)).to.have.length(2);
    });
  });

  describe("no-latest-tag", () => {
    const image = (imageName: string) => set("web-prod-image", { imageName });

    it("refuses an image tagged latest", () => {
      expectOne("no-latest-tag", image(`${REPO}:latest`), "web-prod-image", `"${REPO}:latest"`, "never latest");
    });

    it("refuses an image with no tag, which means latest", () => {
      expectOne("no-latest-tag", image(REPO), "web-prod-image", "no tag");
    });

    it("does not mistake a registry port for a tag", () => {
      expectOne("no-latest-tag", image("registry.internal:5000/web"), "web-prod-image", '"registry.internal:5000/web" with no tag');
      expect(checkPolicies(image("registry.internal:5000/web:1.4.2"), PROD)).to.deep.equal([]);
    });

    it("accepts an image pinned by sha256 digest", () => {
      expect(checkPolicies(image(`${REPO}@${DIGEST}`), PROD)).to.deep.equal([]);
      expect(checkPolicies(image(`registry.internal:5000/web:latest@${DIGEST}`), PROD)).to.deep.equal([]);
    });

    it("refuses a digest that is not sha256:<64 hex>", () => {
      expectOne("no-latest-tag", image(`${REPO}@sha256:abc`), "web-prod-image", "not a sha256:<64 hex> digest");
    });

    it("refuses a task definition container image tagged latest", () => {
      expectOne("no-latest-tag", setContainers([container({ image: "nginx:latest" })]), "web-prod-task", 'container "web" uses "nginx:latest"');
    });

    it("refuses a task definition container image with no tag", () => {
      const resources = setContainers([container(), container({ name: "sidecar", image: "public.ecr.aws/aws-observability/aws-otel-collector" })]);
      expectOne("no-latest-tag", resources, "web-prod-task", 'container "sidecar"', "no tag");
    });

    it("accepts task definition containers pinned by tag or digest", () => {
      const resources = setContainers([container(), container({ name: "sidecar", image: `public.ecr.aws/otel/collector@${DIGEST}` })]);
      expect(checkPolicies(resources, PROD)).to.deep.equal([]);
    });

    it("refuses a container with no image", () => {
      const { image: _image, ...noImage } = container();
      expect(violationsOf("no-latest-tag", setContainers([noImage])).map((v) => v.message)).to.deep.equal([
        `web-prod-task container "web" has no image reference; tag images with the deploy version (never latest) or pin them @sha256:<digest>`,
      ]);
    });

    it("treats a tag as the text after the last colon of the last path segment", () => {
      const tag = fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9._-]{0,20}$/).filter((t) => t.toLowerCase() !== "latest");
      const host = fc.constantFrom("", "registry.internal:5000/", "123456789012.dkr.ecr.us-east-1.amazonaws.com/", "localhost:5000/team/");
      fc.assert(
        fc.property(host, tag, (h, t) => {
          expect(violationsOf("no-latest-tag", image(`${h}web:${t}`))).to.deep.equal([]);
          expect(violationsOf("no-latest-tag", image(`${h}web`))).to.have.length(1);
          expect(violationsOf("no-latest-tag", image(`${h}web:latest`))).to.have.length(1);
        }),
      );
    });
  });

  describe("container-limits-and-health", () => {
    it("refuses a task definition without task-level cpu and memory", () => {
      const resources = unset("web-prod-task", "memory", unset("web-prod-task", "cpu"));
      expectOne("container-limits-and-health", resources, "web-prod-task", "no task-level cpu or memory");
    });

    it("refuses a container without a cpu limit", () => {
      const { cpu: _cpu, ...noCpu } = container();
      expectOne("container-limits-and-health", setContainers([noCpu]), "web-prod-task", 'container "web" has no cpu');
    });

    it("refuses a container with neither memory nor memoryReservation", () => {
      const { memory: _memory, ...noMemory } = container();
      expectOne("container-limits-and-health", setContainers([noMemory]), "web-prod-task", "memory (or memoryReservation)");
    });

    it("accepts memoryReservation in place of memory", () => {
      const { memory: _memory, ...soft } = container();
      expect(checkPolicies(setContainers([{ ...soft, memoryReservation: 512 }]), PROD)).to.deep.equal([]);
    });

    it("refuses a container without a health check command", () => {
      expectOne("container-limits-and-health", setContainers([container({ healthCheck: { interval: 30 } })]), "web-prod-task", "no healthCheck command");
    });

    it("checks every container, not just the first", () => {
      const resources = setContainers([container(), container({ name: "sidecar", healthCheck: undefined })]);
      expectOne("container-limits-and-health", resources, "web-prod-task", 'container "sidecar" has no healthCheck command');
    });

    it("refuses a health check on localhost, which BusyBox wget may resolve to ::1 only", () => {
      const resources = setContainers([container({ healthCheck: { command: ["CMD-SHELL", "wget -qO- http://localhost:8080/health || exit 1"] } })]);
      expectOne("container-limits-and-health", resources, "web-prod-task", "uses localhost", "127.0.0.1");
    });

    it("accepts a container without a check only when a service runs it behind a health-checked target group", () => {
      const bare = setContainers([container({ healthCheck: undefined })]);
      expectOne("container-limits-and-health", bare, "web-prod-task", "no healthCheck command");
      const task = bare.find((r) => r.name === "web-prod-task")!;
      const behind = [
        ...bare.filter((r) => r.name !== "web-prod-service"),
        resource("aws:lb/targetGroup:TargetGroup", "web-prod-tg", { healthCheck: { enabled: true, path: "/health" } }, "arn:tg"),
        resource("aws:ecs/service:Service", "web-prod-service", { desiredCount: 3, taskDefinition: task.id, loadBalancers: [{ targetGroupArn: "arn:tg", containerName: "web", containerPort: 8080 }] }),
      ];
      expect(checkPolicies(behind, PROD).filter((v) => v.rule === "container-limits-and-health")).to.deep.equal([]);
    });

    it("refuses containerDefinitions that are not JSON", () => {
      const v = violationsOf("container-limits-and-health", set("web-prod-task", { containerDefinitions: "[{" }));
      expect(v).to.have.length(1);
      expect(v[0].message).to.contain("web-prod-task containerDefinitions is not valid JSON");
    });
  });

  describe("log-retention", () => {
    it("refuses a log group that keeps logs forever", () => {
      expectOne("log-retention", unset("web-prod-logs", "retentionInDays"), "web-prod-logs", "retentionInDays unset", "kept forever");
    });

    it("refuses a retention of 0 days, which CloudWatch reads as never expire", () => {
      expectOne("log-retention", set("web-prod-logs", { retentionInDays: 0 }), "web-prod-logs", "retentionInDays 0");
    });

    it("refuses a retention CloudWatch Logs does not accept, listing the values it does", () => {
      expectOne("log-retention", set("web-prod-logs", { retentionInDays: 45 }), "web-prod-logs", "retentionInDays 45", "CloudWatch Logs refuses", "30, 60, 90");
    });
  });

  describe("secret-grant-arns", () => {
    const arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/web/stripe";
    const grant = (resources: string[]) => [
      ...baseline(),
      resource("aws:iam/rolePolicy:RolePolicy", "web-prod-extra", { policy: policy([{ Effect: "Allow", Action: "secretsmanager:GetSecretValue", Resource: resources }]) }),
    ];

    it("refuses a grant whose resource carries a JSON key", () => {
      expectOne("secret-grant-arns", grant([`${arn}-AbCdEf:password::`]), "web-prod-extra", "JSON key");
    });

    it("refuses a partial ARN that matches no real secret", () => {
      expectOne("secret-grant-arns", grant([arn]), "web-prod-extra", "partial ARN", "-??????");
    });

    it("accepts a complete ARN and a suffix wildcard", () => {
      expect(checkPolicies(grant([`${arn}-AbCdEf`, `${arn}-??????`]), PROD).filter((v) => v.rule === "secret-grant-arns")).to.deep.equal([]);
    });
  });

  describe("prod-destroy-keeps-data", () => {
    const retained = (rs: PolicyResource[]) => rs.map((r) => (r.type === "aws:s3/bucket:Bucket" || r.type === "aws:ecr/repository:Repository" ? { ...r, retainOnDelete: true } : r));

    it("refuses a production bucket that destroy would fail on", () => {
      const rs = retained(baseline()).map((r) => (r.name === "web-prod-assets" ? { ...r, retainOnDelete: undefined, inputs: { ...r.inputs, forceDestroy: false } } : r));
      expectOne("prod-destroy-keeps-data", rs, "web-prod-assets", "fail with BucketNotEmpty", "retainOnDelete");
    });

    it("accepts retained buckets and repositories, and does not apply outside production", () => {
      expect(checkPolicies(retained(baseline()), PROD)).to.deep.equal([]);
    });
  });

  describe("prod-alarms-notify", () => {
    const topic = "arn:aws:sns:us-east-1:123456789012:web-prod-alarms";
    const alarmOn = (actions: string[]) => resource("aws:cloudwatch/metricAlarm:MetricAlarm", "web-prod-cpu-high", { alarmActions: actions });
    const ownTopic = resource("aws:sns/topic:Topic", "web-prod-alarms", {}, topic);

    it("refuses a production alarm whose topic has no subscription", () => {
      expectOne("prod-alarms-notify", [...baseline(), ownTopic, alarmOn([topic])], "web-prod-cpu-high", "notifies no one", "alarms.notify");
    });

    it("accepts a subscribed topic, or an external one", () => {
      const sub = resource("aws:sns/topicSubscription:TopicSubscription", "web-prod-alarms-email-1", { topic, protocol: "email", endpoint: "a@example.com" });
      expect(checkPolicies([...baseline(), ownTopic, sub, alarmOn([topic])], PROD)).to.deep.equal([]);
      expect(checkPolicies([...baseline(), ownTopic, alarmOn([topic, "arn:aws:sns:us-east-1:123456789012:pager"])], PROD)).to.deep.equal([]);
    });

    it("does not apply outside production", () => {
      expect(checkPolicies([...baseline(), ownTopic, alarmOn([topic])], DEV).filter((v) => v.rule === "prod-alarms-notify")).to.deep.equal([]);
    });
  });

  describe("https-on-own-name", () => {
    const https = () => resource("aws:lb/listener:Listener", "web-prod-https", { protocol: "HTTPS", port: 443, loadBalancerArn: "arn:alb" });
    it("refuses an HTTPS listener with no Route 53 alias to give it a name", () => {
      expectOne("https-on-own-name", [...baseline(), https()], "web-prod-https", "cannot cover *.elb.amazonaws.com", "app.domain");
    });

    it("accepts it with an alias record", () => {
      const alias = resource("aws:route53/record:Record", "web-prod-alias", { type: "A", name: "web.example.com", aliases: [{ name: "web-prod-alb-1.us-east-1.elb.amazonaws.com", zoneId: "Z35SXDOTRQ7X7K", evaluateTargetHealth: true }] });
      expect(checkPolicies([...baseline(), https(), alias], PROD)).to.deep.equal([]);
    });
  });

  describe("rds-pinned-version", () => {
    it("refuses a database without an engine version", () => {
      expectOne("rds-pinned-version", unset("web-prod-db", "engineVersion"), "web-prod-db", "no engineVersion");
    });

    it("refuses a database without storage autoscaling", () => {
      expectOne("rds-pinned-version", unset("web-prod-db", "maxAllocatedStorage"), "web-prod-db", "maxAllocatedStorage unset");
    });
  });

  describe("encryption-at-rest", () => {
    it("refuses a bucket with no server-side encryption configuration", () => {
      const resources = baseline().filter((r) => r.name !== "web-prod-assets-sse");
      expectOne("encryption-at-rest", resources, "web-prod-assets", "BucketServerSideEncryptionConfiguration");
    });

    it("refuses a bucket whose encryption configuration targets another bucket", () => {
      expectOne("encryption-at-rest", set("web-prod-assets-sse", { bucket: "some-other-bucket" }), "web-prod-assets");
    });

    it("matches the encryption configuration on the bucket's explicit name", () => {
      let resources = set("web-prod-assets", { bucket: "acme-web-prod-assets" });
      resources = set("web-prod-assets-sse", { bucket: "acme-web-prod-assets" }, resources);
      expect(checkPolicies(resources, PROD)).to.deep.equal([]);
    });

    it("accepts the V2 encryption configuration type", () => {
      const resources = baseline().map((r) =>
        r.name === "web-prod-assets-sse"
          ? { ...r, type: "aws:s3/bucketServerSideEncryptionConfigurationV2:BucketServerSideEncryptionConfigurationV2" }
          : r,
      );
      expect(checkPolicies(resources, PROD)).to.deep.equal([]);
    });

    it("refuses an RDS instance without encrypted storage", () => {
      expectOne("encryption-at-rest", set("web-prod-db", { storageEncrypted: false }), "web-prod-db", "storageEncrypted: true");
    });
  });

  describe("rds-not-public", () => {
    it("refuses a publicly accessible database", () => {
      expectOne("rds-not-public", set("web-prod-db", { publiclyAccessible: true }), "web-prod-db", "publiclyAccessible: false");
    });

    it("accepts a database that leaves publiclyAccessible unset", () => {
      expect(checkPolicies(unset("web-prod-db", "publiclyAccessible"), PROD)).to.deep.equal([]);
    });
  });

  describe("no-iam-star", () => {
    const adminStatement = { Effect: "Allow", Action: "*", Resource: "*" };

    it("refuses a role policy that allows * on *", () => {
      expectOne("no-iam-star", set("web-prod-exec-policy", { policy: policy(adminStatement) }), "web-prod-exec-policy", 'Action "*" on Resource "*"');
    });

    it("refuses * on * in a policy given as an object with arrays", () => {
      const doc = { Version: "2012-10-17", Statement: [{ Sid: "Admin", Effect: "Allow", Action: ["s3:GetObject", "*"], Resource: ["*"] }] };
      expectOne("no-iam-star", set("web-prod-ecr-pull", { policy: doc }), "web-prod-ecr-pull", 'statement "Admin"');
    });

    it("refuses * on * in a role's inline policy", () => {
      const resources = set("web-prod-task-role", { inlinePolicies: [{ name: "admin", policy: policy([adminStatement]) }] });
      expectOne("no-iam-star", resources, "web-prod-task-role", 'inline policy "admin"');
    });

    it("refuses * on * in a bucket policy", () => {
      expectOne("no-iam-star", set("web-prod-assets-policy", { policy: policy([{ ...adminStatement, Principal: "*" }]) }), "web-prod-assets-policy");
    });

    it("refuses Allow with NotAction on every resource", () => {
      const resources = set("web-prod-exec-policy", { policy: policy({ Effect: "Allow", NotAction: ["iam:*", "organizations:*"], Resource: "*" }) });
      expectOne("no-iam-star", resources, "web-prod-exec-policy", "NotAction");
    });

    it("allows Deny statements with * on *", () => {
      expect(checkPolicies(set("web-prod-exec-policy", { policy: policy({ Effect: "Deny", Action: "*", Resource: "*" }) }), PROD)).to.deep.equal([]);
    });

    it("refuses a policy document that does not parse", () => {
      expectOne("no-iam-star", set("web-prod-exec-policy", { policy: "{ not json" }), "web-prod-exec-policy", "is not valid JSON");
    });

    it("refuses a policy document with no Statement", () => {
      expectOne("no-iam-star", set("web-prod-ecr-pull", { policy: { Version: "2012-10-17" } }), "web-prod-ecr-pull", "no Statement");
    });

    it("ignores the provider's empty inline policy marker", () => {
      expect(checkPolicies(set("web-prod-task-role", { inlinePolicies: [{}] }), PROD)).to.deep.equal([]);
    });
  });

  describe("prod-min-tasks", () => {
    it("refuses a production service with one task", () => {
      expectOne("prod-min-tasks", set("web-prod-service", { desiredCount: 1 }), "web-prod-service", "desiredCount 1", "at least 2");
    });

    it("accepts a production service with two tasks", () => {
      expect(checkPolicies(set("web-prod-service", { desiredCount: 2 }), PROD)).to.deep.equal([]);
    });
  });

  describe("prod-multi-az-database", () => {
    it("refuses a single-AZ production database", () => {
      expectOne("prod-multi-az-database", unset("web-prod-db", "multiAz"), "web-prod-db", "multiAz: true");
    });
  });

  describe("prod-deletion-protection", () => {
    it("refuses a production database without deletion protection", () => {
      expectOne("prod-deletion-protection", set("web-prod-db", { deletionProtection: false }), "web-prod-db", "deletionProtection: true");
    });

    it("refuses a production load balancer without deletion protection", () => {
      expectOne("prod-deletion-protection", unset("web-prod-alb", "enableDeletionProtection"), "web-prod-alb", "enableDeletionProtection: true");
    });
  });
});
