/**
 * Post-deploy verification: the SOP's "monitor the service, check the targets, run the smoke tests".
 * Three kinds of check, in order, each recording what it saw in `detail`:
 *
 *   ecs-steady-state     DescribeServices until one deployment, rollout COMPLETED, running == desired;
 *                        a FAILED rollout (the circuit breaker gave up) fails at once
 *   alb-targets-healthy  DescribeTargetHealth on the service's target group until every target is healthy
 *   smoke GET <path>     each `deploy.smokeTests` entry, retried until a deadline
 *
 * A check that fails makes the later ones `skipped` (they could only wait out their deadlines). Only
 * an abort throws (`CanceledError`); everything else is a failed check in the report.
 */
import type { Deployment, ECSClient, Service } from "@aws-sdk/client-ecs";
import type { ElasticLoadBalancingV2Client, TargetHealthDescription } from "@aws-sdk/client-elastic-load-balancing-v2";
import type { Outputs } from "../engine/port";
import type { DeployRules, Environment } from "../environment";
import { awsClientConfig } from "./aws-config";
import { awsErrorName, describeAwsError, isTransientAwsError } from "./aws-errors";
import { canceled, delay, formatDuration, plural, throwIfAborted } from "./wait";


// The AWS clients are loaded when a real verification runs: offline runs and the service's startup
// never need them.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const ecsSdk = (): typeof import("@aws-sdk/client-ecs") => require("@aws-sdk/client-ecs");
// eslint-disable-next-line @typescript-eslint/no-require-imports
const elbSdk = (): typeof import("@aws-sdk/client-elastic-load-balancing-v2") => require("@aws-sdk/client-elastic-load-balancing-v2");

export interface VerificationCheck {
  readonly name: string;
  readonly ok: boolean;
  /** Not run: nothing to check (offline engine, no load balancer) or an earlier check failed. */
  readonly skipped?: boolean;
  /** What the check saw: "GET /health → 500, expected 200 (3 attempts over 2m)". */
  readonly detail: string;
}

export interface VerificationReport {
  /** No check failed (skipped checks do not count). */
  readonly ok: boolean;
  readonly checks: readonly VerificationCheck[];
}

export interface VerifyOptions {
  readonly signal?: AbortSignal;
  /** Called as each check finishes. */
  readonly onProgress?: (check: VerificationCheck) => void;
}

export interface Verifier {
  verify(env: Environment, outputs: Outputs, options?: VerifyOptions): Promise<VerificationReport>;
}

export type SmokeTest = DeployRules["smokeTests"][number];

export interface SmokeTestOptions {
  /** Run smoke tests against this URL instead of the stack's `url` output (`DEPLOYER_SMOKE_BASE_URL`, read by the caller). */
  readonly baseUrl?: string;
  /** Default: the global `fetch`. */
  readonly fetch?: typeof fetch;
  /** Time between attempts of one smoke test. Default 2 s. */
  readonly smokeIntervalMs?: number;
  /** Attempts stop once the next would start after this long. Default 2 min. */
  readonly smokeDeadlineMs?: number;
  /** One request's time limit, body included. Default 10 s. */
  readonly requestTimeoutMs?: number;
}

export interface AwsVerifierOptions extends SmokeTestOptions {
  /** The clients to ask. Default: clients for `region`, configured from `awsEnv` (endpoint, credentials, profile; see aws-config.ts). */
  readonly ecs?: ECSClient;
  readonly elbv2?: ElasticLoadBalancingV2Client;
  /** The environment variables the default clients are configured from. Default: `process.env`. */
  readonly awsEnv?: NodeJS.ProcessEnv;
  /** Region of the default clients. Default: the environment's `aws.region`. */
  readonly region?: string;
  /** Time between DescribeServices / DescribeTargetHealth polls. Default 5 s. */
  readonly pollIntervalMs?: number;
  /** How long each of the steady-state and target-health waits may take. Default 10 min. */
  readonly deadlineMs?: number;
}

