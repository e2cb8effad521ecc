/**
 * Storage: the bucket the load balancer writes its access logs to and, when the environment has
 * one, the RDS database, whose RDS-managed credentials secret the task's execution role may read. Both hold data, so both follow `deletionProtection`: protected, a destroy
 * keeps the bucket's objects and takes a final database snapshot.
 */
import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import * as random from "@pulumi/random";
import { ComponentArgumentError, checkName, childName, type AwsTarget } from "./naming";
import type { DatabaseEngine, PolicyDocument, PolicyStatement } from "./security";

export const STORAGE_TYPE = "deployer:infra:Storage";

export interface DatabaseArgs {
  readonly engine: DatabaseEngine;
  /** The engine version, pinned: "16" (a major; minor upgrades still apply) or "16.4". Required. */
  readonly engineVersion: string;
  /** e.g. `db.t4g.medium`. */
  readonly instanceClass: string;
  /** Private subnets in at least two zones: RDS requires a subnet group spanning two. */
  readonly subnetIds: readonly pulumi.Input<string>[];
  /** The database security group (open to the service only). */
  readonly securityGroupId: pulumi.Input<string>;
  /** A standby in a second zone. Default false. */
  readonly multiAz?: boolean;
  /** Default 20. */
  readonly allocatedStorageGb?: number;
  /** Storage autoscaling ceiling. Default five times allocatedStorageGb, at most 65536. */
  readonly maxAllocatedStorageGb?: number;
  /** Days of automated backups. Default 7. */
  readonly backupRetentionDays?: number;
  /** The database created inside the instance. Default `app`. */
  readonly databaseName?: string;
  /** The master user; its password is generated and kept in Secrets Manager by RDS. Default `dbadmin`. */
  readonly username?: string;
  /** Default false. Not every small instance class supports it. */
  readonly performanceInsights?: boolean;
  /** A customer KMS key for the RDS-managed credentials secret. Default: Secrets Manager's `aws/secretsmanager` key. */
  readonly secretKmsKeyArn?: string;
  /**
   * The role that starts the tasks (the ECS execution role's name): it may read the managed
   * credentials secret, exactly that secret (and decrypt it with `secretKmsKeyArn` when given).
   */
  readonly secretReaderRole?: pulumi.Input<string>;
}

/** What the service needs to reach the database: plain settings and the credentials secret. */
export interface DatabaseConnection {
  readonly host: pulumi.Output<string>;
  readonly port: pulumi.Output<number>;
  readonly name: string;
  /**
   * The RDS-managed secret (JSON keys `username` and `password`; RDS rotates it every 7 days). It
   * resolves only once the reader role's grant is in place, so nothing starts a task before it can
   * read the secret.
   */
  readonly secretArn: pulumi.Output<string>;
}

/** The read grant on the database's credentials secret. */
export function databaseSecretPolicy(secretArn: string, kmsKeyArn?: string, region?: string): PolicyDocument {
  const statements: PolicyStatement[] = [{ Sid: "ReadDatabaseSecret", Effect: "Allow", Action: "secretsmanager:GetSecretValue", Resource: secretArn }];
  if (kmsKeyArn !== undefined) {
    statements.push({
      Sid: "DecryptDatabaseSecret",
      Effect: "Allow",
      Action: "kms:Decrypt",
      Resource: kmsKeyArn,
      Condition: { StringEquals: { "kms:ViaService": `secretsmanager.${region}.amazonaws.com` } },
    });
  }
  return { Version: "2012-10-17", Statement: statements };
}

export interface StorageArgs {
  /** Account and region: the ELB log-delivery path names the account. */
  readonly aws: AwsTarget;
  /** Key prefix the load balancer writes under. Default `alb`. */
  readonly accessLogPrefix?: string;
  /** Days access logs are kept. Default 90. */
  readonly accessLogExpirationDays?: number;
  /** Protect data on destroy: keep the bucket's objects, deletion-protect the database, take a final snapshot. Default false. */
  readonly deletionProtection?: boolean;
  /** Create a database. Default: none. */
  readonly database?: DatabaseArgs;
}

