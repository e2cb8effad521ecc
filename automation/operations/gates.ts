/**
 * Review gates: what a reviewer of `terraform plan` checked by hand, applied to every preview before
 * anything changes. Pure functions; a failed gate is a GateError (exit 4) listing every finding.
 */
import type { Violation } from "../../infra/policies";
import type { ChangeSummary, ResourceStep } from "../engine/port";
import type { CidrOverlap, Environment } from "../environment";
import { GateError } from "../errors";

export interface GateFinding {
  readonly gate: "policy" | "protected-resource" | "change-bounds" | "network-overlap";
  readonly message: string;
  readonly urn?: string;
}

export interface GateInput {
  readonly env: Environment;
  readonly steps: readonly ResourceStep[];
  readonly changes: ChangeSummary;
  readonly violations: readonly Violation[];
  /** URNs the caller explicitly allows to be deleted or replaced (`--allow-destroy`). */
  readonly allowDestroy?: readonly string[];
  /** Environments of the same account whose VPC range overlaps this one's (`cidrOverlaps`). */
  readonly overlaps?: readonly CidrOverlap[];
}

const BOUNDS: readonly [keyof ChangeSummary, "maxCreates" | "maxUpdates" | "maxDeletes" | "maxReplaces"][] = [
  ["create", "maxCreates"],
  ["update", "maxUpdates"],
  ["delete", "maxDeletes"],
  ["replace", "maxReplaces"],
];

export function reviewFindings(input: GateInput): GateFinding[] {
  const findings: GateFinding[] = [];
  for (const v of input.violations) {
    if (v.severity === "mandatory") findings.push({ gate: "policy", urn: v.resource, message: `[${v.rule}] ${v.message}` });
  }
  const protectedTypes = new Set(input.env.deploy.protect);
  const allowed = new Set(input.allowDestroy ?? []);
  for (const s of input.steps) {
    if ((s.op === "delete" || s.op === "replace") && protectedTypes.has(s.type) && !allowed.has(s.urn)) {
      findings.push({
        gate: "protected-resource",
        urn: s.urn,
        message: `${s.urn.split("::").pop()} (${s.type}) would be ${s.op === "delete" ? "deleted" : "replaced"}${s.changedProperties.length ? ` because of ${s.changedProperties.join(", ")}` : ""}; ${s.type} is protected in ${input.env.name} — name the URN with --allow-destroy to proceed`,
      });
    }
  }
  for (const o of input.overlaps ?? []) {
    findings.push({
      gate: "network-overlap",
      message: `network.cidr ${input.env.settings.network.cidr} of ${input.env.file} overlaps ${o.cidr} of ${o.file} (stack ${o.stack}) in the same account ${o.accountId}: VPCs of one account are peered and routed together; give one of them another range`,
    });
  }
  for (const [kind, bound] of BOUNDS) {
    const max = input.env.deploy.bounds[bound];
    if (max !== undefined && input.changes[kind] > max) {
      findings.push({ gate: "change-bounds", message: `${input.changes[kind]} resources to ${kind}, above deploy.bounds.${bound} = ${max}` });
    }
  }
  return findings;
}

export function assertGatesPass(input: GateInput): void {
  const findings = reviewFindings(input);
  if (findings.length === 0) return;
  const shown = findings.slice(0, 10).map((f) => `  - ${f.message}`);
  if (findings.length > 10) shown.push(`  … and ${findings.length - 10} more`);
  throw new GateError(`review gates stopped the deployment of ${input.env.name}:\n${shown.join("\n")}`, { details: { findings } });
}
