import { expect } from "chai";
import type { Evaluation } from "../../automation/program/evaluate";
import { Storage, accessLogBucketPolicy, type StorageArgs } from "../../infra/storage";
import { ACCOUNT, REGION, evaluateDev, evaluateProd, evaluateSerially, input, named, ofType, output, programConfig, prodInput, statements, variant } from "./fixtures";

const BUCKET = "aws:s3/bucket:Bucket";
const DB = "aws:rds/instance:Instance";

describe("infra/storage", () => {
  let dev: Evaluation;
  let prod: Evaluation;

  before(async () => {
    dev = await evaluateDev();
    prod = await evaluateProd();
  });

  describe("access-log bucket", () => {
    it("without deletion protection, lets destroy empty and delete the bucket", () => {
      const bucket = named(dev, BUCKET, "web-dev-logs");
      expect(input(bucket, "forceDestroy")).to.equal(true);
      expect(bucket.retainOnDelete).to.equal(undefined);
    });

    it("with deletion protection, keeps the bucket and its logs on destroy (retainOnDelete), where forceDestroy: false alone would fail with BucketNotEmpty", () => {
      expect(named(prod, BUCKET, "web-prod-logs").retainOnDelete).to.equal(true);
    });

    it("encrypts with SSE-S3, the only encryption ALB log delivery supports", () => {
      const bucket = named(dev, BUCKET, "web-dev-logs");
      const sse = named(dev, "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration", "web-dev-logs");
      expect(input(sse, "bucket")).to.equal(bucket.id);
      expect(input(sse, "rules")).to.deep.equal([{ applyServerSideEncryptionByDefault: { sseAlgorithm: "AES256" } }]);
    });

    it("blocks every kind of public access", () => {
      const block = named(dev, "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", "web-dev-logs");
      expect(block.inputs).to.include({ bucket: named(dev, BUCKET, "web-dev-logs").id, blockPublicAcls: true, blockPublicPolicy: true, ignorePublicAcls: true, restrictPublicBuckets: true });
    });

    it("versions objects", () => {
      expect(input(named(dev, "aws:s3/bucketVersioning:BucketVersioning", "web-dev-logs"), "versioningConfiguration")).to.deep.equal({ status: "Enabled" });
    });

    it("expires logs, their old versions and abandoned uploads", () => {
      const [rule] = input<Record<string, unknown>[]>(named(dev, "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration", "web-dev-logs"), "rules");
      expect(rule).to.deep.include({ status: "Enabled", expiration: { days: 90 }, noncurrentVersionExpiration: { noncurrentDays: 7 }, abortIncompleteMultipartUpload: { daysAfterInitiation: 1 } });
    });

    it("lets the region's ELB account and the log-delivery service write under the prefix only", () => {
      const arn = output<string>(named(dev, BUCKET, "web-dev-logs"), "arn");
      const policy = statements(named(dev, "aws:s3/bucketPolicy:BucketPolicy", "web-dev-logs"), "policy");
      const writers = policy.filter((s) => s.Effect === "Allow");
      expect(writers.map((s) => s.Principal)).to.deep.equal([{ AWS: "arn:aws:iam::127311923021:root" }, { Service: "logdelivery.elasticloadbalancing.amazonaws.com" }]);
      for (const s of writers) expect(s).to.deep.include({ Action: "s3:PutObject", Resource: `${arn}/alb/AWSLogs/${ACCOUNT}/*` });
    });

    it("refuses every request made without TLS", () => {
      const arn = output<string>(named(dev, BUCKET, "web-dev-logs"), "arn");
      const deny = statements(named(dev, "aws:s3/bucketPolicy:BucketPolicy", "web-dev-logs"), "policy").find((s) => s.Effect === "Deny");
      expect(deny).to.deep.equal({ Sid: "DenyInsecureTransport", Effect: "Deny", Principal: "*", Action: "s3:*", Resource: [arn, `${arn}/*`], Condition: { Bool: { "aws:SecureTransport": "false" } } });
    });
  });

  describe("database", () => {
    it("creates none when the environment has none", () => {
      expect(ofType(dev, DB)).to.be.empty;
      expect(ofType(dev, "aws:rds/subnetGroup:SubnetGroup")).to.be.empty;
    });

    it("places the database in the private subnets behind the database group", () => {
      const group = named(prod, "aws:rds/subnetGroup:SubnetGroup", "web-prod-db");
      expect(input(group, "subnetIds")).to.deep.equal(["a", "b", "c"].map((z) => named(prod, "aws:ec2/subnet:Subnet", `web-prod-private-${z}`).id));
      const db = named(prod, DB, "web-prod-db");
      expect(input(db, "dbSubnetGroupName")).to.equal(output(group, "name")).and.to.be.a("string");
      expect(input(db, "vpcSecurityGroupIds")).to.deep.equal([named(prod, "aws:ec2/securityGroup:SecurityGroup", "web-prod-db-sg").id]);
    });

    it("is encrypted, private, multi-AZ and backed up", () => {
      expect(named(prod, DB, "web-prod-db").inputs).to.include({
        engine: "postgres",
        instanceClass: "db.t4g.medium",
        allocatedStorage: 20,
        storageEncrypted: true,
        publiclyAccessible: false,
        multiAz: true,
        backupRetentionPeriod: 14,
        copyTagsToSnapshot: true,
      });
    });

    it("pins the engine version and turns on storage autoscaling above the allocated size", () => {
      const db = named(prod, DB, "web-prod-db");
      expect(db.inputs).to.include({ engineVersion: "16", allocatedStorage: 20, maxAllocatedStorage: 100 });
    });

    it("lets RDS keep the master password in Secrets Manager, never in config or state", () => {
      const db = named(prod, DB, "web-prod-db");
      expect(db.inputs).to.include({ manageMasterUserPassword: true, username: "dbadmin" });
      expect(input(db, "password")).to.equal(undefined);
    });

    it("with deletion protection, refuses deletion and takes a final snapshot named uniquely for this database", () => {
      const db = named(prod, DB, "web-prod-db");
      expect(db.inputs).to.include({ deletionProtection: true, skipFinalSnapshot: false });
      const suffix = named(prod, "random:index/randomId:RandomId", "web-prod-db-final");
      expect(input(db, "finalSnapshotIdentifier")).to.equal(`web-prod-db-final-${output(suffix, "hex")}`).and.to.match(/^web-prod-db-final-[0-9a-f]{8}$/);
    });

    it("gives a replacement database a new final snapshot name, so the second protected deletion cannot collide", async () => {
      const suffix = named(prod, "random:index/randomId:RandomId", "web-prod-db-final");
      // An engine change replaces the instance; the keepers replace the suffix with it.
      expect(input<Record<string, string>>(suffix, "keepers")).to.include({ engine: "postgres", dbName: "web", username: "dbadmin" });
      const replaced = await evaluateSerially(programConfig(variant(prodInput, (s) => (s.database = { ...s.database!, engine: "mysql", engineVersion: "8.0" }))));
      expect(input(named(replaced, DB, "web-prod-db"), "finalSnapshotIdentifier")).to.not.equal(input(named(prod, DB, "web-prod-db"), "finalSnapshotIdentifier"));
    });

    it("lets the task execution role read exactly the database's managed secret, before any task definition names it", () => {
      const db = named(prod, DB, "web-prod-db");
      const secretArn = output<{ secretArn: string }[]>(db, "masterUserSecrets")[0].secretArn;
      const grant = named(prod, "aws:iam/rolePolicy:RolePolicy", "web-prod-db-secret-read");
      expect(input(grant, "role")).to.equal(output(named(prod, "aws:iam/role:Role", "web-prod-execution"), "name"));
      expect(statements(grant, "policy")).to.deep.equal([{ Sid: "ReadDatabaseSecret", Effect: "Allow", Action: "secretsmanager:GetSecretValue", Resource: secretArn }]);
    });

    it("adds kms:Decrypt on the customer key that encrypts the secret, through Secrets Manager only", async () => {
      const key = `arn:aws:kms:${REGION}:${ACCOUNT}:key/0b0e6f5d-2c1a-4a43-9d1e-4f6a1c2b3d4e`;
      const ev = await evaluateSerially(programConfig(variant(prodInput, (s) => (s.database = { ...s.database!, secretKmsKeyArn: key }))));
      expect(input(named(ev, DB, "web-prod-db"), "masterUserSecretKmsKeyId")).to.equal(key);
      const decrypt = statements(named(ev, "aws:iam/rolePolicy:RolePolicy", "web-prod-db-secret-read"), "policy").find((st) => st.Sid === "DecryptDatabaseSecret");
      expect(decrypt).to.deep.include({ Action: "kms:Decrypt", Resource: key, Condition: { StringEquals: { "kms:ViaService": `secretsmanager.${REGION}.amazonaws.com` } } });
    });

    it("publishes its endpoint as a stack output", () => {
      expect(prod.outputs.databaseEndpoint.value).to.equal(output(named(prod, DB, "web-prod-db"), "endpoint")).and.to.match(/\.rds\.amazonaws\.com:5432$/);
    });
  });

  describe("helpers", () => {
    it("scopes log writes to <prefix>/AWSLogs/<account>/", () => {
      const doc = accessLogBucketPolicy({ bucketArn: "arn:aws:s3:::b", prefix: "lb", accountId: ACCOUNT, elbAccountArn: "arn:aws:iam::1:root" });
      expect(doc.Statement[0].Resource).to.equal(`arn:aws:s3:::b/lb/AWSLogs/${ACCOUNT}/*`);
    });
  });

  describe("argument checks", () => {
    const args: StorageArgs = { aws: { region: REGION, accountId: ACCOUNT } };
    const database = { engine: "postgres" as const, engineVersion: "16", instanceClass: "db.t4g.micro", subnetIds: ["subnet-a", "subnet-b"], securityGroupId: "sg-db" };

    it("refuses a database in fewer than two subnets, naming database.subnetIds", () => {
      expect(() => new Storage("web-dev", { ...args, database: { ...database, subnetIds: ["subnet-a"] } })).to.throw(/`database.subnetIds`/);
    });

    it("refuses a database without a pinned engine version, naming database.engineVersion", () => {
      expect(() => new Storage("web-dev", { ...args, database: { ...database, engineVersion: undefined as never } })).to.throw(/`database.engineVersion` must pin a version/);
    });

    it("refuses a storage ceiling at or below the allocated size, naming database.maxAllocatedStorageGb", () => {
      expect(() => new Storage("web-dev", { ...args, database: { ...database, allocatedStorageGb: 50, maxAllocatedStorageGb: 50 } })).to.throw(/`database.maxAllocatedStorageGb`/);
    });

    it("refuses a backup retention of 0, which would turn backups off", () => {
      expect(() => new Storage("web-dev", { ...args, database: { ...database, backupRetentionDays: 0 } })).to.throw(/`database.backupRetentionDays`/);
    });
  });
});
