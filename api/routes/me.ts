/** Who the caller is: the token's name and its roles on each stack it may read (what the dashboard shows). */
import { z } from "zod";
import { ROLES, hasRole, readableStacks, type Role } from "../auth";
import { stackName } from "../schemas";
import type { HandlerInput, Reply } from "./route";

export const meSchema = z.object({
  name: z.string().describe("The token's name: `requestedBy` on the jobs it starts."),
  stacks: z.record(stackName, z.array(z.enum(ROLES))).describe("Each stack the token may read, with every role it holds there (implied ones included)."),
});

export function whoAmI({ ctx, principal }: HandlerInput<unknown, unknown, unknown>): Reply {
  const stacks: Record<string, Role[]> = {};
  for (const stack of readableStacks(principal, ctx.environments.list())) {
    stacks[stack] = ROLES.filter((role) => hasRole(principal, role, { stack }));
  }
  return { body: { name: principal.name, stacks }, headers: { "Cache-Control": "no-store" } };
}
