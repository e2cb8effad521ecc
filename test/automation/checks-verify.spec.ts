import { DescribeServicesCommand, ECSClient } from "@aws-sdk/client-ecs";
import { DescribeTargetHealthCommand, ElasticLoadBalancingV2Client } from "@aws-sdk/client-elastic-load-balancing-v2";
import { mockClient } from "aws-sdk-client-mock";
import { expect } from "chai";
import { createServer, type IncomingMessage, type ServerResponse } from "http";
import type { AddressInfo } from "net";
import { AwsVerifier, OfflineVerifier, runSmokeTest, type VerificationCheck } from "../../automation/checks/verify";
import type { Outputs } from "../../automation/engine/port";
import { loadEnvironment, type DeployRules, type Environment } from "../../automation/environment";
import { CanceledError } from "../../automation/errors";

const prod = loadEnvironment("prod");
const withSmokeTests = (smokeTests: DeployRules["smokeTests"]): Environment => ({ ...prod, deploy: { ...prod.deploy, smokeTests } });
const noSmoke = withSmokeTests([]);

const TG = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web-tg/0123456789abcdef";
const TASKDEF = "arn:aws:ecs:us-east-1:123456789012:task-definition/web:7";
const outputs: Outputs = {
  clusterName: { value: "web-cluster", secret: false },
  serviceName: { value: "web", secret: false },
  url: { value: "http://web.example.invalid", secret: false },
};

/** A DescribeServices answer with one service in the given rollout state. */
function service(opts: { deployments?: object[]; rollout?: string; running?: number; desired?: number; reason?: string; taskDefinition?: string } = {}) {
  const desired = opts.desired ?? 2;
  return {
    services: [
      {
        serviceName: "web",
        status: "ACTIVE",
        desiredCount: desired,
        runningCount: opts.running ?? desired,
        loadBalancers: [{ targetGroupArn: TG, containerName: "web", containerPort: 8080 }],
        deploymentConfiguration: { deploymentCircuitBreaker: { enable: true, rollback: true } },
        deployments: opts.deployments ?? [
          { id: "ecs-svc/1", status: "PRIMARY", rolloutState: opts.rollout ?? "COMPLETED", rolloutStateReason: opts.reason, taskDefinition: opts.taskDefinition ?? TASKDEF },
        ],
        events: [{ message: "(service web) has started 1 tasks: (task abc)." }],
      },
    ],
  } as never;
}

const healthy = (n: number) => ({ TargetHealthDescriptions: Array.from({ length: n }, (_, i) => ({ Target: { Id: `10.0.1.${i}`, Port: 8080 }, TargetHealth: { State: "healthy" as const } })) });

interface TestServer {
  readonly url: string;
  hits: number;
  close(): Promise<void>;
}

