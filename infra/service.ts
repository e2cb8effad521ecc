/**
 * Service: the ECS cluster, task definition and Fargate service behind a public ALB, with CPU
 * target-tracking autoscaling. A deployment is a new task definition revision rolled out by ECS
 * with the circuit breaker on: a revision that never gets healthy is rolled back by ECS itself.
 * `up` waits for steady state, but that does NOT make a failed rollout fail the deployment: after a
 * circuit-breaker rollback the service is steady again, on the old revision, and the provider
 * reports success (hashicorp/terraform-provider-aws#20858). The deployer's verification catches it
 * (automation/checks/verify.ts: the running tasks must be the deployed task definition's).
 */
import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import { FARGATE_SIZES } from "./config";
import { ComponentArgumentError, checkName, childName, secretValueFrom, type AwsTarget, type SecretRef } from "./naming";

export const SERVICE_TYPE = "deployer:infra:Service";

/** TLS 1.3 with 1.2 fallback, forward-secret ciphers only. */
export const SSL_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06";

/**
 * Where the container may write: task volumes over the read-only root. An image must declare each
 * as a `VOLUME` (the Registry checks a build's Dockerfile), so the volume takes its owner and mode.
 */
export const WRITABLE_PATHS = ["/tmp"] as const;

/** Environment variables the deployer sets itself. */
export const RESERVED_ENVIRONMENT = ["APP_VERSION"] as const;

/** What the container gets when the environment has a database; the environment may not set them. */
export const DATABASE_ENVIRONMENT = ["DATABASE_HOST", "DATABASE_PORT", "DATABASE_NAME", "DATABASE_USER", "DATABASE_PASSWORD"] as const;

/** The `valueFrom` ECS resolves to one JSON key of a Secrets Manager secret. */
export function secretKeyValueFrom(secretArn: string, key: string): string {
  return `${secretArn}:${key}::`;
}

export interface ServiceArgs {
  readonly vpcId: pulumi.Input<string>;
  /** Where the load balancer lives: at least two zones. */
  readonly publicSubnetIds: readonly pulumi.Input<string>[];
  /** Where tasks run, without public addresses. */
  readonly privateSubnetIds: readonly pulumi.Input<string>[];
  readonly loadBalancerSecurityGroupId: pulumi.Input<string>;
  readonly serviceSecurityGroupId: pulumi.Input<string>;
  /** The role ECS starts tasks with (pull, logs, secrets). */
  readonly executionRoleArn: pulumi.Input<string>;
  /** The application's own role. */
  readonly taskRoleArn: pulumi.Input<string>;
  /** The image the container runs: a tag or, better, `repo@sha256:…`. Never `latest`. */
  readonly image: pulumi.Input<string>;
  /** The deploy version, passed to the container as `APP_VERSION`. */
  readonly version: string;
  /** Account and region: log configuration and secret ARNs. */
  readonly aws: AwsTarget;
  /** The log group the container writes to (it must exist before the task starts). */
  readonly logGroupName: pulumi.Input<string>;
  /** The container's name in the task definition (and in log stream names). Default `app`. */
  readonly containerName?: string;
  /** The port the container listens on. */
  readonly port: number;
  /** Fargate CPU units and memory (MiB), one of the Fargate combinations. */
  readonly cpu: number;
  readonly memory: number;
  /** Tasks at first deployment; afterwards autoscaling owns the count. */
  readonly desiredCount: number;
  readonly autoscaling: { readonly min: number; readonly max: number; readonly cpuTarget: number };
  readonly healthCheck: {
    /** Checked by the load balancer and, unless `containerCommand` says otherwise, inside the container with wget. */
    readonly path: string;
    /** Default 30. */
    readonly intervalSeconds?: number;
    /** Successful checks before a target counts as healthy. Default 3. */
    readonly healthyThreshold?: number;
    /**
     * The container's own check (`["CMD", …]` or `["CMD-SHELL", …]`), or `none` to rely on the
     * target group's alone. Default: `wget` against 127.0.0.1 through /bin/sh.
     */
    readonly containerCommand?: readonly string[] | "none";
  };
  /** Plain configuration. Default none. */
  readonly environment?: Readonly<Record<string, string>>;
  /**
   * The database: the container gets DATABASE_HOST, DATABASE_PORT and DATABASE_NAME as plain
   * values, and DATABASE_USER and DATABASE_PASSWORD from the RDS-managed secret's `username` and
   * `password` keys, fetched by ECS at each task start (so a rotated password reaches new tasks).
   * Default: none.
   */
  readonly database?: {
    readonly host: pulumi.Input<string>;
    readonly port: pulumi.Input<number>;
    readonly name: string;
    readonly secretArn: pulumi.Input<string>;
  };
  /** Secrets injected at start by ECS from SSM or Secrets Manager. Default none. */
  readonly secrets?: Readonly<Record<string, SecretRef>>;
  /**
   * The service's own name: a Route 53 alias (A) to the load balancer in the hosted zone, HTTPS on
   * 443 with a certificate for that name and a redirect on 80, and `url` on that name. Without it,
   * plain HTTP on 80 and `url` on the load balancer's name (never in production).
   */
  readonly domain?: { readonly name: string; readonly hostedZoneId: string };
  /** An ACM certificate for `domain` (same account and region). Default: requested here and DNS-validated in the hosted zone. */
  readonly certificateArn?: string;
  /** Production refuses to serve without a domain. Default false. */
  readonly production?: boolean;
  /** Deletion protection on the load balancer. Default false. */
  readonly deletionProtection?: boolean;
  /** Where the load balancer writes access logs. Default: no access logs. */
  readonly accessLogs?: { readonly bucket: pulumi.Input<string>; readonly prefix: string };
  /** Default 60. */
  readonly idleTimeoutSeconds?: number;
  /** How long a draining target keeps its in-flight requests. Default 30. */
  readonly deregistrationDelaySeconds?: number;
  /** Time a new task has before failed health checks count against it. Default 60. */
  readonly healthCheckGracePeriodSeconds?: number;
}

