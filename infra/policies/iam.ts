/**
 * IAM rules: no policy allows everything, and Secrets Manager grants name secrets as their ARNs really are.
 */
import { TYPES, isRecord, asArray, strings, type PolicyResource, type ResourceCheck } from "./rule";

// ---------------------------------------------------------------------------------------------
// no-iam-star

/** The IAM policy documents a resource carries, each with a label for messages. */
function policyDocuments(r: PolicyResource): { label: string; document: unknown }[] {
  if (r.type === TYPES.iamRole) {
    return asArray(r.inputs.inlinePolicies)
      .filter(isRecord)
      // `inlinePolicies: [{}]` is the provider's way of saying "no inline policies".
      .filter((p) => p.policy !== undefined && p.policy !== "")
      .map((p, index) => ({ label: `inline policy ${typeof p.name === "string" ? `"${p.name}"` : `#${index}`}`, document: p.policy }));
  }
  return [{ label: "policy", document: r.inputs.policy }];
}

function isStar(v: unknown): boolean {
  return v === "*" || v === "*:*";
}

/** Checks one document; returns messages without the resource name. */
function policyProblems(document: unknown): string[] {
  let doc = document;
  if (doc === undefined || doc === null || doc === "") return ["is empty; every policy must be a document the review can read"];
  if (typeof doc === "string") {
    try {
      doc = JSON.parse(doc);
    } catch (err) {
      return [`is not valid JSON (${err instanceof Error ? err.message : String(err)}); give a JSON policy document`];
    }
  }
  if (!isRecord(doc) || doc.Statement === undefined) return ["is not an IAM policy document (no Statement); give {Version, Statement: [...]}"];
  const out: string[] = [];
  asArray(doc.Statement).forEach((s, index) => {
    if (!isRecord(s)) {
      out.push(`statement #${index} is not an object`);
      return;
    }
    if (s.Effect !== "Allow") return;
    const sid = typeof s.Sid === "string" ? `statement "${s.Sid}"` : `statement #${index}`;
    const allResources = asArray(s.Resource).some(isStar) || s.NotResource !== undefined;
    const allActions = asArray(s.Action).some(isStar) || s.NotAction !== undefined;
    if (allResources && allActions) {
      const action = s.NotAction !== undefined ? "NotAction (every action but a few)" : 'Action "*"';
      const resource = s.NotResource !== undefined ? "NotResource (every resource but a few)" : 'Resource "*"';
      out.push(`${sid} allows ${action} on ${resource}; name the actions and the resources the workload needs`);
    }
  });
  return out;
}

export const noIamStar: ResourceCheck = (r) =>
  policyDocuments(r).flatMap(({ label, document }) => policyProblems(document).map((p) => `${r.name} ${label} ${p}`));

// ---------------------------------------------------------------------------------------------
// secret-grant-arns

function parsedDocument(document: unknown): Record<string, unknown> | undefined {
  const doc = typeof document === "string" ? (() => { try { return JSON.parse(document) as unknown; } catch { return undefined; } })() : document;
  return isRecord(doc) ? doc : undefined;
}

/**
 * Why an IAM resource meant to name a Secrets Manager secret matches no real one, or undefined.
 * A real ARN ends in the secret's name plus `-` and six random characters.
 */
function secretResourceProblem(resource: string): string | undefined {
  const m = /:secretsmanager:[^:]*:[^:]*:secret:(.*)$/.exec(resource);
  if (!m) return undefined;
  const rest = m[1];
  if (rest.includes(":")) return `"${resource}" carries a JSON key or version after the name; IAM authorizes the secret, so grant on its ARN (with -?????? for the suffix)`;
  if (/(-\?{6}|\*)$/.test(rest) || /-[A-Za-z0-9]{6}$/.test(rest)) return undefined;
  return `"${resource}" is a partial ARN without the secret's six-character suffix, so it matches no real secret; append -??????`;
}

export const secretGrantArnsCheck: ResourceCheck = (r) =>
  policyDocuments(r).flatMap(({ label, document }) => {
    const doc = parsedDocument(document);
    if (doc === undefined) return [];
    return asArray(doc.Statement)
      .filter(isRecord)
      .filter((st) => st.Effect === "Allow" && asArray(st.Action).some((a) => typeof a === "string" && /^secretsmanager:/i.test(a)))
      .flatMap((st) => strings(st.Resource).map(secretResourceProblem).filter((p): p is string => p !== undefined))
      .map((p) => `${r.name} ${label} ${p}`);
  });
