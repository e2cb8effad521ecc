/**
 * Where `npm run engine:install` and `npm run moto:install` put the tools the real engine and its
 * tests need (the pulumi CLI with its Node.js language host, and moto for the AWS APIs): a cache
 * directory outside the repository, shared by every clone on the machine.
 */
import { homedir } from "os";
import * as path from "path";

/** The pulumi version the tools build pins; the same as the @pulumi/pulumi SDK in package.json. */
export const PINNED_PULUMI_VERSION = "3.248.0";

/** `DEPLOYER_TOOLS_DIR`, default `~/.cache/pulumi-aws-deployer`. */
export function toolsDir(env: NodeJS.ProcessEnv = process.env): string {
  const dir = env.DEPLOYER_TOOLS_DIR;
  if (dir !== undefined && dir !== "") return path.resolve(dir);
  const cache = env.XDG_CACHE_HOME && env.XDG_CACHE_HOME !== "" ? env.XDG_CACHE_HOME : path.join(homedir(), ".cache");
  return path.join(cache, "pulumi-aws-deployer");
}

/** `<tools>/pulumi-v<version>/bin`: the built pulumi, pulumi-language-nodejs and pulumi-resource-pulumi-nodejs. */
export function pulumiBinDir(env: NodeJS.ProcessEnv = process.env, version: string = PINNED_PULUMI_VERSION): string {
  return path.join(toolsDir(env), `pulumi-v${version}`, "bin");
}

/** `<tools>/moto`: a Python virtual environment with `moto[server]`; its server is `<dir>/bin/moto_server`. */
export function motoDir(env: NodeJS.ProcessEnv = process.env): string {
  return path.join(toolsDir(env), "moto");
}
