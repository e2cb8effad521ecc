/** The environment files the service serves: one directory, loaded and validated on each use. */
import { listEnvironments, loadEnvironment, STACK_NAME_RE, type Environment } from "../automation/environment";
import { NotFoundError } from "../automation/errors";

export interface Environments {
  /** Stack names with a file, sorted. */
  list(): string[];
  /** Whether the stack has a file (without validating it). */
  has(stack: string): boolean;
  /** Loads and validates one; an unknown stack is 404 without listing the known ones. */
  load(stack: string): Environment;
}

export function environmentsIn(envDir?: string): Environments {
  const options = envDir === undefined ? undefined : { envDir };
  return {
    list: () => listEnvironments(options),
    has: (stack) => STACK_NAME_RE.test(stack) && listEnvironments(options).includes(stack),
    load: (stack) => {
      try {
        return loadEnvironment(stack, options);
      } catch (err) {
        // The loader's message lists the known stacks: fine for the CLI, an enumeration for the service.
        if (err instanceof NotFoundError) throw new NotFoundError(`stack "${stack}" not found`, { details: { field: "stack" }, cause: err });
        throw err;
      }
    },
  };
}