/** Days a replaced or deleted log object version is kept before it expires. */
const NONCURRENT_VERSION_DAYS = 7;

export interface AccessLogPolicyScope {
  readonly bucketArn: string;
  readonly prefix: string;
  readonly accountId: string;
  /** The region's ELB account (`aws.elb.getServiceAccount`), for regions older than August 2022. */
  readonly elbAccountArn: string;
}

/**
 * ALB log delivery writes as the region's ELB account in older regions and as the log-delivery
 * service principal in newer ones; both may put objects under `<prefix>/AWSLogs/<account>/` only.
 * Everyone is refused plain HTTP.
 */
export function accessLogBucketPolicy(scope: AccessLogPolicyScope): PolicyDocument {
  const logs = `${scope.bucketArn}/${scope.prefix}/AWSLogs/${scope.accountId}/*`;
  const statements: PolicyStatement[] = [
    { Sid: "ElbAccountWritesLogs", Effect: "Allow", Principal: { AWS: scope.elbAccountArn }, Action: "s3:PutObject", Resource: logs },
    { Sid: "ElbLogDeliveryWritesLogs", Effect: "Allow", Principal: { Service: "logdelivery.elasticloadbalancing.amazonaws.com" }, Action: "s3:PutObject", Resource: logs },
    {
      Sid: "DenyInsecureTransport",
      Effect: "Deny",
      Principal: "*",
      Action: "s3:*",
      Resource: [scope.bucketArn, `${scope.bucketArn}/*`],
      Condition: { Bool: { "aws:SecureTransport": "false" } },
    },
  ];
  return { Version: "2012-10-17", Statement: statements };
}

export function validateStorageArgs(name: string, args: StorageArgs): void {
  checkName(STORAGE_TYPE, name);
  const fail = (arg: string, reason: string) => new ComponentArgumentError(STORAGE_TYPE, name, arg, reason);
  const days = args.accessLogExpirationDays;
  if (days !== undefined && (!Number.isInteger(days) || days < 1)) throw fail("accessLogExpirationDays", "must be a whole number of at least 1");
  if (args.accessLogPrefix !== undefined && !/^[A-Za-z0-9][A-Za-z0-9_-]*$/.test(args.accessLogPrefix)) throw fail("accessLogPrefix", "must be letters, digits, `_` and `-`, without slashes");
  const db = args.database;
  if (db === undefined) return;
  if (!["postgres", "mysql"].includes(db.engine)) throw fail("database.engine", `is "${db.engine}"; give postgres or mysql`);
  if (!/^db\.[a-z0-9]+\.[a-z0-9]+$/.test(db.instanceClass)) throw fail("database.instanceClass", `"${db.instanceClass}" is not an RDS instance class like db.t4g.medium`);
  if (db.subnetIds.length < 2) throw fail("database.subnetIds", "must name subnets in at least two zones (an RDS subnet group requirement)");
  const storage = db.allocatedStorageGb;
  if (storage !== undefined && (!Number.isInteger(storage) || storage < 20)) throw fail("database.allocatedStorageGb", "must be a whole number of at least 20");
  if (typeof db.engineVersion !== "string" || !/^\d+(\.\d+){0,2}$/.test(db.engineVersion)) throw fail("database.engineVersion", "must pin a version like \"16\" or \"8.0\": without it RDS picks whatever major is current when the database is created");
  const ceiling = db.maxAllocatedStorageGb;
  if (ceiling !== undefined && (!Number.isInteger(ceiling) || ceiling <= (storage ?? 20) || ceiling > 65536)) throw fail("database.maxAllocatedStorageGb", "must be a whole number above allocatedStorageGb and at most 65536");
  const backups = db.backupRetentionDays;
  if (backups !== undefined && (!Number.isInteger(backups) || backups < 1 || backups > 35)) throw fail("database.backupRetentionDays", "must be 1 to 35: 0 would turn automated backups off");
  if (db.databaseName !== undefined && !/^[A-Za-z][A-Za-z0-9_]{0,62}$/.test(db.databaseName)) throw fail("database.databaseName", "must start with a letter and hold only letters, digits and underscores");
  if (db.username !== undefined && !/^[A-Za-z][A-Za-z0-9_]{0,15}$/.test(db.username)) throw fail("database.username", "must start with a letter, at most 16 letters, digits and underscores");
  if (db.secretKmsKeyArn !== undefined && !/^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key\/[0-9a-f-]{36}$/.test(db.secretKmsKeyArn)) throw fail("database.secretKmsKeyArn", "must be a KMS key ARN, arn:aws:kms:<region>:<account>:key/<key id>");
}

