/**
 * The Pulumi program. Pulumi calls the exported function and records what it returns as the
 * stack's outputs. Config is read and validated once here and passed down as typed args.
 */
import { readSettings } from "./config";
import { createStack } from "./stack";

export = () => createStack(readSettings());
