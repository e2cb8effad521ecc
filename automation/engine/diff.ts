/**
 * Property diffs for the offline engine: which properties of a resource differ between two snapshots,
 * as the dotted paths the port reports (`containerDefinitions`, `tags.Owner`), and whether a change
 * replaces the resource. Pure functions over JSON values; tests call them directly.
 */
import { isDeepStrictEqual } from "util";
import { SECRET_MASK, type PropertyDrift, type StepOp } from "./port";

type Props = Record<string, unknown>;

/**
 * Input properties whose change makes AWS create a new resource (the provider's ForceNew), for the
 * types the program creates. `"*"` means every input except tags: task definitions are immutable,
 * each change registers a new revision, but their tags are updated in place.
 */
export const REPLACE_ON_CHANGES: Readonly<Record<string, readonly string[]>> = {
  "aws:ec2/vpc:Vpc": ["cidrBlock", "instanceTenancy"],
  "aws:ec2/subnet:Subnet": ["cidrBlock", "availabilityZone", "availabilityZoneId", "vpcId"],
  "aws:ec2/securityGroup:SecurityGroup": ["name", "namePrefix", "vpcId", "description"],
  "aws:ec2/natGateway:NatGateway": ["subnetId", "allocationId", "connectivityType"],
  "aws:ec2/eip:Eip": ["domain"],
  "aws:ec2/routeTable:RouteTable": ["vpcId"],
  "aws:ec2/flowLog:FlowLog": ["vpcId", "logDestination", "logDestinationType", "trafficType", "iamRoleArn"],
  "aws:rds/instance:Instance": ["engine", "identifier", "identifierPrefix", "dbName", "username", "storageEncrypted", "kmsKeyId", "availabilityZone", "characterSetName", "timezone"],
  "aws:rds/subnetGroup:SubnetGroup": ["name", "namePrefix"],
  "aws:ecs/taskDefinition:TaskDefinition": ["*"],
  "aws:ecs/cluster:Cluster": ["name"],
  "aws:ecs/service:Service": ["name", "cluster", "launchType", "schedulingStrategy"],
  "aws:s3/bucket:Bucket": ["bucket", "bucketPrefix", "objectLockEnabled"],
  "aws:s3/bucketV2:BucketV2": ["bucket", "bucketPrefix", "objectLockEnabled"],
  "aws:lb/loadBalancer:LoadBalancer": ["name", "namePrefix", "internal", "loadBalancerType"],
  "aws:lb/targetGroup:TargetGroup": ["name", "namePrefix", "port", "protocol", "protocolVersion", "vpcId", "targetType"],
  "aws:lb/listener:Listener": ["loadBalancerArn"],
  "aws:ecr/repository:Repository": ["name"],
  "aws:iam/role:Role": ["name", "namePrefix", "path"],
  "aws:iam/policy:Policy": ["name", "namePrefix", "path", "description"],
  "aws:iam/rolePolicyAttachment:RolePolicyAttachment": ["role", "policyArn"],
  "aws:cloudwatch/logGroup:LogGroup": ["name", "namePrefix"],
  "aws:sns/topic:Topic": ["name", "namePrefix", "fifoTopic"],
  "aws:appautoscaling/target:Target": ["resourceId", "scalableDimension", "serviceNamespace"],
  "aws:appautoscaling/policy:Policy": ["name", "resourceId", "scalableDimension", "serviceNamespace"],
  "docker:index/image:Image": ["imageName", "build"],
};

/** Top-level properties that never force a replacement, even under `"*"`. */
const UPDATABLE_EVERYWHERE = new Set(["tags", "tagsAll"]);