export class Storage extends pulumi.ComponentResource {
  /**
   * The access-log bucket's name. It resolves only once the bucket policy is in place: a load
   * balancer checks it may write there when access logs are turned on, and fails otherwise.
   */
  public readonly logBucketName: pulumi.Output<string>;
  public readonly logBucketArn: pulumi.Output<string>;
  /** The prefix the load balancer must write under (the bucket policy allows nothing else). */
  public readonly accessLogPrefix: string;
  /** `host:port`, when there is a database. */
  public readonly databaseEndpoint?: pulumi.Output<string>;
  /** The Secrets Manager secret RDS keeps the master credentials in, when there is a database. */
  public readonly databaseSecretArn?: pulumi.Output<string>;
  /** Host, port, database name and credentials secret, when there is a database. */
  public readonly databaseConnection?: DatabaseConnection;

  constructor(name: string, args: StorageArgs, opts?: pulumi.ComponentResourceOptions) {
    validateStorageArgs(name, args);
    super(STORAGE_TYPE, name, {}, opts);
    const parent = { parent: this };
    const n = (role: string) => childName(name, role);
    const protect = args.deletionProtection ?? false;
    const prefix = args.accessLogPrefix ?? "alb";

    // Destroy, protected: the bucket and its logs stay (removed from the stack, kept in S3), since
    // `forceDestroy: false` alone would only make destroy fail with BucketNotEmpty. Unprotected:
    // destroy empties and deletes it.
    const bucket = new aws.s3.Bucket(n("logs"), { forceDestroy: !protect }, { parent: this, retainOnDelete: protect });
    // ALB log delivery supports SSE-S3 only; a KMS key here would make it drop the logs.
    const encryption = new aws.s3.BucketServerSideEncryptionConfiguration(n("logs"), { bucket: bucket.id, rules: [{ applyServerSideEncryptionByDefault: { sseAlgorithm: "AES256" } }] }, parent);
    const publicAccess = new aws.s3.BucketPublicAccessBlock(n("logs"), { bucket: bucket.id, blockPublicAcls: true, blockPublicPolicy: true, ignorePublicAcls: true, restrictPublicBuckets: true }, parent);
    new aws.s3.BucketVersioning(n("logs"), { bucket: bucket.id, versioningConfiguration: { status: "Enabled" } }, parent);
    new aws.s3.BucketLifecycleConfiguration(
      n("logs"),
      {
        bucket: bucket.id,
        rules: [
          {
            id: "expire-access-logs",
            status: "Enabled",
            filter: {},
            expiration: { days: args.accessLogExpirationDays ?? 90 },
            noncurrentVersionExpiration: { noncurrentDays: NONCURRENT_VERSION_DAYS },
            abortIncompleteMultipartUpload: { daysAfterInitiation: 1 },
          },
        ],
      },
      parent,
    );
    const elbAccount = aws.elb.getServiceAccountOutput({ region: args.aws.region }, parent);
    const policy = new aws.s3.BucketPolicy(
      n("logs"),
      {
        bucket: bucket.id,
        policy: pulumi.all([bucket.arn, elbAccount.arn]).apply(([bucketArn, elbAccountArn]) => JSON.stringify(accessLogBucketPolicy({ bucketArn, prefix, accountId: args.aws.accountId, elbAccountArn }))),
      },
      // S3 answers OperationAborted when a bucket's policy and public-access block change at once.
      { parent: this, dependsOn: [publicAccess] },
    );

    this.logBucketName = pulumi.all([bucket.bucket, policy.id, encryption.id]).apply(([bucketName]) => bucketName);
    this.logBucketArn = bucket.arn;
    this.accessLogPrefix = prefix;

    const db = args.database;
    if (db !== undefined) {
      const dbName = db.databaseName ?? "app";
      const username = db.username ?? "dbadmin";
      // RDS refuses a final snapshot whose name exists (DBSnapshotAlreadyExists), so a fixed name
      // fails the second protected deletion. The suffix is random per database: a new one whenever
      // the stack is recreated, and, through the keepers (the inputs whose change replaces the
      // instance), whenever the instance is replaced. The old instance keeps the name it was given.
      const snapshotSuffix = protect
        ? new random.RandomId(n("db-final"), { byteLength: 4, keepers: { engine: db.engine, dbName, username, storageEncrypted: "true", kmsKeyId: "aws/rds" } }, parent)
        : undefined;
      const subnetGroup = new aws.rds.SubnetGroup(n("db"), { subnetIds: [...db.subnetIds], description: `${name} database in private subnets` }, parent);
      const instance = new aws.rds.Instance(
        n("db"),
        {
          engine: db.engine,
          engineVersion: db.engineVersion,
          instanceClass: db.instanceClass,
          allocatedStorage: db.allocatedStorageGb ?? 20,
          // Storage autoscaling: RDS grows the volume as it fills, up to this ceiling.
          maxAllocatedStorage: db.maxAllocatedStorageGb ?? Math.min((db.allocatedStorageGb ?? 20) * 5, 65536),
          storageType: "gp3",
          storageEncrypted: true,
          dbSubnetGroupName: subnetGroup.name,
          vpcSecurityGroupIds: [db.securityGroupId],
          publiclyAccessible: false,
          multiAz: db.multiAz ?? false,
          dbName,
          username,
          // RDS generates the password and keeps it in Secrets Manager: it never passes through
          // config, state or this program.
          manageMasterUserPassword: true,
          masterUserSecretKmsKeyId: db.secretKmsKeyArn,
          backupRetentionPeriod: db.backupRetentionDays ?? 7,
          copyTagsToSnapshot: true,
          autoMinorVersionUpgrade: true,
          deletionProtection: protect,
          skipFinalSnapshot: !protect,
          finalSnapshotIdentifier: snapshotSuffix === undefined ? undefined : pulumi.interpolate`${n("db-final")}-${snapshotSuffix.hex}`,
          performanceInsightsEnabled: db.performanceInsights ?? false,
        },
        parent,
      );
      this.databaseEndpoint = instance.endpoint;
      const secretArn = instance.masterUserSecrets.apply((secrets) => {
        const arn = secrets?.[0]?.secretArn;
        if (arn === undefined) throw new Error(`${name}: RDS reported no managed master user secret for the database`);
        return arn;
      });
      let readable = secretArn;
      if (db.secretReaderRole !== undefined) {
        const grant = new aws.iam.RolePolicy(
          n("db-secret-read"),
          { role: db.secretReaderRole, policy: secretArn.apply((arn) => JSON.stringify(databaseSecretPolicy(arn, db.secretKmsKeyArn, args.aws.region))) },
          parent,
        );
        readable = pulumi.all([secretArn, grant.id]).apply(([arn]) => arn);
      }
      this.databaseSecretArn = readable;
      this.databaseConnection = { host: instance.address, port: instance.port, name: db.databaseName ?? "app", secretArn: readable };
    }

    this.registerOutputs({ logBucketName: this.logBucketName, logBucketArn: this.logBucketArn, databaseEndpoint: this.databaseEndpoint, databaseSecretArn: this.databaseSecretArn });
  }
}
