/**
 * The whole deployment, top to bottom: each component takes typed args from the settings and the
 * outputs of the ones before it. Storage comes after Security because the database needs the
 * database security group; Alarms come last because they watch the service.
 */
import * as pulumi from "@pulumi/pulumi";
import { PROJECT, type ProgramConfig } from "./config";
import { baseName } from "./naming";
import { Network } from "./network";
import { Alarms, Observability } from "./observability";
import { zonesFor } from "./regions";
import { Registry } from "./registry";
import { Security } from "./security";
import { Service, WRITABLE_PATHS } from "./service";
import { Storage } from "./storage";
import { applyDefaultTags, requiredTags } from "./tags";

/**
 * The stack's outputs, as recorded for each deployment. A type alias rather than an interface, so
 * it is assignable to `Record<string, unknown>` (what the engine takes as a program's result).
 */
export type StackOutputs = {
  readonly vpcId: pulumi.Output<string>;
  /** `https://<app.domain>` with a domain, else `http://<load balancer name>`. */
  readonly url: pulumi.Output<string>;
  readonly albDnsName: pulumi.Output<string>;
  readonly clusterName: pulumi.Output<string>;
  readonly serviceName: pulumi.Output<string>;
  readonly taskDefinitionArn: pulumi.Output<string>;
  /** For target-health checks after a deployment. */
  readonly targetGroupArn: pulumi.Output<string>;
  /** The ECR repository for a build, else the prebuilt image's repository. */
  readonly repositoryUrl: pulumi.Output<string>;
  /** Exactly what the service runs: `repo@sha256:…` for a build or a pinned digest, else `image:version`. */
  readonly imageRef: pulumi.Output<string>;
  readonly logGroupName: pulumi.Output<string>;
  readonly alarmTopicArn: pulumi.Output<string>;
  /** `host:port`; only when the environment has a database. */
  readonly databaseEndpoint?: pulumi.Output<string>;
  /** The RDS-managed credentials secret (keys `username`, `password`); only with a database. */
  readonly databaseSecretArn?: pulumi.Output<string>;
};

export function createStack(config: ProgramConfig): StackOutputs {
  const { settings, version, imageDigest } = config;
  const { app } = settings;
  applyDefaultTags(requiredTags(settings.environment, PROJECT, settings.tags));
  const name = baseName(app.name, settings.environment);

  const network = new Network(name, {
    cidr: settings.network.cidr,
    availabilityZones: zonesFor(settings.aws.region, settings.network.availabilityZones),
    natGateways: settings.network.natGateways,
    flowLogRetentionDays: settings.network.flowLogRetentionDays,
    aws: settings.aws,
  });

  const notify = settings.alarms.notify;
  const observability = new Observability(name, {
    logRetentionDays: app.logRetentionDays,
    aws: settings.aws,
    subscriptions: notify.flatMap((t): ({ email: string } | { https: string })[] => ("email" in t ? [{ email: t.email }] : "https" in t ? [{ https: t.https }] : [])),
  });

  const registry = new Registry(name, {
    build: app.build,
    image: app.image,
    version,
    imageDigest,
    keepImages: app.keepImages,
    deletionProtection: settings.deletionProtection,
    writablePaths: WRITABLE_PATHS,
  });

  const security = new Security(name, {
    vpcId: network.vpcId,
    appPort: app.port,
    databaseEngine: settings.database?.engine,
    repositoryArn: registry.repositoryArn,
    logGroupArn: observability.logGroupArn,
    secrets: app.secrets,
    aws: settings.aws,
  });

  const database = settings.database;
  const storage = new Storage(name, {
    aws: settings.aws,
    deletionProtection: settings.deletionProtection,
    database:
      database === undefined || security.databaseSecurityGroupId === undefined
        ? undefined
        : {
            engine: database.engine,
            engineVersion: database.engineVersion,
            maxAllocatedStorageGb: database.maxAllocatedStorageGb,
            instanceClass: database.instanceClass,
            multiAz: database.multiAz,
            allocatedStorageGb: database.allocatedStorageGb,
            backupRetentionDays: database.backupRetentionDays,
            subnetIds: network.privateSubnetIds,
            securityGroupId: security.databaseSecurityGroupId,
            databaseName: app.name.replace(/-/g, "_"),
            secretKmsKeyArn: database.secretKmsKeyArn,
            // ECS reads the credentials with the execution role when it starts a task.
            secretReaderRole: security.executionRoleName,
          },
  });

  const service = new Service(name, {
    vpcId: network.vpcId,
    publicSubnetIds: network.publicSubnetIds,
    privateSubnetIds: network.privateSubnetIds,
    loadBalancerSecurityGroupId: security.loadBalancerSecurityGroupId,
    serviceSecurityGroupId: security.serviceSecurityGroupId,
    executionRoleArn: security.executionRoleArn,
    taskRoleArn: security.taskRoleArn,
    image: registry.imageRef,
    version,
    aws: settings.aws,
    logGroupName: observability.logGroupName,
    containerName: app.name,
    port: app.port,
    cpu: app.cpu,
    memory: app.memory,
    desiredCount: app.desiredCount,
    autoscaling: app.autoscaling,
    healthCheck: app.healthCheck,
    environment: app.environment,
    secrets: app.secrets,
    database: storage.databaseConnection,
    domain: app.domain,
    certificateArn: app.certificateArn,
    production: settings.production,
    deletionProtection: settings.deletionProtection,
    accessLogs: { bucket: storage.logBucketName, prefix: storage.accessLogPrefix },
  });

  new Alarms(name, {
    topicArn: observability.alarmTopicArn,
    clusterName: service.clusterName,
    serviceName: service.serviceName,
    loadBalancerArnSuffix: service.albArnSuffix,
    targetGroupArnSuffix: service.targetGroupArnSuffix,
    cpuHighPercent: settings.alarms.cpuHighPercent,
    http5xxPerMinute: settings.alarms.http5xxPerMinute,
    extraTopicArns: notify.flatMap((t) => ("topicArn" in t ? [t.topicArn] : [])),
  });

  return {
    vpcId: network.vpcId,
    url: service.url,
    albDnsName: service.albDnsName,
    clusterName: service.clusterName,
    serviceName: service.serviceName,
    taskDefinitionArn: service.taskDefinitionArn,
    targetGroupArn: service.targetGroupArn,
    repositoryUrl: registry.repositoryUrl,
    imageRef: registry.imageRef,
    logGroupName: observability.logGroupName,
    alarmTopicArn: observability.alarmTopicArn,
    ...(storage.databaseEndpoint === undefined ? {} : { databaseEndpoint: storage.databaseEndpoint }),
    ...(storage.databaseSecretArn === undefined ? {} : { databaseSecretArn: storage.databaseSecretArn }),
  };
}
