/**
 * The rules that hold in production only.
 */
import { TYPES, strings, quote, list, type PolicyContext, type ResourceCheck } from "./rule";

// ---------------------------------------------------------------------------------------------
// production only

export const production = (context: PolicyContext): boolean => context.production;

export const prodMinTasks: ResourceCheck = (r) => {
  const n = r.inputs.desiredCount;
  return typeof n === "number" && n >= 2 ? [] : [`${r.name} has desiredCount ${quote(n)}; production services run at least 2 tasks so one can fail or be replaced without an outage`];
};

export const prodMultiAzDatabase: ResourceCheck = (r) =>
  r.inputs.multiAz === true ? [] : [`${r.name} is a single-AZ database; set multiAz: true in production (database.multiAz in the environment file)`];

export const prodDeletionProtection: ResourceCheck = (r) => {
  if (r.type === TYPES.rdsInstance) {
    return r.inputs.deletionProtection === true ? [] : [`${r.name} has no deletion protection; set deletionProtection: true in production`];
  }
  return r.inputs.enableDeletionProtection === true ? [] : [`${r.name} has no deletion protection; set enableDeletionProtection: true in production`];
};

/**
 * A production alarm must reach someone: one of its actions is a topic of this stack with a
 * subscription, or a topic from outside the stack (whose subscribers are managed there).
 */
export const prodAlarmsNotify: ResourceCheck = (r, _context, all) => {
  const ownTopics = new Map(all.filter((t) => t.type === TYPES.snsTopic).map((t) => [t.id ?? "", t] as const));
  const subscribed = new Set(all.filter((x) => x.type === TYPES.snsSubscription).map((x) => x.inputs.topic));
  const actions = strings(r.inputs.alarmActions);
  const reaches = actions.some((a) => (ownTopics.has(a) ? subscribed.has(a) : /^arn:aws[a-z-]*:sns:/.test(a)));
  return reaches
    ? []
    : [`${r.name} notifies no one: ${actions.length === 0 ? "it has no alarmActions" : `no subscription on ${list(actions)}`}; give alarms.notify ({ email }, { https } or { topicArn }) in production`];
};

/**
 * `forceDestroy: false` / `forceDelete: false` do not keep a bucket or repository: they make
 * destroy fail (BucketNotEmpty, RepositoryNotEmpty) halfway through. Production keeps them with
 * `retainOnDelete`.
 */
export const prodDestroyKeepsData: ResourceCheck = (r) => {
  if (r.retainOnDelete === true) return [];
  const [flag, error] = r.type === TYPES.bucket ? ["forceDestroy", "BucketNotEmpty"] : ["forceDelete", "RepositoryNotEmpty"];
  return [`${r.name} is not retained on delete; with ${flag} ${quote(r.inputs[flag])} a destroy would ${r.inputs[flag] === true ? "delete its contents" : `fail with ${error}`}. Production keeps it with the retainOnDelete resource option`];
};