export const ECS_CHECK = "ecs-steady-state";
export const TARGETS_CHECK = "alb-targets-healthy";

export function smokeCheckName(test: SmokeTest): string {
  return `smoke GET ${test.path}`;
}

const OFFLINE_DETAIL = "offline engine: nothing running to check";

/** Collects checks in order and reports each as it lands. */
class Checklist {
  readonly checks: VerificationCheck[] = [];
  constructor(private readonly onProgress?: (check: VerificationCheck) => void) {}

  add(check: VerificationCheck): VerificationCheck {
    this.checks.push(check);
    this.onProgress?.(check);
    return check;
  }

  /** Adds the remaining checks as not run, naming the check that failed. */
  skipRest(names: readonly string[], because: VerificationCheck): void {
    for (const name of names) this.add({ name, ok: false, skipped: true, detail: `not run: ${because.name} failed` });
  }

  report(): VerificationReport {
    return { ok: this.checks.every((c) => c.ok || c.skipped === true), checks: this.checks };
  }
}

function outputString(outputs: Outputs, key: string): string | undefined {
  const o = outputs[key];
  return o !== undefined && !o.secret && typeof o.value === "string" && o.value !== "" ? o.value : undefined;
}

/** Verification against AWS: what the pulumi engine deployed. */
export class AwsVerifier implements Verifier {
  private readonly pollIntervalMs: number;
  private readonly deadlineMs: number;

  constructor(private readonly options: AwsVerifierOptions = {}) {
    this.pollIntervalMs = options.pollIntervalMs ?? 5_000;
    this.deadlineMs = options.deadlineMs ?? 10 * 60_000;
  }

  async verify(env: Environment, outputs: Outputs, options: VerifyOptions = {}): Promise<VerificationReport> {
    const { signal } = options;
    const what = `verification of ${env.name}`;
    throwIfAborted(what, signal);
    const region = this.options.region ?? env.settings.aws.region;
    const list = new Checklist(options.onProgress);
    const smokeNames = env.deploy.smokeTests.map(smokeCheckName);

    if (outputs.clusterName === undefined && outputs.serviceName === undefined && outputs.targetGroupArn === undefined) {
      // A program that deploys no ECS service (an environment's `program` may be another one).
      const detail = "skipped: the program exports no clusterName, serviceName or targetGroupArn output, so it deploys no ECS service or load balancer to check";
      list.add({ name: ECS_CHECK, ok: true, skipped: true, detail });
      list.add({ name: TARGETS_CHECK, ok: true, skipped: true, detail });
    } else {
      const done = await this.checkServiceAndTargets(list, outputs, region, what, smokeNames, signal);
      if (!done) return list.report();
    }

    const baseUrl = this.options.baseUrl ?? outputString(outputs, "url");
    for (const test of env.deploy.smokeTests) {
      if (baseUrl === undefined) list.add({ name: smokeCheckName(test), ok: false, detail: "no URL to test: the stack has no `url` output and no base URL was given" });
      else list.add(await runSmokeTest(baseUrl, test, { ...this.options, signal }));
    }
    return list.report();
  }

  /** The ECS steady-state and target-health checks; false when one failed (the rest are skipped). */
  private async checkServiceAndTargets(list: Checklist, outputs: Outputs, region: string, what: string, smokeNames: string[], signal?: AbortSignal): Promise<boolean> {
    const ecs = this.options.ecs ?? new (ecsSdk().ECSClient)(awsClientConfig(this.options.awsEnv ?? process.env, "ECS", region));
    const steady = await this.waitForSteadyState(ecs, outputs, what, signal);
    list.add(steady.check);
    if (!steady.check.ok) {
      list.skipRest([TARGETS_CHECK, ...smokeNames], steady.check);
      return false;
    }

    const targetGroupArn = steady.targetGroupArn ?? outputString(outputs, "targetGroupArn");
    if (targetGroupArn === undefined) {
      list.add({ name: TARGETS_CHECK, ok: true, skipped: true, detail: "the service has no load balancer target group" });
    } else {
      const elbv2 = this.options.elbv2 ?? new (elbSdk().ElasticLoadBalancingV2Client)(awsClientConfig(this.options.awsEnv ?? process.env, "Elastic Load Balancing v2", region));
      const targets = list.add(await this.waitForHealthyTargets(elbv2, targetGroupArn, what, signal));
      if (!targets.ok) {
        list.skipRest(smokeNames, targets);
        return false;
      }
    }
    return true;
  }

