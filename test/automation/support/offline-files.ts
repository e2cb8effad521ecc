/** The offline engine's snapshot files of one stack, and small readers for assertions. */
import { existsSync, readFileSync, writeFileSync } from "fs";
import * as path from "path";
import { offlineStackDir } from "../../../automation/paths";

export interface StackFiles {
  readonly dir: string;
  readonly state: string;
  readonly world: string;
  readonly history: string;
  readonly scanFindings: string;
}

export function stackFiles(dataDir: string, stack = "local"): StackFiles {
  const dir = offlineStackDir(stack, dataDir);
  return {
    dir,
    state: path.join(dir, "state.json"),
    world: path.join(dir, "world.json"),
    history: path.join(dir, "history.json"),
    scanFindings: path.join(dir, "scan-findings.json"),
  };
}

export function readJson(file: string): any {
  return JSON.parse(readFileSync(file, "utf8"));
}

export function writeJson(file: string, value: unknown): void {
  writeFileSync(file, JSON.stringify(value, null, 2) + "\n");
}

/** The file's bytes, or undefined when it does not exist: for "nothing was written" assertions. */
export function bytesOf(file: string): Buffer | undefined {
  return existsSync(file) ? readFileSync(file) : undefined;
}

/** Every snapshot file's bytes, to compare before and after an operation that must write nothing. */
export function snapshot(files: StackFiles): Record<"state" | "world" | "history", Buffer | undefined> {
  return { state: bytesOf(files.state), world: bytesOf(files.world), history: bytesOf(files.history) };
}

/** The one resource of `type` (and optionally name) in a state or world file's resources. */
export function resourceOf(doc: { resources: Record<string, any> }, type: string, name?: string): { urn: string; resource: any } {
  const found = Object.entries(doc.resources).filter(([urn, r]) => r.type === type && (name === undefined || urn.endsWith(`::${name}`)));
  if (found.length !== 1) throw new Error(`expected one ${type}${name ? ` named ${name}` : ""}, found ${found.length}`);
  return { urn: found[0][0], resource: found[0][1] };
}

export const TYPES = {
  taskDefinition: "aws:ecs/taskDefinition:TaskDefinition",
  service: "aws:ecs/service:Service",
  image: "docker:index/image:Image",
  repository: "aws:ecr/repository:Repository",
  database: "aws:rds/instance:Instance",
  vpc: "aws:ec2/vpc:Vpc",
} as const;