export interface ContainerSpec {
  readonly name: string;
  readonly image: string;
  readonly port: number;
  readonly cpu: number;
  readonly memory: number;
  readonly healthCheckPath: string;
  /** Replaces the default wget check; `none` leaves the container without one. */
  readonly healthCheckCommand?: readonly string[] | "none";
  readonly healthCheckIntervalSeconds: number;
  readonly healthCheckStartPeriodSeconds: number;
  readonly logGroupName: string;
  readonly region: string;
  readonly logStreamPrefix: string;
  readonly version: string;
  readonly environment: Readonly<Record<string, string>>;
  /** Name → `valueFrom` ARN. */
  readonly secrets: Readonly<Record<string, string>>;
}

/**
 * The default container check. `127.0.0.1`, never `localhost`: BusyBox wget (Alpine) may resolve
 * localhost to ::1 first and not fall back to IPv4, so a server bound to 0.0.0.0 would never be
 * healthy. `-O /dev/null`: a plain `wget -q` would save a file, which a read-only root refuses.
 */
export function defaultHealthCommand(port: number, path: string): string[] {
  return ["CMD-SHELL", `wget -q -O /dev/null 'http://127.0.0.1:${port}${path}' || exit 1`];
}

/** The single-container definition list, as ECS takes it. Names are sorted so the JSON is stable. */
export function containerDefinitions(spec: ContainerSpec): object[] {
  const environment: Record<string, string> = { ...spec.environment, APP_VERSION: spec.version };
  const command = spec.healthCheckCommand ?? defaultHealthCommand(spec.port, spec.healthCheckPath);
  return [
    {
      name: spec.name,
      image: spec.image,
      essential: true,
      cpu: spec.cpu,
      memory: spec.memory,
      portMappings: [{ containerPort: spec.port, protocol: "tcp" }],
      // The root filesystem is read-only; /tmp is the one writable place, a task-local volume that
      // takes the owner and mode of the image's declared VOLUME.
      readonlyRootFilesystem: true,
      mountPoints: WRITABLE_PATHS.map((containerPath) => ({ sourceVolume: volumeName(containerPath), containerPath, readOnly: false })),
      healthCheck:
        command === "none"
          ? undefined
          : { command: [...command], interval: spec.healthCheckIntervalSeconds, timeout: 5, retries: 3, startPeriod: spec.healthCheckStartPeriodSeconds },
      logConfiguration: {
        logDriver: "awslogs",
        options: { "awslogs-group": spec.logGroupName, "awslogs-region": spec.region, "awslogs-stream-prefix": spec.logStreamPrefix },
      },
      environment: Object.keys(environment)
        .sort()
        .map((name) => ({ name, value: environment[name] })),
      secrets: Object.keys(spec.secrets)
        .sort()
        .map((name) => ({ name, valueFrom: spec.secrets[name] })),
    },
  ];
}

