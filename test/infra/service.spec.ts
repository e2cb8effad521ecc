import { expect } from "chai";
import { PROJECT } from "../../infra/config";
import { checkPolicies } from "../../infra/policies";
import { requiredTags } from "../../infra/tags";
import * as pulumi from "@pulumi/pulumi";
import type { Evaluation } from "../../automation/program/evaluate";
import { SSL_POLICY, Service, containerDefinitions, targetHealthCheck, validateServiceArgs, type ServiceArgs } from "../../infra/service";
import { ACCOUNT, CERTIFICATE_ARN, DOMAIN, HOSTED_ZONE_ID, REGION, STRIPE_SECRET_ARN, devInput, prodInput, evaluateDev, evaluateProd, evaluateSerially, input, named, ofType, output, programConfig, variant } from "./fixtures";

const CLUSTER = "aws:ecs/cluster:Cluster";
const TASK = "aws:ecs/taskDefinition:TaskDefinition";
const SERVICE = "aws:ecs/service:Service";
const LB = "aws:lb/loadBalancer:LoadBalancer";
const TG = "aws:lb/targetGroup:TargetGroup";
const LISTENER = "aws:lb/listener:Listener";
const SUBNET = "aws:ec2/subnet:Subnet";
const SG = "aws:ec2/securityGroup:SecurityGroup";

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Container = Record<string, any>;
/** Literal arguments for building a Service on its own. */
const serviceArgs: ServiceArgs = {
  vpcId: "vpc-1",
  publicSubnetIds: ["subnet-pa", "subnet-pb"],
  privateSubnetIds: ["subnet-a", "subnet-b"],
  loadBalancerSecurityGroupId: "sg-lb",
  serviceSecurityGroupId: "sg-svc",
  executionRoleArn: `arn:aws:iam::${ACCOUNT}:role/exec`,
  taskRoleArn: `arn:aws:iam::${ACCOUNT}:role/task`,
  image: `${ACCOUNT}.dkr.ecr.${REGION}.amazonaws.com/web@sha256:${"0".repeat(64)}`,
  version: "1.0.0",
  aws: { region: REGION, accountId: ACCOUNT },
  logGroupName: "/ecs/web-dev",
  port: 8080,
  cpu: 256,
  memory: 512,
  desiredCount: 1,
  autoscaling: { min: 1, max: 2, cpuTarget: 60 },
  healthCheck: { path: "/health" },
};

const containerOf = (ev: Evaluation, env: string): Container => JSON.parse(input(named(ev, TASK, `web-${env}-task`), "containerDefinitions"))[0];

