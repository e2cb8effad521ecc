/**
 * Image and container rules: scanned, immutable repositories; images pinned by tag or digest; tasks
 * with limits and health checks.
 */
import { TYPES, isRecord, asArray, strings, isPositiveNumber, quote, type PolicyResource, type ResourceCheck } from "./rule";

// ---------------------------------------------------------------------------------------------
// ecr-scan-and-immutable

export const ecrScanAndImmutable: ResourceCheck = (r) => {
  const out: string[] = [];
  const scanning = r.inputs.imageScanningConfiguration;
  if (!(isRecord(scanning) && scanning.scanOnPush === true)) {
    out.push(`${r.name} does not scan images on push; set imageScanningConfiguration: { scanOnPush: true } so findings can stop a deployment`);
  }
  if (r.inputs.imageTagMutability !== "IMMUTABLE") {
    out.push(`${r.name} has imageTagMutability ${quote(r.inputs.imageTagMutability)}; set it to "IMMUTABLE" so a deployed version's tag can never point at a different image`);
  }
  return out;
};

// ---------------------------------------------------------------------------------------------
// no-latest-tag

const DIGEST_RE = /^sha256:[a-f0-9]{64}$/;

/**
 * Why an image reference is not pinned, or undefined when it is. A tag is whatever follows the last
 * ":" of the last path segment, so a registry port (`host:5000/repo`) is not mistaken for one.
 */
function imageReferenceProblem(ref: unknown): string | undefined {
  if (typeof ref !== "string" || ref.trim() === "") return "has no image reference";
  const at = ref.indexOf("@");
  if (at >= 0) {
    const digest = ref.slice(at + 1);
    return DIGEST_RE.test(digest) ? undefined : `pins "${ref}" to "${digest}", which is not a sha256:<64 hex> digest`;
  }
  const lastSegment = ref.slice(ref.lastIndexOf("/") + 1);
  const colon = lastSegment.lastIndexOf(":");
  if (colon < 0) return `uses "${ref}" with no tag, which means latest`;
  const tag = lastSegment.slice(colon + 1);
  if (tag === "") return `uses "${ref}" with an empty tag`;
  if (tag.toLowerCase() === "latest") return `uses "${ref}"`;
  return undefined;
}

const PIN_ADVICE = "tag images with the deploy version (never latest) or pin them @sha256:<digest>";

/** Parses `containerDefinitions` (a JSON string of an array); a string result is the reason it can't. */
function containerDefinitions(r: PolicyResource): Record<string, unknown>[] | string {
  let raw = r.inputs.containerDefinitions;
  if (typeof raw === "string") {
    try {
      raw = JSON.parse(raw);
    } catch (err) {
      return `${r.name} containerDefinitions is not valid JSON (${err instanceof Error ? err.message : String(err)}); give a JSON array of container definitions`;
    }
  }
  if (!Array.isArray(raw)) return `${r.name} containerDefinitions is not a JSON array of container definitions`;
  return raw.map((c) => (isRecord(c) ? c : {}));
}

function containerLabel(r: PolicyResource, c: Record<string, unknown>, index: number): string {
  return `${r.name} container ${typeof c.name === "string" ? `"${c.name}"` : `#${index}`}`;
}

export const noLatestTag: ResourceCheck = (r) => {
  if (r.type === TYPES.dockerImage) {
    const problem = imageReferenceProblem(r.inputs.imageName);
    return problem ? [`${r.name} imageName ${problem}; ${PIN_ADVICE}`] : [];
  }
  const containers = containerDefinitions(r);
  if (typeof containers === "string") return [containers];
  return containers.flatMap((c, index) => {
    const problem = imageReferenceProblem(c.image);
    return problem ? [`${containerLabel(r, c, index)} ${problem}; ${PIN_ADVICE}`] : [];
  });
};

// ---------------------------------------------------------------------------------------------
// container-limits-and-health

/** Task-level cpu/memory are strings ("512", or "1 vCPU"/"2 GB"); a numeric one must be positive. */
function isTaskSize(v: unknown): boolean {
  if (typeof v === "number") return isPositiveNumber(v);
  if (typeof v !== "string" || v.trim() === "") return false;
  const n = Number(v);
  return Number.isNaN(n) || n > 0;
}

/** Whether an ECS service runs this task definition behind a target group whose health check is on. */
function behindHealthCheckedTargetGroup(task: PolicyResource, all: readonly PolicyResource[]): boolean {
  const taskRefs = new Set([task.id, task.inputs.arn].filter((v): v is string => typeof v === "string"));
  return all.some(
    (svc) =>
      svc.type === TYPES.ecsService &&
      typeof svc.inputs.taskDefinition === "string" &&
      taskRefs.has(svc.inputs.taskDefinition) &&
      asArray(svc.inputs.loadBalancers).some((lb) => {
        if (!isRecord(lb) || typeof lb.targetGroupArn !== "string") return false;
        const tg = all.find((t) => t.type === TYPES.targetGroup && t.id === lb.targetGroupArn);
        const hc = tg?.inputs.healthCheck;
        return tg !== undefined && !(isRecord(hc) && hc.enabled === false);
      }),
  );
}

export const containerLimitsAndHealth: ResourceCheck = (r, _context, all) => {
  const out: string[] = [];
  const missingTask = (["cpu", "memory"] as const).filter((k) => !isTaskSize(r.inputs[k]));
  if (missingTask.length > 0) {
    out.push(`${r.name} has no task-level ${missingTask.join(" or ")}; set the task definition's cpu and memory (e.g. "512" and "1024") so Fargate sizes it`);
  }
  const containers = containerDefinitions(r);
  if (typeof containers === "string") return [...out, containers];
  if (containers.length === 0) out.push(`${r.name} defines no containers`);
  containers.forEach((c, index) => {
    const label = containerLabel(r, c, index);
    const missing: string[] = [];
    if (!isPositiveNumber(c.cpu)) missing.push("cpu");
    if (!isPositiveNumber(c.memory) && !isPositiveNumber(c.memoryReservation)) missing.push("memory (or memoryReservation)");
    if (missing.length > 0) out.push(`${label} has no ${missing.join(" or ")}; give every container positive cpu and memory limits`);
    const health = c.healthCheck;
    const command = isRecord(health) ? health.command : undefined;
    if (!(Array.isArray(command) && command.length > 0)) {
      // A check may be left to the load balancer: then a service must run this task behind one.
      if (health === undefined && behindHealthCheckedTargetGroup(r, all)) return;
      out.push(`${label} has no healthCheck command; add healthCheck: { command: ["CMD-SHELL", "wget -q -O /dev/null http://127.0.0.1:<port>/health || exit 1"] }, or run the task behind a load balancer whose target group checks it, so unhealthy tasks are replaced`);
    } else if (command.some((part) => typeof part === "string" && /\blocalhost\b/.test(part))) {
      out.push(`${label} health check uses localhost, which BusyBox wget may resolve to ::1 without falling back to IPv4 (a server on 0.0.0.0 never gets healthy); use 127.0.0.1`);
    }
  });
  return out;
};
