/**
 * Post-deploy verification against real ECS and ELBv2 APIs (moto): `AwsVerifier` with its own
 * clients, configured from the caller's env, on a cluster, task definitions, services and target
 * groups created through the SDK.
 *
 * What moto models here: DescribeServices with one PRIMARY deployment, its rolloutState COMPLETED
 * when the running count (moto's MOTO_ECS_SERVICE_RUNNING, set for this server) reaches the desired
 * count and IN_PROGRESS below it; MISSING failures; INACTIVE after DeleteService; DescribeTargetHealth
 * on registered targets; TargetGroupNotFound.
 * What it does not model, so checks-verify.spec.ts keeps mocked clients for it: a FAILED rollout (the
 * circuit breaker), a second deployment while one rolls out (UpdateService changes the service's task
 * definition but not its deployment), service events, targets that are unhealthy or initial (every
 * registered IP target is healthy, and ECS registers none by itself), draining targets of a
 * previous deployment, throttling.
 */
import { CreateClusterCommand, CreateServiceCommand, DeleteServiceCommand, ECSClient, RegisterTaskDefinitionCommand } from "@aws-sdk/client-ecs";
import { CreateTargetGroupCommand, ElasticLoadBalancingV2Client, RegisterTargetsCommand } from "@aws-sdk/client-elastic-load-balancing-v2";
import { expect } from "chai";
import { awsClientConfig } from "../../automation/checks/aws-config";
import { AwsVerifier, ECS_CHECK, TARGETS_CHECK, type VerificationCheck } from "../../automation/checks/verify";
import type { Outputs } from "../../automation/engine/port";
import type { Environment } from "../../automation/environment";
import { requireMotoOrSkip, startMoto, type Moto } from "../support/moto";
import { copyEnvironments, environment } from "./support/environments";
import { startSmokeServer, type SmokeServer } from "./support/smoke-server";
import { tempDirs } from "./support/temp";

const REGION = "us-east-1";
/** The running count moto gives every new service. */
const RUNNING = 2;

const byName = (checks: readonly VerificationCheck[], name: string) => checks.find((c) => c.name === name)!;
const out = (values: Record<string, string>): Outputs => Object.fromEntries(Object.entries(values).map(([k, v]) => [k, { value: v, secret: false }]));

