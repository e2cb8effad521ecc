/**
 * The wording of zod type errors, shared by every parser of user input (request bodies and queries,
 * environment files, the tokens file). zod 4's issues carry no `input` unless asked to, so whether a
 * field is missing or has the wrong type is read from the parsed value itself, along the issue's path.
 */
import type { z } from "zod";

const ARTICLE: Record<string, string> = { array: "an array", object: "an object", int: "an integer", integer: "an integer" };

/** `a string`, `a number`, `an object`, … for zod's `expected`. */
function typeName(expected: string): string {
  return ARTICLE[expected] ?? `a ${expected}`;
}

/** Whether `path` names a value present in `root` (a key that exists with a value other than undefined). */
export function presentAt(root: unknown, path: readonly PropertyKey[]): boolean {
  let value: unknown = root;
  for (const key of path) {
    if (value === null || typeof value !== "object") return false;
    if (!Object.prototype.hasOwnProperty.call(value, key as string)) return false;
    value = (value as Record<PropertyKey, unknown>)[key];
  }
  return value !== undefined;
}

/**
 * A type issue as the reader needs it: `is required` for a missing field, `must be a string` (etc.)
 * for a present one of the wrong type; undefined for any other issue (the caller words those).
 */
export function typeIssueMessage(issue: z.core.$ZodIssue, root: unknown): string | undefined {
  if (issue.code !== "invalid_type") return undefined;
  if (!presentAt(root, issue.path)) return "is required";
  return `must be ${typeName(String(issue.expected))}`;
}