  private async waitForSteadyState(ecs: ECSClient, outputs: Outputs, what: string, signal?: AbortSignal): Promise<{ check: VerificationCheck; targetGroupArn?: string }> {
    const fail = (detail: string) => ({ check: { name: ECS_CHECK, ok: false, detail } });
    const cluster = outputString(outputs, "clusterName");
    const service = outputString(outputs, "serviceName");
    if (cluster === undefined || service === undefined) {
      const missing = [cluster === undefined ? "clusterName" : undefined, service === undefined ? "serviceName" : undefined].filter(Boolean).join(" and ");
      return fail(`the stack has no ${missing} output to find the service by`);
    }
    const deployedTaskDefinition = outputString(outputs, "taskDefinitionArn");
    const started = Date.now();
    let polls = 0;
    let last = "no answer yet";
    for (;;) {
      polls++;
      let svc: Service | undefined;
      try {
        const res = await ecs.send(new (ecsSdk().DescribeServicesCommand)({ cluster, services: [service] }), { abortSignal: signal });
        svc = res.services?.[0];
        if (svc === undefined) {
          const reason = res.failures?.[0]?.reason;
          return fail(`service ${service} not found in cluster ${cluster}${reason ? ` (${reason})` : ""}`);
        }
      } catch (err) {
        if (signal?.aborted) throw canceled(what, signal);
        if (!isTransientAwsError(err)) return fail(`DescribeServices on ${cluster}/${service} failed: ${describeAwsError(err)}`);
        last = `DescribeServices: ${describeAwsError(err)}`;
      }

      if (svc !== undefined) {
        if (svc.status !== undefined && svc.status !== "ACTIVE") return fail(`service ${service} is ${svc.status}`);
        const deployments = svc.deployments ?? [];
        const failed = deployments.find((d) => d.rolloutState === "FAILED");
        if (failed !== undefined) {
          const rollback = svc.deploymentConfiguration?.deploymentCircuitBreaker?.rollback;
          return fail(
            `deployment ${failed.id ?? "(unknown)"} FAILED: ${failed.rolloutStateReason ?? "no reason given"}` +
              (rollback ? "; the circuit breaker is rolling the service back to the previous task definition" : ""),
          );
        }
        const primary = deployments.find((d) => d.status === "PRIMARY") ?? deployments[0];
        const running = svc.runningCount ?? 0;
        const desired = svc.desiredCount ?? 0;
        // Without a circuit breaker ECS sets no rolloutState; then the counts alone say "steady".
        const rolledOut = primary !== undefined && (primary.rolloutState ?? "COMPLETED") === "COMPLETED";
        if (deployments.length === 1 && rolledOut && running === desired) {
          if (deployedTaskDefinition !== undefined && primary.taskDefinition !== undefined && primary.taskDefinition !== deployedTaskDefinition) {
            return fail(`${service} is steady on ${primary.taskDefinition}, not the deployed ${deployedTaskDefinition}: the deployment was rolled back`);
          }
          return {
            check: { name: ECS_CHECK, ok: true, detail: `${service} on ${cluster}: deployment COMPLETED, ${running}/${desired} tasks running (${plural(polls, "poll")} over ${formatDuration(Date.now() - started)})` },
            targetGroupArn: svc.loadBalancers?.[0]?.targetGroupArn,
          };
        }
        last = describeRollout(deployments, primary, running, desired, svc.events?.[0]?.message);
      }

      if (Date.now() - started + this.pollIntervalMs > this.deadlineMs) {
        return fail(`${service} on ${cluster} not steady after ${formatDuration(this.deadlineMs)}: ${last} (${plural(polls, "poll")})`);
      }
      await delay(this.pollIntervalMs, what, signal);
    }
  }