describe("verification against moto's ECS and ELBv2", function () {
  this.timeout(60_000);
  const temp = tempDirs();
  let moto: Moto | undefined;
  let ecs: ECSClient;
  let elbv2: ElasticLoadBalancingV2Client;
  let vpcId: string;
  let smoke: SmokeServer;
  let prod: Environment;
  let noSmoke: Environment;
  let n = 0;

  before(async function () {
    requireMotoOrSkip(this);
    moto = await startMoto({ serverEnv: { MOTO_ECS_SERVICE_RUNNING: String(RUNNING) } });
    ecs = new ECSClient(awsClientConfig(moto.env, "ECS", REGION));
    elbv2 = new ElasticLoadBalancingV2Client(awsClientConfig(moto.env, "Elastic Load Balancing v2", REGION));
    vpcId = await createVpc(moto);
    smoke = await startSmokeServer(200);
    const envDir = copyEnvironments(temp.make("moto-verify-envs-"), { qa: (doc) => (doc.deploy.smokeTests = []) });
    prod = environment("prod", envDir); // smoke test GET /health → 200
    noSmoke = environment("qa", envDir);
  });
  after(async () => {
    ecs?.destroy();
    elbv2?.destroy();
    await smoke?.close();
    await moto?.stop();
    temp.cleanup();
  });

  /** The verifier as the deployer makes it for `engine: pulumi`: default clients from the caller's env. */
  const verifier = (deadlineMs = 10_000) =>
    new AwsVerifier({ awsEnv: moto!.env, region: REGION, pollIntervalMs: 20, deadlineMs, smokeIntervalMs: 5, smokeDeadlineMs: 10_000, requestTimeoutMs: 5_000 });

  interface Deployed {
    readonly outputs: Record<string, string>;
    readonly targetGroupArn: string;
    readonly cluster: string;
    readonly service: string;
  }

  /**
   * A cluster with a service of `desiredCount` tasks, behind a new target group unless `loadBalancer`
   * is false, as infra/ deploys it. With `revisions: 2` a second task definition revision is
   * registered after the service was created on the first (what a deployment that was rolled back leaves).
   */
  async function deployService(desiredCount: number, options: { revisions?: number; loadBalancer?: boolean } = {}): Promise<Deployed> {
    const i = ++n;
    const cluster = `web-${i}-cluster`;
    const service = `web-${i}`;
    await ecs.send(new CreateClusterCommand({ clusterName: cluster }));
    const register = async (revision: number) =>
      (
        await ecs.send(
          new RegisterTaskDefinitionCommand({
            family: service,
            containerDefinitions: [{ name: "web", image: `123456789012.dkr.ecr.us-east-1.amazonaws.com/web:1.${revision}.0`, memory: 512, portMappings: [{ containerPort: 8080 }] }],
          }),
        )
      ).taskDefinition!.taskDefinitionArn!;
    const first = await register(0);
    const targetGroupArn = (await elbv2.send(new CreateTargetGroupCommand({ Name: `${service}-tg`, Protocol: "HTTP", Port: 8080, VpcId: vpcId, TargetType: "ip" }))).TargetGroups![0].TargetGroupArn!;
    await ecs.send(
      new CreateServiceCommand({
        cluster,
        serviceName: service,
        taskDefinition: first,
        desiredCount,
        launchType: "EC2",
        deploymentConfiguration: { deploymentCircuitBreaker: { enable: true, rollback: true } },
        ...(options.loadBalancer === false ? {} : { loadBalancers: [{ targetGroupArn, containerName: "web", containerPort: 8080 }] }),
      }),
    );
    let taskDefinitionArn = first;
    for (let r = 1; r < (options.revisions ?? 1); r++) taskDefinitionArn = await register(r);
    return { outputs: { clusterName: cluster, serviceName: service, taskDefinitionArn, url: smoke.url }, targetGroupArn, cluster, service };
  }

  async function registerTargets(targetGroupArn: string, count: number): Promise<void> {
    const Targets = Array.from({ length: count }, (_, i) => ({ Id: `10.0.1.${i + 10}`, Port: 8080 }));
    await elbv2.send(new RegisterTargetsCommand({ TargetGroupArn: targetGroupArn, Targets }));
  }

  it("passes a steady service with healthy targets, then runs the smoke tests against the url output", async () => {
    const d = await deployService(RUNNING);
    await registerTargets(d.targetGroupArn, RUNNING);
    smoke.requests.length = 0;

    const report = await verifier().verify(prod, out(d.outputs));

    expect(report.checks.map((c) => [c.name, c.ok])).to.deep.equal([
      [ECS_CHECK, true],
      [TARGETS_CHECK, true],
      ["smoke GET /health", true],
    ]);
    expect(report.ok).to.equal(true);
    expect(byName(report.checks, ECS_CHECK).detail).to.contain(`${d.service} on ${d.cluster}: deployment COMPLETED, 2/2 tasks running`);
    expect(byName(report.checks, TARGETS_CHECK).detail).to.contain(`2 targets healthy in ${d.targetGroupArn.replace(/^.*:targetgroup\//, "")}`);
    expect(smoke.requests).to.deep.equal(["GET /health"]);
  });

  it("fails after its deadline while the rollout is IN_PROGRESS with fewer tasks running than desired, and runs nothing after it", async () => {
    const d = await deployService(RUNNING + 1);
    smoke.requests.length = 0;

    const report = await verifier(300).verify(prod, out(d.outputs));

    expect(report.ok).to.equal(false);
    const steady = byName(report.checks, ECS_CHECK);
    expect(steady.ok).to.equal(false);
    expect(steady.detail).to.contain(`${d.service} on ${d.cluster} not steady after`).and.to.contain("1 deployment, primary rollout IN_PROGRESS, 2/3 tasks running");
    expect(byName(report.checks, TARGETS_CHECK)).to.include({ ok: false, skipped: true });
    expect(smoke.requests).to.deep.equal([]);
  });

  it("fails when the service settled on another task definition than the one the deployment registered", async () => {
    const d = await deployService(RUNNING, { revisions: 2 });
    await registerTargets(d.targetGroupArn, RUNNING);

    const report = await verifier().verify(noSmoke, out(d.outputs));

    const steady = byName(report.checks, ECS_CHECK);
    expect(steady.ok).to.equal(false);
    expect(steady.detail).to.contain(`is steady on ${d.outputs.taskDefinitionArn.replace(/:2$/, ":1")}, not the deployed ${d.outputs.taskDefinitionArn}: the deployment was rolled back`);
  });

  it("fails when ECS does not know the service, with ECS's reason", async () => {
    const d = await deployService(RUNNING);
    const report = await verifier().verify(noSmoke, out({ ...d.outputs, serviceName: "not-there" }));
    expect(byName(report.checks, ECS_CHECK)).to.include({ ok: false, detail: `service not-there not found in cluster ${d.cluster} (MISSING)` });
  });

  it("fails when the service was deleted (INACTIVE)", async () => {
    const d = await deployService(RUNNING);
    await ecs.send(new DeleteServiceCommand({ cluster: d.cluster, service: d.service, force: true }));
    const report = await verifier().verify(noSmoke, out(d.outputs));
    expect(byName(report.checks, ECS_CHECK)).to.include({ ok: false, detail: `service ${d.service} is INACTIVE` });
  });

  it("fails after its deadline when no target ever registers in the service's target group", async () => {
    const d = await deployService(RUNNING);
    const report = await verifier(300).verify(noSmoke, out(d.outputs));
    expect(byName(report.checks, ECS_CHECK).ok).to.equal(true);
    const targets = byName(report.checks, TARGETS_CHECK);
    expect(targets.ok).to.equal(false);
    expect(targets.detail).to.contain("not healthy after").and.to.contain("no targets registered");
  });

  it("reads the target group from the stack's output when the service names none, and fails at once when it does not exist", async () => {
    const d = await deployService(RUNNING, { loadBalancer: false });
    await registerTargets(d.targetGroupArn, 1);
    const healthy = await verifier().verify(noSmoke, out({ ...d.outputs, targetGroupArn: d.targetGroupArn }));
    expect(byName(healthy.checks, TARGETS_CHECK)).to.include({ ok: true });
    expect(byName(healthy.checks, TARGETS_CHECK).detail).to.contain("1 target healthy");

    const gone = d.targetGroupArn.replace(/\/[0-9a-f]+$/, "/0000000000000000");
    const report = await verifier().verify(noSmoke, out({ ...d.outputs, targetGroupArn: gone }));
    const targets = byName(report.checks, TARGETS_CHECK);
    expect(targets.ok).to.equal(false);
    // A missing target group does not appear by waiting: the first answer ends the check, no deadline.
    expect(targets.detail).to.match(/^DescribeTargetHealth on [^ ]+ failed: TargetGroupNotFound/);
  });
});

/**
 * A VPC for the target groups (moto checks that the VPC exists). The deployer has no EC2 client, so
 * this sends EC2's query API by hand; moto routes it by the credential scope and checks no signature.
 */
async function createVpc(moto: Moto): Promise<string> {
  const res = await fetch(moto.endpoint, {
    method: "POST",
    headers: {
      "content-type": "application/x-www-form-urlencoded",
      authorization: `AWS4-HMAC-SHA256 Credential=testing/20260101/${REGION}/ec2/aws4_request, SignedHeaders=host, Signature=0`,
    },
    body: "Action=CreateVpc&Version=2016-11-15&CidrBlock=10.40.0.0%2F16",
  });
  const text = await res.text();
  const id = /<vpcId>(vpc-[0-9a-f]+)<\/vpcId>/.exec(text)?.[1];
  if (res.status !== 200 || id === undefined) throw new Error(`CreateVpc on moto failed (${res.status}): ${text.slice(0, 300)}`);
  return id;
}
