/**
 * Network rules: no ingress open to the world but HTTP(S) to a load balancer, and HTTPS reached on the
 * domain its certificate covers.
 */
import { TYPES, isRecord, asArray, strings, type PolicyResource, type ResourceCheck } from "./rule";

// ---------------------------------------------------------------------------------------------
// no-open-ingress

const HTTP_PORTS = new Set([80, 443]);

/** `/0` is every address, whatever the address part says ("0.0.0.0/0", "::/0"). */
function isWorldCidr(cidr: string): boolean {
  return /\/0+$/.test(cidr.trim());
}

interface Ingress {
  readonly protocol: string; // normalized: "all", "tcp", or whatever else was written
  readonly fromPort?: number;
  readonly toPort?: number;
  readonly cidrs: readonly string[];
}

function normalizeProtocol(p: unknown): string {
  const s = String(p ?? "").trim().toLowerCase();
  if (s === "-1" || s === "all") return "all";
  if (s === "6") return "tcp";
  return s;
}

function portText(rule: Ingress): string {
  if (rule.protocol === "all") return "all ports and protocols";
  const proto = rule.protocol === "tcp" ? "" : `${rule.protocol || "unknown protocol"} `;
  if (typeof rule.fromPort !== "number" || typeof rule.toPort !== "number") return `${proto}all ports`;
  if (rule.fromPort === rule.toPort) return `${proto}port ${rule.fromPort}`;
  return `${proto}ports ${rule.fromPort}-${rule.toPort}`;
}

/** Only a single TCP port, 80 or 443, may face the internet. */
function isHttpOnly(rule: Ingress): boolean {
  return rule.protocol === "tcp" && rule.fromPort === rule.toPort && typeof rule.fromPort === "number" && HTTP_PORTS.has(rule.fromPort);
}

function loadBalancerSecurityGroupIds(all: readonly PolicyResource[]): Set<string> {
  const ids = new Set<string>();
  for (const r of all) if (r.type === TYPES.loadBalancer) for (const id of strings(r.inputs.securityGroups)) ids.add(id);
  return ids;
}

function findSecurityGroup(id: unknown, all: readonly PolicyResource[]): PolicyResource | undefined {
  if (typeof id !== "string") return undefined;
  return all.find((r) => r.type === TYPES.securityGroup && r.id === id);
}

function openIngressMessages(subject: string, sg: PolicyResource | undefined, rules: readonly Ingress[], all: readonly PolicyResource[]): string[] {
  const attached = sg?.id !== undefined && loadBalancerSecurityGroupIds(all).has(sg.id);
  const out: string[] = [];
  for (const rule of rules) {
    for (const cidr of rule.cidrs.filter(isWorldCidr)) {
      if (attached && isHttpOnly(rule)) continue;
      const why = attached
        ? "a load balancer's security group may be open to the internet only on TCP 80 and 443, one port per rule"
        : `${sg ? `security group ${sg.name}` : "its security group"} is not attached to a load balancer; only the load balancer may be open, on TCP 80/443 — reach this group from the load balancer's security group (referencedSecurityGroupId) instead`;
      out.push(`${subject} ingress allows ${cidr} on ${portText(rule)}; ${why}`);
    }
  }
  return out;
}

/** One ingress rule of any of the three shapes: its protocol, its port range, and the sources given. */
function ingressOf(inputs: Record<string, unknown>, protocol: unknown, cidrs: string[]): Ingress {
  const port = (v: unknown) => (typeof v === "number" ? v : undefined);
  return { protocol: normalizeProtocol(protocol), fromPort: port(inputs.fromPort), toPort: port(inputs.toPort), cidrs };
}

export const noOpenIngress: ResourceCheck = (r, _context, all) => {
  const i = r.inputs;
  if (r.type === TYPES.ingressRule) {
    const sg = findSecurityGroup(i.securityGroupId, all);
    return openIngressMessages(sg ? `${r.name} (on ${sg.name})` : r.name, sg, [ingressOf(i, i.ipProtocol, [...strings(i.cidrIpv4), ...strings(i.cidrIpv6)])], all);
  }
  if (r.type === TYPES.legacySecurityGroupRule) {
    if (i.type !== "ingress") return [];
    const sg = findSecurityGroup(i.securityGroupId, all);
    return openIngressMessages(sg ? `${r.name} (on ${sg.name})` : r.name, sg, [ingressOf(i, i.protocol, [...strings(i.cidrBlocks), ...strings(i.ipv6CidrBlocks)])], all);
  }
  // aws:ec2/securityGroup:SecurityGroup with inline `ingress` blocks
  const rules: Ingress[] = asArray(i.ingress)
    .filter(isRecord)
    .map((b) => ingressOf(b, b.protocol, [...strings(b.cidrBlocks), ...strings(b.ipv6CidrBlocks)]));
  return openIngressMessages(r.name, r, rules, all);
};


// ---------------------------------------------------------------------------------------------
// https-on-own-name

export const httpsOnOwnName: ResourceCheck = (r, _context, all) => {
  if (String(r.inputs.protocol).toUpperCase() !== "HTTPS") return [];
  const aliased = all.some((x) => x.type === TYPES.route53Record && asArray(x.inputs.aliases).some((a) => isRecord(a) && typeof a.name === "string" && a.name !== ""));
  return aliased
    ? []
    : [`${r.name} serves HTTPS, but no Route 53 alias gives the load balancer a name of its own; a certificate cannot cover *.elb.amazonaws.com, so every client would refuse it. Set app.domain`];
};