/** `/tmp` → `tmp`: the task volume behind a writable path. */
export function volumeName(containerPath: string): string {
  return containerPath.replace(/^\//, "").replace(/[^A-Za-z0-9_-]/g, "-");
}

/** The target group's health check; its timeout must stay below the interval. */
export function targetHealthCheck(path: string, intervalSeconds: number, healthyThreshold: number): aws.types.input.lb.TargetGroupHealthCheck {
  return {
    enabled: true,
    protocol: "HTTP",
    path,
    matcher: "200-399",
    interval: intervalSeconds,
    timeout: Math.min(5, intervalSeconds - 1),
    healthyThreshold,
    unhealthyThreshold: 3,
  };
}

/**
 * AWS caps load balancer and target group names at 32 characters, and Pulumi names them
 * `<name>-alb-<7 random>`; a longer name fails only at `up`, so it is refused here, at preview.
 */
export const MAX_SERVICE_NAME_LENGTH = 32 - "-alb".length - 8;

export function validateServiceArgs(name: string, args: ServiceArgs): void {
  checkName(SERVICE_TYPE, name);
  const fail = (arg: string, reason: string) => new ComponentArgumentError(SERVICE_TYPE, name, arg, reason);
  if (name.length > MAX_SERVICE_NAME_LENGTH) {
    throw fail("name", `is ${name.length} characters; at most ${MAX_SERVICE_NAME_LENGTH} fit in a load balancer name (32 with Pulumi's random suffix): shorten app.name or the environment name`);
  }
  if (args.production === true && args.domain === undefined) {
    throw fail("domain", "is required in production: production serves HTTPS only, on a name a certificate can cover (set app.domain in the environment file)");
  }
  if (args.certificateArn !== undefined && args.domain === undefined) {
    throw fail("certificateArn", "needs `domain`: no certificate can cover the load balancer's *.elb.amazonaws.com name");
  }
  if (args.domain !== undefined && !/^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$/.test(args.domain.name)) throw fail("domain.name", `"${args.domain.name}" is not a lowercase DNS name`);
  if (args.publicSubnetIds.length < 2) throw fail("publicSubnetIds", "must name subnets in at least two zones (an ALB requirement)");
  if (args.privateSubnetIds.length < 1) throw fail("privateSubnetIds", "must name at least one subnet");
  if (!Number.isInteger(args.port) || args.port < 1 || args.port > 65535) throw fail("port", `is ${args.port}; give a port from 1 to 65535`);
  const memories = FARGATE_SIZES[args.cpu];
  if (memories === undefined) throw fail("cpu", `${args.cpu} is not a Fargate CPU size (${Object.keys(FARGATE_SIZES).join(", ")})`);
  if (!memories.includes(args.memory)) throw fail("memory", `${args.memory} MiB is not allowed with ${args.cpu} CPU units on Fargate`);
  const { min, max, cpuTarget } = args.autoscaling;
  if (!Number.isInteger(min) || !Number.isInteger(max) || min < 0 || max < 1 || min > max) throw fail("autoscaling", `min ${min} and max ${max} must be whole numbers with 0 ≤ min ≤ max and max ≥ 1`);
  if (!(cpuTarget >= 10 && cpuTarget <= 95)) throw fail("autoscaling.cpuTarget", `is ${cpuTarget}; give 10 to 95`);
  if (!Number.isInteger(args.desiredCount) || args.desiredCount < min || args.desiredCount > max) throw fail("desiredCount", `${args.desiredCount} is outside the autoscaling range ${min}–${max}`);
  // The path is quoted into a shell command in the container's health check.
  if (!/^\/[^\s']*$/.test(args.healthCheck.path)) throw fail("healthCheck.path", `"${args.healthCheck.path}" must be an absolute URL path without spaces or quotes`);
  const command = args.healthCheck.containerCommand;
  if (command !== undefined && command !== "none") {
    if (command.length < 2 || (command[0] !== "CMD" && command[0] !== "CMD-SHELL")) throw fail("healthCheck.containerCommand", 'must be "none", ["CMD", <program>, …] or ["CMD-SHELL", <command>]');
    if (command.some((part) => /\blocalhost\b/.test(part))) throw fail("healthCheck.containerCommand", "must not use localhost (BusyBox wget may resolve it to ::1 only); use 127.0.0.1");
  }
  const interval = args.healthCheck.intervalSeconds;
  if (interval !== undefined && (!Number.isInteger(interval) || interval < 5 || interval > 300)) throw fail("healthCheck.intervalSeconds", "must be 5 to 300");
  const threshold = args.healthCheck.healthyThreshold;
  if (threshold !== undefined && (!Number.isInteger(threshold) || threshold < 2 || threshold > 10)) throw fail("healthCheck.healthyThreshold", "must be 2 to 10");
  for (const key of RESERVED_ENVIRONMENT) {
    if (args.environment !== undefined && key in args.environment) throw fail(`environment.${key}`, "is set by the deployer");
  }
  if (args.database !== undefined) {
    for (const key of DATABASE_ENVIRONMENT) {
      if (args.environment !== undefined && key in args.environment) throw fail(`environment.${key}`, "is set from the database");
      if (args.secrets !== undefined && key in args.secrets) throw fail(`secrets.${key}`, "is set from the database's managed secret");
    }
  }
  for (const key of Object.keys(args.secrets ?? {})) {
    if (args.environment !== undefined && key in args.environment) throw fail(`secrets.${key}`, "is also defined in `environment`");
  }
  if (args.containerName !== undefined && !/^[A-Za-z0-9_-]{1,255}$/.test(args.containerName)) throw fail("containerName", "must be letters, digits, `_` and `-`");
  const grace = args.healthCheckGracePeriodSeconds;
  if (grace !== undefined && (!Number.isInteger(grace) || grace < 0)) throw fail("healthCheckGracePeriodSeconds", "must be a whole number of seconds");
  const idle = args.idleTimeoutSeconds;
  if (idle !== undefined && (!Number.isInteger(idle) || idle < 1 || idle > 4000)) throw fail("idleTimeoutSeconds", "must be 1 to 4000");
  const delay = args.deregistrationDelaySeconds;
  if (delay !== undefined && (!Number.isInteger(delay) || delay < 0 || delay > 3600)) throw fail("deregistrationDelaySeconds", "must be 0 to 3600");
}

/**
 * An ACM certificate for the domain, validated through its DNS record in the hosted zone; resolves
 * to the ARN once ACM has issued it, so the HTTPS listener never gets a pending certificate.
 */
function dnsValidatedCertificate(n: (role: string) => string, domain: { readonly name: string; readonly hostedZoneId: string }, parent: pulumi.CustomResourceOptions): pulumi.Output<string> {
  const certificate = new aws.acm.Certificate(n("cert"), { domainName: domain.name, validationMethod: "DNS" }, parent);
  const option = certificate.domainValidationOptions.apply((options) => {
    const o = options.find((x) => x.domainName === domain.name) ?? options[0];
    if (o === undefined) throw new Error(`ACM returned no DNS validation record for ${domain.name}`);
    return o;
  });
  const record = new aws.route53.Record(
    n("cert-validation"),
    { zoneId: domain.hostedZoneId, name: option.apply((o) => o.resourceRecordName!), type: option.apply((o) => o.resourceRecordType!), records: [option.apply((o) => o.resourceRecordValue!)], ttl: 60, allowOverwrite: true },
    parent,
  );
  const validation = new aws.acm.CertificateValidation(n("cert"), { certificateArn: certificate.arn, validationRecordFqdns: [record.fqdn] }, parent);
  return validation.certificateArn;
}

export class Service extends pulumi.ComponentResource {
  public readonly clusterName: pulumi.Output<string>;
  public readonly serviceName: pulumi.Output<string>;
  public readonly taskDefinitionArn: pulumi.Output<string>;
  public readonly albDnsName: pulumi.Output<string>;
  /** The ALB's CloudWatch dimension. */
  public readonly albArnSuffix: pulumi.Output<string>;
  /** For target-health checks after a deployment. */
  public readonly targetGroupArn: pulumi.Output<string>;
  /** The target group's CloudWatch dimension. */
  public readonly targetGroupArnSuffix: pulumi.Output<string>;
  /** `https://<domain>` with a domain, else `http://<alb dns>`. */
  public readonly url: pulumi.Output<string>;

  constructor(name: string, args: ServiceArgs, opts?: pulumi.ComponentResourceOptions) {
    validateServiceArgs(name, args);
    super(SERVICE_TYPE, name, {}, opts);
    const parent = { parent: this };
    const n = (role: string) => childName(name, role);
    const containerName = args.containerName ?? "app";
    const interval = args.healthCheck.intervalSeconds ?? 30;
    const grace = args.healthCheckGracePeriodSeconds ?? 60;

    const alb = new aws.lb.LoadBalancer(
      n("alb"),
      {
        loadBalancerType: "application",
        internal: false,
        subnets: [...args.publicSubnetIds],
        securityGroups: [args.loadBalancerSecurityGroupId],
        enableDeletionProtection: args.deletionProtection ?? false,
        dropInvalidHeaderFields: true,
        idleTimeout: args.idleTimeoutSeconds ?? 60,
        accessLogs: args.accessLogs === undefined ? undefined : { bucket: args.accessLogs.bucket, prefix: args.accessLogs.prefix, enabled: true },
      },
      parent,
    );
    const targetGroup = new aws.lb.TargetGroup(
      n("tg"),
      {
        vpcId: args.vpcId,
        // Fargate tasks register by their ENI's address.
        targetType: "ip",
        port: args.port,
        protocol: "HTTP",
        deregistrationDelay: args.deregistrationDelaySeconds ?? 30,
        healthCheck: targetHealthCheck(args.healthCheck.path, interval, args.healthCheck.healthyThreshold ?? 3),
      },
      parent,
    );
    const forward = [{ type: "forward", targetGroupArn: targetGroup.arn }];
    const listeners: aws.lb.Listener[] = [];
    const domain = args.domain;
    if (domain !== undefined) {
      new aws.route53.Record(n("alias"), { zoneId: domain.hostedZoneId, name: domain.name, type: "A", aliases: [{ name: alb.dnsName, zoneId: alb.zoneId, evaluateTargetHealth: true }] }, parent);
      const certificateArn = args.certificateArn ?? dnsValidatedCertificate(n, domain, parent);
      listeners.push(new aws.lb.Listener(n("https"), { loadBalancerArn: alb.arn, port: 443, protocol: "HTTPS", sslPolicy: SSL_POLICY, certificateArn, defaultActions: forward }, parent));
      listeners.push(
        new aws.lb.Listener(
          n("http"),
          { loadBalancerArn: alb.arn, port: 80, protocol: "HTTP", defaultActions: [{ type: "redirect", redirect: { protocol: "HTTPS", port: "443", statusCode: "HTTP_301" } }] },
          parent,
        ),
      );
    } else {
      listeners.push(new aws.lb.Listener(n("http"), { loadBalancerArn: alb.arn, port: 80, protocol: "HTTP", defaultActions: forward }, parent));
    }

    const cluster = new aws.ecs.Cluster(n("cluster"), { settings: [{ name: "containerInsights", value: "enabled" }] }, parent);
    const secrets: Record<string, string> = {};
    for (const [key, ref] of Object.entries(args.secrets ?? {})) secrets[key] = secretValueFrom(args.aws, ref);
    const db = args.database;
    const dbValues = db === undefined ? pulumi.output(undefined) : pulumi.all([pulumi.output(db.host), pulumi.output(db.port), pulumi.output(db.secretArn)]).apply(([host, port, secretArn]) => ({ host, port, secretArn }));
    const definitions = pulumi.all([pulumi.output(args.image), pulumi.output(args.logGroupName), dbValues]).apply(([image, logGroupName, database]) =>
      JSON.stringify(
        containerDefinitions({
          name: containerName,
          image,
          port: args.port,
          cpu: args.cpu,
          memory: args.memory,
          healthCheckPath: args.healthCheck.path,
          healthCheckCommand: args.healthCheck.containerCommand,
          healthCheckIntervalSeconds: interval,
          healthCheckStartPeriodSeconds: Math.min(grace, 300),
          logGroupName,
          region: args.aws.region,
          logStreamPrefix: name,
          version: args.version,
          environment: database === undefined ? args.environment ?? {} : { ...args.environment, DATABASE_HOST: database.host, DATABASE_PORT: String(database.port), DATABASE_NAME: db!.name },
          secrets:
            database === undefined
              ? secrets
              : { ...secrets, DATABASE_USER: secretKeyValueFrom(database.secretArn, "username"), DATABASE_PASSWORD: secretKeyValueFrom(database.secretArn, "password") },
        }),
      ),
    );
    const taskDefinition = new aws.ecs.TaskDefinition(
      n("task"),
      {
        family: name,
        requiresCompatibilities: ["FARGATE"],
        networkMode: "awsvpc",
        cpu: String(args.cpu),
        memory: String(args.memory),
        // The image is built for linux/amd64.
        runtimePlatform: { operatingSystemFamily: "LINUX", cpuArchitecture: "X86_64" },
        executionRoleArn: args.executionRoleArn,
        taskRoleArn: args.taskRoleArn,
        volumes: WRITABLE_PATHS.map((p) => ({ name: volumeName(p) })),
        containerDefinitions: definitions,
      },
      parent,
    );

    const service = new aws.ecs.Service(
      n("service"),
      {
        cluster: cluster.arn,
        taskDefinition: taskDefinition.arn,
        launchType: "FARGATE",
        desiredCount: args.desiredCount,
        networkConfiguration: { subnets: [...args.privateSubnetIds], securityGroups: [args.serviceSecurityGroupId], assignPublicIp: false },
        loadBalancers: [{ targetGroupArn: targetGroup.arn, containerName, containerPort: args.port }],
        healthCheckGracePeriodSeconds: grace,
        deploymentCircuitBreaker: { enable: true, rollback: true },
        // New tasks start alongside the old ones; capacity never drops during a rollout.
        deploymentMinimumHealthyPercent: 100,
        deploymentMaximumPercent: 200,
        waitForSteadyState: true,
        propagateTags: "SERVICE",
        enableEcsManagedTags: true,
      },
      {
        parent: this,
        // ECS refuses a target group that no listener routes to yet.
        dependsOn: listeners,
        // Autoscaling changes the running count; applying `desiredCount` again on every deployment
        // would undo its scale-out in the middle of a load peak. The configured count is the first
        // deployment's; after that `autoscaling.min`/`max` bound it.
        ignoreChanges: ["desiredCount"],
      },
    );

    const scaling = new aws.appautoscaling.Target(
      n("scaling"),
      {
        serviceNamespace: "ecs",
        scalableDimension: "ecs:service:DesiredCount",
        resourceId: pulumi.interpolate`service/${cluster.name}/${service.name}`,
        minCapacity: args.autoscaling.min,
        maxCapacity: args.autoscaling.max,
      },
      parent,
    );
    new aws.appautoscaling.Policy(
      n("cpu-scaling"),
      {
        policyType: "TargetTrackingScaling",
        serviceNamespace: scaling.serviceNamespace,
        scalableDimension: scaling.scalableDimension,
        resourceId: scaling.resourceId,
        targetTrackingScalingPolicyConfiguration: {
          targetValue: args.autoscaling.cpuTarget,
          predefinedMetricSpecification: { predefinedMetricType: "ECSServiceAverageCPUUtilization" },
          // Out fast, in slowly: a brief dip should not shed capacity the next peak needs.
          scaleOutCooldown: 60,
          scaleInCooldown: 300,
        },
      },
      parent,
    );

    this.clusterName = cluster.name;
    this.serviceName = service.name;
    this.taskDefinitionArn = taskDefinition.arn;
    this.albDnsName = alb.dnsName;
    this.albArnSuffix = alb.arnSuffix;
    this.targetGroupArn = targetGroup.arn;
    this.targetGroupArnSuffix = targetGroup.arnSuffix;
    // A certificate covers the environment's name, never the load balancer's: HTTPS only on the domain.
    this.url = domain !== undefined ? pulumi.output(`https://${domain.name}`) : pulumi.interpolate`http://${alb.dnsName}`;
    this.registerOutputs({
      clusterName: this.clusterName,
      serviceName: this.serviceName,
      taskDefinitionArn: this.taskDefinitionArn,
      albDnsName: this.albDnsName,
      albArnSuffix: this.albArnSuffix,
      targetGroupArn: this.targetGroupArn,
      targetGroupArnSuffix: this.targetGroupArnSuffix,
      url: this.url,
    });
  }
}