describe("infra/service", () => {
  let dev: Evaluation;
  let prod: Evaluation;

  before(async () => {
    dev = await evaluateDev();
    prod = await evaluateProd();
  });

  describe("cluster and task definition", () => {
    it("turns on Container Insights", () => {
      expect(input(named(dev, CLUSTER, "web-dev-cluster"), "settings")).to.deep.equal([{ name: "containerInsights", value: "enabled" }]);
    });

    it("defines a Fargate task in family <app>-<env> with the configured size and both roles", () => {
      const task = named(prod, TASK, "web-prod-task");
      expect(task.inputs).to.deep.include({ family: "web-prod", cpu: "512", memory: "1024", networkMode: "awsvpc", requiresCompatibilities: ["FARGATE"] });
      expect(input(task, "executionRoleArn")).to.equal(named(prod, "aws:iam/role:Role", "web-prod-execution").outputs.arn);
      expect(input(task, "taskRoleArn")).to.equal(named(prod, "aws:iam/role:Role", "web-prod-task").outputs.arn);
    });

    it("runs the registry's image reference", () => {
      expect(containerOf(prod, "prod").image).to.equal(prod.outputs.imageRef.value);
    });

    it("gives the container its port, CPU and memory limits and a read-only root filesystem", () => {
      const c = containerOf(prod, "prod");
      expect(c).to.deep.include({ name: "web", cpu: 512, memory: 1024, essential: true, readonlyRootFilesystem: true, portMappings: [{ containerPort: 8080, protocol: "tcp" }] });
    });

    it("checks the container's health with wget on 127.0.0.1, never localhost (BusyBox may resolve it to ::1 only)", () => {
      const { healthCheck } = containerOf(prod, "prod");
      expect(healthCheck.command).to.deep.equal(["CMD-SHELL", "wget -q -O /dev/null 'http://127.0.0.1:8080/health' || exit 1"]);
      expect(healthCheck.command.join(" ")).to.not.match(/localhost/);
      expect(healthCheck).to.include({ interval: 15, retries: 3 });
    });

    it("runs the environment's own container health command, or none when told to leave it to the target group", async () => {
      const own = await evaluateSerially(programConfig(variant(devInput, (s) => (s.app.healthCheck = { path: "/health", containerCommand: ["CMD", "/app/healthcheck", "--port", "8080"] }))));
      expect(containerOf(own, "dev").healthCheck.command).to.deep.equal(["CMD", "/app/healthcheck", "--port", "8080"]);
      const none = await evaluateSerially(programConfig(variant(devInput, (s) => (s.app.healthCheck = { path: "/health", containerCommand: "none" }))));
      expect(containerOf(none, "dev")).to.not.have.property("healthCheck");
      expect(input<{ enabled: boolean }>(named(none, TG, "web-dev-tg"), "healthCheck").enabled).to.equal(true);
      // The review accepts the container without its own check because the target group checks it.
      const violations = checkPolicies(none.resources, { environment: "dev", production: false, requiredTags: requiredTags("dev", PROJECT, devInput.tags ?? {}) });
      expect(violations).to.deep.equal([]);
    });

    it("sends the container's output to the application log group", () => {
      expect(containerOf(dev, "dev").logConfiguration).to.deep.equal({
        logDriver: "awslogs",
        options: { "awslogs-group": "/ecs/web-dev", "awslogs-region": REGION, "awslogs-stream-prefix": "web-dev" },
      });
    });

    it("passes the environment and the deploy version as APP_VERSION", () => {
      expect(containerOf(dev, "dev").environment).to.deep.equal([
        { name: "APP_VERSION", value: "1.0.0" },
        { name: "LOG_LEVEL", value: "debug" },
      ]);
    });

    it("injects secrets by reference: SSM parameter ARNs and Secrets Manager ARNs", () => {
      const secrets = containerOf(prod, "prod").secrets;
      expect(secrets).to.deep.include({ name: "SESSION_SECRET", valueFrom: `arn:aws:ssm:${REGION}:${ACCOUNT}:parameter/prod/web/session-secret` });
      expect(secrets).to.deep.include({ name: "STRIPE_KEY", valueFrom: STRIPE_SECRET_ARN });
    });

    it("connects the container to the database: host, port and name as values, user and password from the RDS-managed secret's JSON keys", () => {
      const c = containerOf(prod, "prod");
      const db = named(prod, "aws:rds/instance:Instance", "web-prod-db");
      const secretArn = (output<{ secretArn: string }[]>(db, "masterUserSecrets"))[0].secretArn;
      expect(c.environment).to.deep.include.members([
        { name: "DATABASE_HOST", value: output(db, "address") },
        { name: "DATABASE_PORT", value: "5432" },
        { name: "DATABASE_NAME", value: "web" },
      ]);
      expect(c.secrets).to.deep.include.members([
        { name: "DATABASE_USER", valueFrom: `${secretArn}:username::` },
        { name: "DATABASE_PASSWORD", valueFrom: `${secretArn}:password::` },
      ]);
      expect(c.secrets.map((x: { name: string }) => x.name)).to.not.include("DATABASE_URL");
      expect(prod.outputs.databaseSecretArn.value).to.equal(secretArn);
    });

    it("gives a task without a database no database settings", () => {
      const names = [...containerOf(dev, "dev").environment, ...containerOf(dev, "dev").secrets].map((x: { name: string }) => x.name);
      expect(names.filter((n: string) => n.startsWith("DATABASE_") && n !== "DATABASE_URL")).to.deep.equal([]);
    });
  });

  describe("ECS service", () => {
    it("runs tasks in the private subnets without public addresses, in the service group", () => {
      const net = input<Record<string, unknown>>(named(prod, SERVICE, "web-prod-service"), "networkConfiguration");
      const privateIds = ["a", "b", "c"].map((z) => named(prod, SUBNET, `web-prod-private-${z}`).id);
      expect(net).to.deep.equal({ subnets: privateIds, securityGroups: [named(prod, SG, "web-prod-service-sg").id], assignPublicIp: false });
    });

    it("rolls a failed deployment back with the circuit breaker and waits for steady state", () => {
      expect(named(prod, SERVICE, "web-prod-service").inputs).to.deep.include({
        launchType: "FARGATE",
        deploymentCircuitBreaker: { enable: true, rollback: true },
        deploymentMinimumHealthyPercent: 100,
        deploymentMaximumPercent: 200,
        waitForSteadyState: true,
        healthCheckGracePeriodSeconds: 60,
      });
    });

    it("starts desiredCount tasks of the task definition, registered in the target group", () => {
      const service = named(prod, SERVICE, "web-prod-service");
      expect(service.inputs).to.include({ desiredCount: 3, taskDefinition: named(prod, TASK, "web-prod-task").id, cluster: named(prod, CLUSTER, "web-prod-cluster").outputs.arn });
      expect(input(service, "loadBalancers")).to.deep.equal([{ targetGroupArn: named(prod, TG, "web-prod-tg").outputs.arn, containerName: "web", containerPort: 8080 }]);
    });

    it("leaves the task count to autoscaling after the first deployment, and waits for the listeners", async () => {
      const seen: pulumi.ResourceOptions[] = [];
      await evaluateSerially(programConfig(devInput), () => {
        pulumi.runtime.registerStackTransformation((args) => {
          if (args.type === SERVICE) seen.push(args.opts);
          return undefined;
        });
        new Service("web-dev", { ...serviceArgs, domain: { name: DOMAIN, hostedZoneId: HOSTED_ZONE_ID }, certificateArn: CERTIFICATE_ARN });
        return {};
      });
      expect(seen).to.have.length(1);
      expect(seen[0].ignoreChanges).to.deep.equal(["desiredCount"]);
      expect(seen[0].dependsOn).to.have.length(2);
    });
  });

  describe("load balancer", () => {
    it("is internet-facing in the public subnets, behind the load balancer group", () => {
      const alb = named(prod, LB, "web-prod-alb");
      expect(alb.inputs).to.include({ loadBalancerType: "application", internal: false, dropInvalidHeaderFields: true, idleTimeout: 60 });
      expect(input(alb, "subnets")).to.deep.equal(["a", "b", "c"].map((z) => named(prod, SUBNET, `web-prod-public-${z}`).id));
      expect(input(alb, "securityGroups")).to.deep.equal([named(prod, SG, "web-prod-lb-sg").id]);
    });

    it("writes access logs to the storage bucket under its prefix", () => {
      const bucket = named(dev, "aws:s3/bucket:Bucket", "web-dev-logs");
      expect(input(named(dev, LB, "web-dev-alb"), "accessLogs")).to.deep.equal({ bucket: output(bucket, "bucket"), prefix: "alb", enabled: true });
    });

    it("is deletion-protected only when the environment asks for it", () => {
      expect(input(named(dev, LB, "web-dev-alb"), "enableDeletionProtection")).to.equal(false);
      expect(input(named(prod, LB, "web-prod-alb"), "enableDeletionProtection")).to.equal(true);
    });

    it("targets task IPs and checks the health path, accepting 200-399", () => {
      const tg = named(prod, TG, "web-prod-tg");
      expect(tg.inputs).to.include({ targetType: "ip", port: 8080, protocol: "HTTP", deregistrationDelay: 30, vpcId: named(prod, "aws:ec2/vpc:Vpc", "web-prod-vpc").id });
      expect(input(tg, "healthCheck")).to.include({ path: "/health", matcher: "200-399", interval: 15 });
    });

    it("with a domain and a certificate, serves HTTPS on 443 with the TLS 1.3 policy and redirects HTTP to it", () => {
      const https = named(prod, LISTENER, "web-prod-https");
      expect(https.inputs).to.deep.include({ port: 443, protocol: "HTTPS", sslPolicy: SSL_POLICY, certificateArn: CERTIFICATE_ARN, defaultActions: [{ type: "forward", targetGroupArn: named(prod, TG, "web-prod-tg").outputs.arn }] });
      const http = named(prod, LISTENER, "web-prod-http");
      expect(http.inputs).to.deep.include({ port: 80, protocol: "HTTP", defaultActions: [{ type: "redirect", redirect: { protocol: "HTTPS", port: "443", statusCode: "HTTP_301" } }] });
      expect(prod.outputs.url.value).to.equal(`https://${DOMAIN}`);
    });

    it("points the domain at the load balancer with a Route 53 alias, and puts url on that name, never the ALB's", () => {
      const alb = named(prod, LB, "web-prod-alb");
      const alias = named(prod, "aws:route53/record:Record", "web-prod-alias");
      expect(alias.inputs).to.deep.include({ zoneId: HOSTED_ZONE_ID, name: DOMAIN, type: "A", aliases: [{ name: output(alb, "dnsName"), zoneId: output(alb, "zoneId"), evaluateTargetHealth: true }] });
      // No certificate can cover *.elb.amazonaws.com: an https URL there fails every TLS client.
      expect(String(prod.outputs.url.value)).to.not.contain("elb.amazonaws.com");
    });

    it("without a given certificate, requests one for the domain and validates it through DNS in the hosted zone", async () => {
      const ev = await evaluateSerially(programConfig(variant(prodInput, (s) => delete s.app.certificateArn)));
      const cert = named(ev, "aws:acm/certificate:Certificate", "web-prod-cert");
      expect(cert.inputs).to.include({ domainName: DOMAIN, validationMethod: "DNS" });
      const [option] = output<{ resourceRecordName: string; resourceRecordType: string; resourceRecordValue: string }[]>(cert, "domainValidationOptions");
      const record = named(ev, "aws:route53/record:Record", "web-prod-cert-validation");
      expect(record.inputs).to.deep.include({ zoneId: HOSTED_ZONE_ID, name: option.resourceRecordName, type: option.resourceRecordType, records: [option.resourceRecordValue] });
      const validation = named(ev, "aws:acm/certificateValidation:CertificateValidation", "web-prod-cert");
      expect(validation.inputs).to.deep.include({ certificateArn: output(cert, "arn"), validationRecordFqdns: [output(record, "fqdn")] });
      // The listener takes the certificate only once it is validated.
      expect(input(named(ev, LISTENER, "web-prod-https"), "certificateArn")).to.equal(output(validation, "certificateArn"));
      expect(ev.outputs.url.value).to.equal(`https://${DOMAIN}`);
    });

    it("without a certificate outside production, serves plain HTTP on 80", () => {
      const listeners = ofType(dev, LISTENER);
      expect(listeners.map((l) => l.name)).to.deep.equal(["web-dev-http"]);
      expect(listeners[0].inputs).to.deep.include({ port: 80, protocol: "HTTP", defaultActions: [{ type: "forward", targetGroupArn: named(dev, TG, "web-dev-tg").outputs.arn }] });
      expect(dev.outputs.url.value).to.equal(`http://${dev.outputs.albDnsName.value}`);
    });

    it("refuses production without a domain, naming domain", () => {
      expect(() => new Service("web-prod", { ...serviceArgs, production: true })).to.throw(/`domain` is required in production.*app\.domain/);
    });

    it("refuses a certificate without a domain, which could only be served on the ALB's name", () => {
      expect(() => new Service("web-dev", { ...serviceArgs, certificateArn: CERTIFICATE_ARN })).to.throw(/`certificateArn` needs `domain`/);
    });
  });

  describe("autoscaling", () => {
    it("scales the service between autoscaling.min and max", () => {
      const target = named(prod, "aws:appautoscaling/target:Target", "web-prod-scaling");
      expect(target.inputs).to.include({
        serviceNamespace: "ecs",
        scalableDimension: "ecs:service:DesiredCount",
        minCapacity: 3,
        maxCapacity: 10,
        resourceId: `service/${prod.outputs.clusterName.value}/${prod.outputs.serviceName.value}`,
      });
    });

    it("tracks average service CPU at autoscaling.cpuTarget", () => {
      const policy = named(prod, "aws:appautoscaling/policy:Policy", "web-prod-cpu-scaling");
      expect(input(policy, "policyType")).to.equal("TargetTrackingScaling");
      expect(input(policy, "targetTrackingScalingPolicyConfiguration")).to.deep.include({ targetValue: 60, predefinedMetricSpecification: { predefinedMetricType: "ECSServiceAverageCPUUtilization" } });
    });
  });

  describe("helpers", () => {
    it("sorts environment and secrets so the task definition only changes when they do", () => {
      const spec = { name: "app", image: "i@sha256:x", port: 80, cpu: 256, memory: 512, healthCheckPath: "/", healthCheckIntervalSeconds: 30, healthCheckStartPeriodSeconds: 60, logGroupName: "/ecs/x", region: REGION, logStreamPrefix: "x", version: "1" };
      const a = containerDefinitions({ ...spec, environment: { B: "2", A: "1" }, secrets: { Z: "arn:z", Y: "arn:y" } });
      const b = containerDefinitions({ ...spec, environment: { A: "1", B: "2" }, secrets: { Y: "arn:y", Z: "arn:z" } });
      expect(JSON.stringify(a)).to.equal(JSON.stringify(b));
    });

    it("keeps the target health check's timeout below its interval", () => {
      expect(targetHealthCheck("/", 5, 2).timeout).to.equal(4);
      expect(targetHealthCheck("/", 30, 2).timeout).to.equal(5);
    });
  });

  describe("argument checks", () => {
    it("refuses a memory size Fargate does not pair with the CPU, naming memory", () => {
      expect(() => new Service("web-dev", { ...serviceArgs, memory: 4096 })).to.throw(/`memory` 4096 MiB is not allowed with 256 CPU units/);
    });

    it("refuses a desired count outside the autoscaling range, naming desiredCount", () => {
      expect(() => new Service("web-dev", { ...serviceArgs, desiredCount: 5 })).to.throw(/`desiredCount` 5 is outside the autoscaling range 1–2/);
    });

    it("refuses a health path that would break out of the health check's shell quoting", () => {
      expect(() => new Service("web-dev", { ...serviceArgs, healthCheck: { path: "/h'; rm -rf /" } })).to.throw(/`healthCheck.path`/);
    });

    it("refuses a name too long for a load balancer name, naming name", () => {
      expect(() => validateServiceArgs("checkout-api-staging", serviceArgs)).to.not.throw();
      expect(() => new Service("checkout-api-staging2", serviceArgs)).to.throw(/`name` is 21 characters; at most 20/);
    });

    it("refuses an APP_VERSION in the environment, which the deployer sets", () => {
      expect(() => new Service("web-dev", { ...serviceArgs, environment: { APP_VERSION: "x" } })).to.throw(/`environment.APP_VERSION` is set by the deployer/);
    });
  });
});