  private async waitForHealthyTargets(elbv2: ElasticLoadBalancingV2Client, targetGroupArn: string, what: string, signal?: AbortSignal): Promise<VerificationCheck> {
    const group = targetGroupArn.replace(/^.*:targetgroup\//, "");
    const started = Date.now();
    let polls = 0;
    let last = "no answer yet";
    for (;;) {
      polls++;
      try {
        const res = await elbv2.send(new (elbSdk().DescribeTargetHealthCommand)({ TargetGroupArn: targetGroupArn }), { abortSignal: signal });
        // Draining targets are the previous deployment's tasks leaving; they say nothing about this one.
        const live = (res.TargetHealthDescriptions ?? []).filter((d) => !(d.TargetHealth?.State ?? "").includes("draining"));
        if (live.length > 0 && live.every((d) => d.TargetHealth?.State === "healthy")) {
          return { name: TARGETS_CHECK, ok: true, detail: `${plural(live.length, "target")} healthy in ${group} (${plural(polls, "poll")} over ${formatDuration(Date.now() - started)})` };
        }
        last = describeTargets(live);
      } catch (err) {
        if (signal?.aborted) throw canceled(what, signal);
        if (!isTransientAwsError(err)) return { name: TARGETS_CHECK, ok: false, detail: `DescribeTargetHealth on ${group} failed: ${describeAwsError(err)}` };
        last = `DescribeTargetHealth: ${awsErrorName(err)}`;
      }
      if (Date.now() - started + this.pollIntervalMs > this.deadlineMs) {
        return { name: TARGETS_CHECK, ok: false, detail: `targets in ${group} not healthy after ${formatDuration(this.deadlineMs)}: ${last} (${plural(polls, "poll")})` };
      }
      await delay(this.pollIntervalMs, what, signal);
    }
  }
}

function describeRollout(deployments: readonly Deployment[], primary: Deployment | undefined, running: number, desired: number, lastEvent?: string): string {
  const parts = [plural(deployments.length, "deployment"), `primary rollout ${primary?.rolloutState ?? "unknown"}`, `${running}/${desired} tasks running`];
  return parts.join(", ") + (lastEvent ? `; last event: ${lastEvent}` : "");
}

function describeTargets(live: readonly TargetHealthDescription[]): string {
  if (live.length === 0) return "no targets registered";
  const counts = new Map<string, number>();
  for (const d of live) counts.set(d.TargetHealth?.State ?? "unknown", (counts.get(d.TargetHealth?.State ?? "unknown") ?? 0) + 1);
  const summary = [...counts].map(([state, n]) => `${n} ${state}`).join(", ");
  const sick = live.find((d) => d.TargetHealth?.State !== "healthy")?.TargetHealth;
  const why = sick?.Reason || sick?.Description ? ` (${[sick.Reason, sick.Description].filter(Boolean).join(": ")})` : "";
  return `${plural(live.length, "target")}: ${summary}${why}`;
}

/**
 * One smoke test: GET `<baseUrl><path>` until it answers `expectStatus` (and contains
 * `expectBodyContains`), or the deadline passes. Returns the check; throws only `CanceledError`.
 */
export async function runSmokeTest(baseUrl: string, test: SmokeTest, options: SmokeTestOptions & { signal?: AbortSignal } = {}): Promise<VerificationCheck> {
  const name = smokeCheckName(test);
  const { signal } = options;
  const what = `smoke test GET ${test.path}`;
  throwIfAborted(what, signal);
  const intervalMs = options.smokeIntervalMs ?? 2_000;
  const deadlineMs = options.smokeDeadlineMs ?? 2 * 60_000;
  const timeoutMs = options.requestTimeoutMs ?? 10_000;
  const fetchImpl = options.fetch ?? fetch;

  let base: URL;
  try {
    base = new URL(baseUrl);
  } catch {
    return { name, ok: false, detail: `the base URL "${baseUrl}" is not a URL` };
  }
  if (base.protocol !== "http:" && base.protocol !== "https:") return { name, ok: false, detail: `the base URL "${baseUrl}" is not http(s)` };
  const url = baseUrl.replace(/\/+$/, "") + test.path;

  const started = Date.now();
  let attempts = 0;
  for (;;) {
    attempts++;
    const timeout = AbortSignal.timeout(timeoutMs);
    const requestSignal = signal ? AbortSignal.any([signal, timeout]) : timeout;
    let observed: string;
    let status: number | undefined;
    try {
      const res = await fetchImpl(url, { signal: requestSignal, headers: { "user-agent": "pulumi-aws-deployer smoke test" } });
      status = res.status;
      if (test.expectBodyContains !== undefined) {
        const body = await res.text();
        observed = res.status !== test.expectStatus ? `${res.status}, expected ${test.expectStatus}` : body.includes(test.expectBodyContains) ? "" : `${res.status} but the body did not contain ${JSON.stringify(test.expectBodyContains)}`;
      } else {
        await res.body?.cancel();
        observed = res.status !== test.expectStatus ? `${res.status}, expected ${test.expectStatus}` : "";
      }
    } catch (err) {
      if (signal?.aborted) throw canceled(what, signal);
      observed = timeout.aborted ? `no answer within ${formatDuration(timeoutMs)}` : `request failed: ${fetchFailure(err)}`;
    }
    const elapsed = Date.now() - started;
    if (observed === "") {
      return { name, ok: true, detail: `GET ${test.path} → ${status} (${plural(attempts, "attempt")} over ${formatDuration(elapsed)})` };
    }
    if (elapsed + intervalMs > deadlineMs) {
      return { name, ok: false, detail: `GET ${test.path} → ${observed} (${plural(attempts, "attempt")} over ${formatDuration(elapsed)})` };
    }
    await delay(intervalMs, what, signal);
  }
}

/** undici wraps the socket error in `cause`: "ECONNREFUSED" says more than "fetch failed". */
function fetchFailure(err: unknown): string {
  const cause = (err as { cause?: { code?: unknown; message?: unknown } } | null)?.cause;
  if (cause && typeof cause.code === "string") return cause.code;
  if (cause && typeof cause.message === "string") return cause.message;
  return err instanceof Error ? err.message : String(err);
}

/** `baseUrl`: where the app runs, if anywhere (e.g. a local run of examples/app); without it smoke tests are skipped. */
export type OfflineVerifierOptions = SmokeTestOptions;

/**
 * For the offline engine, which creates nothing: the ECS and load balancer checks are skipped, and the
 * smoke tests run for real only when a base URL points them at a server.
 */
export class OfflineVerifier implements Verifier {
  constructor(private readonly options: OfflineVerifierOptions = {}) {}

  async verify(env: Environment, _outputs: Outputs, options: VerifyOptions = {}): Promise<VerificationReport> {
    const { signal } = options;
    throwIfAborted(`verification of ${env.name}`, signal);
    const list = new Checklist(options.onProgress);
    list.add({ name: ECS_CHECK, ok: true, skipped: true, detail: OFFLINE_DETAIL });
    list.add({ name: TARGETS_CHECK, ok: true, skipped: true, detail: OFFLINE_DETAIL });
    const baseUrl = this.options.baseUrl;
    for (const test of env.deploy.smokeTests) {
      if (baseUrl === undefined) {
        list.add({ name: smokeCheckName(test), ok: true, skipped: true, detail: `${OFFLINE_DETAIL} (give DEPLOYER_SMOKE_BASE_URL to run it against a server)` });
      } else {
        list.add(await runSmokeTest(baseUrl, test, { ...this.options, signal }));
      }
    }
    return list.report();
  }
}