/** A real HTTP server on 127.0.0.1, port 0; `handler` gets the hit number (1-based). */
async function serve(handler: (hit: number, req: IncomingMessage, res: ServerResponse) => void): Promise<TestServer> {
  const state = { hits: 0 };
  const server = createServer((req, res) => handler(++state.hits, req, res));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    get hits() {
      return state.hits;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

const reply = (status: number, body = "") => (_hit: number, _req: IncomingMessage, res: ServerResponse) => {
  res.writeHead(status, { "content-type": "text/plain" });
  res.end(body);
};

/** For smoke tests expected to fail: a short deadline. */
const fast = { smokeIntervalMs: 5, smokeDeadlineMs: 150, requestTimeoutMs: 1000 };
/** For smoke tests expected to pass: room to spare on a loaded machine (they return on the first success). */
const patient = { smokeIntervalMs: 5, smokeDeadlineMs: 10_000, requestTimeoutMs: 5_000 };

async function rejection(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (err) {
    return err as Error;
  }
  throw new Error("expected a rejection");
}

const byName = (checks: readonly VerificationCheck[], name: string) => checks.find((c) => c.name === name)!;

describe("checks: post-deploy verification", () => {
  const clients = { ecs: new ECSClient({ region: "us-east-1" }), elbv2: new ElasticLoadBalancingV2Client({ region: "us-east-1" }) };
  const ecs = mockClient(clients.ecs);
  const elbv2 = mockClient(clients.elbv2);
  const verifier = (options: object = {}) => new AwsVerifier({ ...clients, pollIntervalMs: 2, deadlineMs: 10_000, ...patient, ...options });
  afterEach(() => {
    ecs.reset();
    elbv2.reset();
  });
  after(() => {
    ecs.restore();
    elbv2.restore();
  });

  describe("AwsVerifier: ECS steady state", () => {
    it("passes once one deployment has COMPLETED and every task runs, after a few polls", async () => {
      ecs
        .on(DescribeServicesCommand)
        .resolvesOnce(service({ deployments: [{ status: "PRIMARY", rolloutState: "IN_PROGRESS" }, { status: "ACTIVE", rolloutState: "COMPLETED" }] }))
        .resolvesOnce(service({ rollout: "IN_PROGRESS", running: 1 }))
        .resolves(service());
      elbv2.on(DescribeTargetHealthCommand).resolves(healthy(2));
      const report = await verifier().verify(noSmoke, outputs);
      expect(report.ok).to.equal(true);
      expect(report.checks.map((c) => c.name)).to.deep.equal(["ecs-steady-state", "alb-targets-healthy"]);
      expect(byName(report.checks, "ecs-steady-state").detail).to.contain("web on web-cluster: deployment COMPLETED, 2/2 tasks running (3 polls");
      expect(ecs.commandCalls(DescribeServicesCommand)[0].args[0].input).to.deep.equal({ cluster: "web-cluster", services: ["web"] });
      expect(elbv2.commandCalls(DescribeTargetHealthCommand)[0].args[0].input).to.deep.equal({ TargetGroupArn: TG });
    });

    it("fails at once on a FAILED rollout, with the circuit breaker's reason, and runs nothing after it", async () => {
      ecs.on(DescribeServicesCommand).resolves(service({ rollout: "FAILED", running: 0, reason: "ECS deployment circuit breaker: tasks failed to start." }));
      const started = Date.now();
      const report = await verifier({ pollIntervalMs: 60_000, deadlineMs: 600_000 }).verify(withSmokeTests([{ path: "/health", expectStatus: 200 }]), outputs);
      expect(Date.now() - started).to.be.below(1000);
      expect(report.ok).to.equal(false);
      const check = byName(report.checks, "ecs-steady-state");
      expect(check.ok).to.equal(false);
      expect(check.detail).to.contain("FAILED: ECS deployment circuit breaker: tasks failed to start.").and.to.contain("rolling the service back");
      expect(ecs.commandCalls(DescribeServicesCommand)).to.have.length(1);
      expect(byName(report.checks, "alb-targets-healthy")).to.deep.include({ skipped: true, ok: false });
      expect(byName(report.checks, "smoke GET /health").detail).to.equal("not run: ecs-steady-state failed");
      expect(elbv2.calls()).to.have.length(0);
    });

    it("fails when the service settled on another task definition than the one deployed (rolled back)", async () => {
      ecs.on(DescribeServicesCommand).resolves(service({ taskDefinition: "arn:aws:ecs:us-east-1:123456789012:task-definition/web:6" }));
      const report = await verifier().verify(noSmoke, { ...outputs, taskDefinitionArn: { value: TASKDEF, secret: false } });
      expect(report.ok).to.equal(false);
      expect(byName(report.checks, "ecs-steady-state").detail).to.contain("task-definition/web:6, not the deployed").and.to.contain("rolled back");
    });

    it("fails after its deadline when the rollout never completes, saying what it last saw", async () => {
      ecs.on(DescribeServicesCommand).resolves(service({ rollout: "IN_PROGRESS", running: 1 }));
      const report = await verifier({ deadlineMs: 30 }).verify(noSmoke, outputs);
      const detail = byName(report.checks, "ecs-steady-state").detail;
      expect(detail).to.contain("not steady after 30ms").and.to.contain("primary rollout IN_PROGRESS, 1/2 tasks running").and.to.contain("last event: (service web) has started 1 tasks");
    });

    it("fails when the stack names a cluster but no service", async () => {
      const report = await verifier().verify(noSmoke, { url: outputs.url, clusterName: outputs.clusterName });
      expect(byName(report.checks, "ecs-steady-state")).to.deep.include({ ok: false, detail: "the stack has no serviceName output to find the service by" });
      expect(ecs.calls()).to.have.length(0);
    });

    it("skips the ECS and target checks, saying why, for a program that exports no ECS or load balancer outputs", async () => {
      const report = await verifier().verify(noSmoke, { url: outputs.url });
      expect(report.ok).to.equal(true);
      for (const name of ["ecs-steady-state", "alb-targets-healthy"]) {
        expect(byName(report.checks, name)).to.deep.include({ ok: true, skipped: true });
        expect(byName(report.checks, name).detail).to.contain("exports no clusterName, serviceName or targetGroupArn output");
      }
      expect(ecs.calls()).to.have.length(0);
    });

    it("fails when ECS does not know the service", async () => {
      ecs.on(DescribeServicesCommand).resolves({ services: [], failures: [{ arn: "arn:aws:ecs:…:service/web", reason: "MISSING" }] });
      const report = await verifier().verify(noSmoke, outputs);
      expect(byName(report.checks, "ecs-steady-state").detail).to.equal("service web not found in cluster web-cluster (MISSING)");
    });

    it("stops polling promptly with CanceledError when the signal aborts", async () => {
      ecs.on(DescribeServicesCommand).resolves(service({ rollout: "IN_PROGRESS", running: 0 }));
      const controller = new AbortController();
      const verifying = verifier({ pollIntervalMs: 60_000, deadlineMs: 600_000 }).verify(noSmoke, outputs, { signal: controller.signal });
      setTimeout(() => controller.abort(), 10);
      const started = Date.now();
      const err = await rejection(verifying);
      expect(err).to.be.instanceOf(CanceledError);
      expect(Date.now() - started).to.be.below(1000);
      expect(ecs.commandCalls(DescribeServicesCommand)).to.have.length(1);
    });
  });

  describe("AwsVerifier: load balancer targets", () => {
    it("fails after its deadline while a target stays unhealthy, with the load balancer's reason", async () => {
      ecs.on(DescribeServicesCommand).resolves(service());
      elbv2.on(DescribeTargetHealthCommand).resolves({
        TargetHealthDescriptions: [
          { Target: { Id: "10.0.1.1" }, TargetHealth: { State: "healthy" } },
          { Target: { Id: "10.0.1.2" }, TargetHealth: { State: "unhealthy", Reason: "Target.ResponseCodeMismatch", Description: "Health checks failed with these codes: [500]" } },
        ],
      });
      const report = await verifier({ deadlineMs: 30 }).verify(withSmokeTests([{ path: "/health", expectStatus: 200 }]), outputs);
      expect(report.ok).to.equal(false);
      const check = byName(report.checks, "alb-targets-healthy");
      expect(check.ok).to.equal(false);
      expect(check.detail)
        .to.contain("targets in web-tg/0123456789abcdef not healthy after 30ms")
        .and.to.contain("2 targets: 1 healthy, 1 unhealthy (Target.ResponseCodeMismatch: Health checks failed with these codes: [500])");
      expect(elbv2.commandCalls(DescribeTargetHealthCommand).length).to.be.greaterThan(1);
      expect(byName(report.checks, "smoke GET /health").skipped).to.equal(true);
    });

    it("waits for the first target to register", async () => {
      ecs.on(DescribeServicesCommand).resolves(service());
      elbv2.on(DescribeTargetHealthCommand).resolvesOnce({ TargetHealthDescriptions: [] }).resolvesOnce({ TargetHealthDescriptions: [{ TargetHealth: { State: "initial" } }] }).resolves(healthy(1));
      const report = await verifier().verify(noSmoke, outputs);
      expect(byName(report.checks, "alb-targets-healthy")).to.deep.include({ ok: true });
      expect(byName(report.checks, "alb-targets-healthy").detail).to.contain("1 target healthy in web-tg/0123456789abcdef (3 polls");
    });

    it("ignores targets of the previous deployment that are draining", async () => {
      ecs.on(DescribeServicesCommand).resolves(service());
      elbv2.on(DescribeTargetHealthCommand).resolves({
        TargetHealthDescriptions: [...healthy(2).TargetHealthDescriptions, { Target: { Id: "10.0.9.9" }, TargetHealth: { State: "draining", Reason: "Target.DeregistrationInProgress" } }],
      });
      const report = await verifier().verify(noSmoke, outputs);
      expect(report.ok).to.equal(true);
    });
  });

  describe("smoke tests against a real local server", () => {
    let server: TestServer | undefined;
    afterEach(async () => {
      await server?.close();
      server = undefined;
    });

    it("passes on the expected status", async () => {
      server = await serve(reply(200, "ok"));
      const check = await runSmokeTest(server.url, { path: "/health", expectStatus: 200 }, patient);
      expect(check).to.deep.include({ name: "smoke GET /health", ok: true });
      expect(check.detail).to.match(/^GET \/health → 200 \(1 attempt over \d+m?s\)$/);
    });

    it("fails on another status once the deadline passes, saying what it got and how often it tried", async () => {
      server = await serve(reply(500, "boom"));
      const check = await runSmokeTest(server.url, { path: "/health", expectStatus: 200 }, fast);
      expect(check.ok).to.equal(false);
      expect(check.detail).to.match(/^GET \/health → 500, expected 200 \(\d+ attempts over \d+m?s\)$/);
      expect(server.hits).to.be.greaterThan(1);
    });

    it("passes when the server fails twice and then answers, thanks to retries", async () => {
      server = await serve((hit, req, res) => reply(hit <= 2 ? 503 : 200)(hit, req, res));
      const check = await runSmokeTest(server.url, { path: "/health", expectStatus: 200 }, patient);
      expect(check.ok).to.equal(true);
      expect(check.detail).to.contain("GET /health → 200 (3 attempts");
      expect(server.hits).to.equal(3);
    });

    it("checks expectBodyContains", async () => {
      server = await serve(reply(200, '{"status":"ok","version":"1.4.0"}'));
      const pass = await runSmokeTest(server.url, { path: "/health", expectStatus: 200, expectBodyContains: '"version":"1.4.0"' }, patient);
      expect(pass.ok).to.equal(true);
      const fail = await runSmokeTest(server.url, { path: "/health", expectStatus: 200, expectBodyContains: "2.0.0" }, fast);
      expect(fail.ok).to.equal(false);
      expect(fail.detail).to.contain('GET /health → 200 but the body did not contain "2.0.0"');
    });

    it("gives up on a request that never answers after its timeout", async () => {
      server = await serve(() => undefined);
      const check = await runSmokeTest(server.url, { path: "/health", expectStatus: 200 }, { smokeIntervalMs: 5, smokeDeadlineMs: 10, requestTimeoutMs: 50 });
      expect(check.ok).to.equal(false);
      expect(check.detail).to.match(/^GET \/health → no answer within 50ms \(1 attempt/);
    });

    it("reports a refused connection", async () => {
      server = await serve(reply(200));
      const url = server.url;
      await server.close();
      server = undefined;
      const check = await runSmokeTest(url, { path: "/health", expectStatus: 200 }, { ...fast, smokeDeadlineMs: 20 });
      expect(check.detail).to.contain("request failed: ECONNREFUSED");
    });

    it("stops retrying promptly with CanceledError when the signal aborts", async () => {
      server = await serve(reply(500));
      const controller = new AbortController();
      const running = runSmokeTest(server.url, { path: "/health", expectStatus: 200 }, { smokeIntervalMs: 60_000, smokeDeadlineMs: 600_000, signal: controller.signal });
      setTimeout(() => controller.abort(), 30);
      const started = Date.now();
      expect(await rejection(running)).to.be.instanceOf(CanceledError);
      expect(Date.now() - started).to.be.below(1000);
    });

    it("runs the environment's smoke tests against the stack's url output after the AWS checks", async () => {
      server = await serve((hit, req, res) => reply(req.url === "/health" ? 200 : 404, "ok")(hit, req, res));
      ecs.on(DescribeServicesCommand).resolves(service());
      elbv2.on(DescribeTargetHealthCommand).resolves(healthy(2));
      const seen: string[] = [];
      const report = await verifier().verify(withSmokeTests([{ path: "/health", expectStatus: 200 }, { path: "/missing", expectStatus: 404 }]), { ...outputs, url: { value: `${server.url}/`, secret: false } }, {
        onProgress: (check) => seen.push(check.name),
      });
      expect(report.ok).to.equal(true);
      expect(seen).to.deep.equal(["ecs-steady-state", "alb-targets-healthy", "smoke GET /health", "smoke GET /missing"]);
    });

    it("sends smoke tests to the base URL override instead of the url output", async () => {
      server = await serve(reply(200));
      ecs.on(DescribeServicesCommand).resolves(service());
      elbv2.on(DescribeTargetHealthCommand).resolves(healthy(1));
      const report = await verifier({ baseUrl: server.url }).verify(withSmokeTests([{ path: "/health", expectStatus: 200 }]), outputs);
      expect(report.ok).to.equal(true);
      expect(server.hits).to.equal(1);
    });
  });

  describe("OfflineVerifier", () => {
    let server: TestServer | undefined;
    afterEach(async () => {
      await server?.close();
      server = undefined;
    });

    it("skips the ECS and load balancer checks: nothing runs", async () => {
      const report = await new OfflineVerifier().verify(noSmoke, {});
      expect(report.ok).to.equal(true);
      expect(report.checks).to.deep.equal([
        { name: "ecs-steady-state", ok: true, skipped: true, detail: "offline engine: nothing running to check" },
        { name: "alb-targets-healthy", ok: true, skipped: true, detail: "offline engine: nothing running to check" },
      ]);
    });

    it("skips smoke tests without a base URL", async () => {
      const report = await new OfflineVerifier().verify(withSmokeTests([{ path: "/health", expectStatus: 200 }]), {});
      expect(report.ok).to.equal(true);
      expect(byName(report.checks, "smoke GET /health")).to.deep.include({ skipped: true });
    });

    it("runs smoke tests for real against the base URL", async () => {
      server = await serve(reply(200, "ok"));
      const report = await new OfflineVerifier({ baseUrl: server.url, ...patient }).verify(withSmokeTests([{ path: "/health", expectStatus: 200, expectBodyContains: "ok" }]), {});
      expect(report.ok).to.equal(true);
      expect(byName(report.checks, "smoke GET /health")).to.deep.include({ ok: true });
      expect(byName(report.checks, "smoke GET /health").skipped).to.equal(undefined);
      expect(server.hits).to.equal(1);
    });

    it("fails the report when a smoke test against the base URL fails", async () => {
      server = await serve(reply(500));
      const report = await new OfflineVerifier({ baseUrl: server.url, ...fast }).verify(withSmokeTests([{ path: "/health", expectStatus: 200 }]), {});
      expect(report.ok).to.equal(false);
      expect(byName(report.checks, "smoke GET /health").detail).to.contain("GET /health → 500, expected 200");
    });
  });
});
