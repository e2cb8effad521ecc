/**
 * Data rules: finite log retention, encryption at rest, private and pinned databases.
 */
import { LOG_RETENTION_DAYS } from "../config";
import { TYPES, isRecord, isPositiveNumber, quote, type ResourceCheck } from "./rule";

// ---------------------------------------------------------------------------------------------
// log-retention

/** What CloudWatch Logs accepts (PutRetentionPolicy); anything else fails at `up`. */
const RETENTION_VALUES: ReadonlySet<number> = new Set(LOG_RETENTION_DAYS);

export const logRetention: ResourceCheck = (r) => {
  const days = r.inputs.retentionInDays;
  if (!isPositiveNumber(days)) return [`${r.name} has retentionInDays ${quote(days)}, so logs are kept forever; set retentionInDays to a positive number of days (e.g. 30)`];
  if (!RETENTION_VALUES.has(days as number)) return [`${r.name} has retentionInDays ${quote(days)}, which CloudWatch Logs refuses; use one of ${LOG_RETENTION_DAYS.join(", ")}`];
  return [];
};

// ---------------------------------------------------------------------------------------------
// encryption-at-rest

const BUCKET_ENCRYPTION_TYPES = new Set<string>([TYPES.bucketEncryption, TYPES.bucketEncryptionV2]);

export const encryptionAtRest: ResourceCheck = (r, _context, all) => {
  if (r.type === TYPES.rdsInstance) {
    return r.inputs.storageEncrypted === true ? [] : [`${r.name} does not encrypt its storage; set storageEncrypted: true (it cannot be turned on after creation without a snapshot restore)`];
  }
  // A bucket is identified by its id (what `bucket: bucket.id` resolves to) or its explicit name.
  const names = new Set([r.id, r.inputs.bucket].filter((v): v is string => typeof v === "string" && v !== ""));
  const encrypted = all.some((e) => BUCKET_ENCRYPTION_TYPES.has(e.type) && typeof e.inputs.bucket === "string" && names.has(e.inputs.bucket));
  // The deprecated inline block still encrypts the bucket.
  if (encrypted || isRecord(r.inputs.serverSideEncryptionConfiguration)) return [];
  return [`${r.name} has no server-side encryption configuration; add an aws.s3.BucketServerSideEncryptionConfiguration with bucket: <bucket>.id`];
};

// ---------------------------------------------------------------------------------------------
// rds-not-public

export const rdsNotPublic: ResourceCheck = (r) =>
  r.inputs.publiclyAccessible === true ? [`${r.name} is publicly accessible; set publiclyAccessible: false and reach it from the service's security group`] : [];


// ---------------------------------------------------------------------------------------------
// rds-pinned-version

export const rdsPinnedVersion: ResourceCheck = (r) => {
  const out: string[] = [];
  if (typeof r.inputs.engineVersion !== "string" || r.inputs.engineVersion.trim() === "") {
    out.push(`${r.name} has no engineVersion, so RDS creates it on whatever major is current that day; pin database.engineVersion (e.g. "16")`);
  }
  const max = r.inputs.maxAllocatedStorage;
  if (!(typeof max === "number" && typeof r.inputs.allocatedStorage === "number" && max > r.inputs.allocatedStorage)) {
    out.push(`${r.name} has maxAllocatedStorage ${quote(max)}; set it above allocatedStorage so RDS grows the volume before it fills`);
  }
  return out;
};
