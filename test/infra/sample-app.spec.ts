/**
 * The sample application against the task it runs in: the settings AWS applies (read-only root,
 * a volume at /tmp, the ALB's idle timeout) taken from the evaluated program, not restated here.
 */
import { expect } from "chai";
import { spawn } from "child_process";
import { mkdtempSync, readFileSync, readdirSync, writeFileSync } from "fs";
import { tmpdir } from "os";
import * as path from "path";
import { once } from "events";
import type { Evaluation } from "../../automation/program/evaluate";
import { REPO_ROOT } from "../../infra/repo-root";
import { Registry, dockerfileVolumes } from "../../infra/registry";
import { devInput, evaluateDev, input, named } from "./fixtures";

const APP_DIR = path.join(REPO_ROOT, "examples", "app");
// eslint-disable-next-line @typescript-eslint/no-require-imports
const app = require(path.join(APP_DIR, "server.js")) as { createServer: () => import("http").Server };

describe("examples/app under the task's settings", () => {
  let dev: Evaluation;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  let container: Record<string, any>;

  before(async () => {
    dev = await evaluateDev();
    container = JSON.parse(input(named(dev, "aws:ecs/taskDefinition:TaskDefinition", "web-dev-task"), "containerDefinitions"))[0];
  });

  it("keeps idle connections open longer than the load balancer's idle timeout, so the ALB never reuses a closed socket", () => {
    const idleSeconds = input<number>(named(dev, "aws:lb/loadBalancer:LoadBalancer", "web-dev-alb"), "idleTimeout");
    const server = app.createServer();
    expect(server.keepAliveTimeout).to.be.above(idleSeconds * 1000);
    expect(server.headersTimeout).to.be.above(server.keepAliveTimeout);
  });

  it("declares every writable mount of the task as a VOLUME, so the volume takes the image's owner and mode", () => {
    expect(container.readonlyRootFilesystem).to.equal(true);
    const declared = dockerfileVolumes(readFileSync(path.join(APP_DIR, "Dockerfile"), "utf8"));
    const mounts = (container.mountPoints as { containerPath: string; readOnly: boolean }[]).filter((m) => !m.readOnly).map((m) => m.containerPath);
    expect(mounts).to.deep.equal(["/tmp"]);
    expect(declared).to.include.members(mounts);
  });

  it("writes to its temporary directory at start and then serves", async () => {
    const scratch = mkdtempSync(path.join(tmpdir(), "app-tmp-"));
    const child = spawn(process.execPath, [path.join(APP_DIR, "server.js")], { env: { PATH: process.env.PATH, PORT: "0", TMPDIR: scratch, APP_VERSION: "9.9.9" }, stdio: ["ignore", "pipe", "pipe"] });
    try {
      const [line] = (await once(child.stdout!, "data")) as [Buffer];
      const started = JSON.parse(line.toString().split("\n")[0]);
      expect(started).to.include({ msg: "listening", version: "9.9.9", scratch });
      const res = await fetch(`http://127.0.0.1:${started.port}/health`);
      expect(await res.json()).to.deep.equal({ status: "ok", version: "9.9.9" });
      // The write check cleans up after itself.
      expect(readdirSync(scratch)).to.deep.equal([]);
    } finally {
      child.kill("SIGTERM");
      await once(child, "exit");
    }
  });

  it("refuses to build an image whose Dockerfile does not declare the task's writable path, naming build.dockerfile", () => {
    const dir = mkdtempSync(path.join(tmpdir(), "app-ctx-"));
    writeFileSync(path.join(dir, "Dockerfile"), "FROM node:20-alpine\nUSER node\nCMD [\"node\", \"server.js\"]\n");
    expect(() => new Registry("web-dev", { build: { context: dir }, version: "1.0.0", writablePaths: ["/tmp"] })).to.throw(/`build.dockerfile` .* must declare VOLUME \["\/tmp"\]/);
  });

  it("reads both forms of VOLUME", () => {
    expect(dockerfileVolumes('VOLUME ["/tmp", "/var/cache/"]\nvolume /data /logs\n')).to.deep.equal(["/tmp", "/var/cache", "/data", "/logs"]);
    expect(devInput.app.build?.context).to.equal("examples/app");
  });
});