function isPlainObject(v: unknown): v is Props {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** The top-level key of a dotted path (`tags.Owner` → `tags`). */
export function topLevel(path: string): string {
  const dot = path.indexOf(".");
  return dot < 0 ? path : path.slice(0, dot);
}

/**
 * The properties that differ between `before` and `after`: a top-level key, or `key.sub` when both
 * sides hold objects (deeper differences are reported at that second level, with the whole value).
 * `keys` limits the comparison (default: every key on either side). Sorted by path.
 */
export function diffProperties(before: Props, after: Props, keys?: Iterable<string>): PropertyDrift[] {
  const out: PropertyDrift[] = [];
  const all = keys ? new Set(keys) : new Set([...Object.keys(before), ...Object.keys(after)]);
  for (const key of [...all].sort()) {
    const inBefore = Object.prototype.hasOwnProperty.call(before, key) && before[key] !== undefined;
    const inAfter = Object.prototype.hasOwnProperty.call(after, key) && after[key] !== undefined;
    if (!inBefore && !inAfter) continue;
    const b = before[key];
    const a = after[key];
    if (!inBefore) out.push(change(key, "add", undefined, a));
    else if (!inAfter) out.push(change(key, "delete", b, undefined));
    else if (isPlainObject(b) && isPlainObject(a)) {
      for (const sub of [...new Set([...Object.keys(b), ...Object.keys(a)])].sort()) {
        const hasB = b[sub] !== undefined;
        const hasA = a[sub] !== undefined;
        if (hasB && hasA && isDeepStrictEqual(b[sub], a[sub])) continue;
        if (!hasB && !hasA) continue;
        out.push(change(`${key}.${sub}`, !hasB ? "add" : !hasA ? "delete" : "update", b[sub], a[sub]));
      }
    } else if (!isDeepStrictEqual(b, a)) out.push(change(key, "update", b, a));
  }
  return out;
}

/** A value is shown only when neither side is a masked secret (a mask next to a clear value would hint at it). */
function change(path: string, kind: PropertyDrift["kind"], state: unknown, live: unknown): PropertyDrift {
  if (state === SECRET_MASK || live === SECRET_MASK) return { path, kind };
  return {
    path,
    kind,
    ...(state === undefined ? {} : { state }),
    ...(live === undefined ? {} : { live }),
  };
}

/** Whether changing these paths of a resource of `type` replaces it. */
export function requiresReplace(type: string, changedPaths: readonly string[]): boolean {
  const triggers = REPLACE_ON_CHANGES[type];
  if (!triggers || changedPaths.length === 0) return false;
  const any = triggers.includes("*");
  return changedPaths.some((p) => {
    const key = topLevel(p);
    return any ? !UPDATABLE_EVERYWHERE.has(key) : triggers.includes(key);
  });
}

export interface SnapshotResource {
  readonly type: string;
  readonly inputs: Props;
  readonly outputs: Props;
}

export interface PlannedStep {
  readonly op: Extract<StepOp, "create" | "update" | "replace" | "same">;
  readonly changedProperties: string[];
}

/**
 * What bringing `old` (the engine's state) to the desired `inputs` does. Like the AWS provider's diff,
 * the new inputs are compared with the last known live values (the state's outputs, which echo the
 * inputs) so drift that a refresh brought into state gets corrected; a property the outputs lack is
 * compared with the old inputs. Computed outputs (arn, id…) that are not inputs are ignored.
 */
export function planStep(type: string, old: SnapshotResource | undefined, inputs: Props): PlannedStep {
  if (!old) return { op: "create", changedProperties: [] };
  const keys = new Set([...Object.keys(inputs), ...Object.keys(old.inputs)]);
  const last: Props = {};
  for (const key of keys) {
    last[key] = Object.prototype.hasOwnProperty.call(old.outputs, key) ? old.outputs[key] : old.inputs[key];
  }
  const paths = diffProperties(last, inputs, keys).map((d) => d.path);
  if (paths.length === 0) return { op: "same", changedProperties: [] };
  return { op: requiresReplace(type, paths) ? "replace" : "update", changedProperties: paths };
}

/**
 * How one resource differs between state and the live world: outputs (what a refresh reads) and
 * inputs are both compared; a path that differs in both is reported once, with the outputs' values.
 */
export function driftProperties(state: SnapshotResource, live: SnapshotResource): PropertyDrift[] {
  const byPath = new Map<string, PropertyDrift>();
  for (const d of diffProperties(state.outputs, live.outputs)) byPath.set(d.path, d);
  for (const d of diffProperties(state.inputs, live.inputs)) if (!byPath.has(d.path)) byPath.set(d.path, d);
  if (state.type !== live.type) byPath.set("type", { path: "type", kind: "update", state: state.type, live: live.type });
  return [...byPath.values()].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}
