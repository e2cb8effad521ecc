/**
 * `npm run moto:install` (tools/moto-install.ts): what it reuses and what it rebuilds. The full
 * install (a venv and pip from PyPI, 2–3 minutes) is what `.ci/run` does; here a stand-in Python
 * shows the decisions without a download.
 */
import { spawnSync } from "child_process";
import { expect } from "chai";
import { chmodSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from "fs";
import * as path from "path";
import { motoDir } from "../../automation/tools";
import { install, PINNED_MOTO_VERSION } from "../../tools/moto-install";
import { motoServerPath } from "../support/moto";
import { tempDirs } from "./support/temp";

describe("npm run moto:install", function () {
  this.timeout(60_000);
  const temp = tempDirs();
  after(() => temp.cleanup());
  const quiet = () => undefined;

  /** A stand-in `python3` that records its arguments and fails, so no venv is really made. */
  function failingPython(dir: string): { python: string; calls: () => string[] } {
    const log = path.join(dir, "python-calls.log");
    const python = path.join(dir, "python3");
    writeFileSync(python, `#!/bin/sh\necho "$*" >> ${JSON.stringify(log)}\nexit 7\n`);
    chmodSync(python, 0o755);
    return { python, calls: () => (existsSync(log) ? readFileSync(log, "utf8").trim().split("\n") : []) };
  }

  it("rebuilds a venv stamped with another moto version, removing the old one first", () => {
    const tools = temp.make("moto-tools-");
    const env = { DEPLOYER_TOOLS_DIR: tools };
    const dir = motoDir(env);
    mkdirSync(path.join(dir, "bin"), { recursive: true });
    writeFileSync(path.join(dir, ".deployer-moto-version"), "5.0.0\n");
    writeFileSync(path.join(dir, "bin", "moto_server"), "old");
    const { python, calls } = failingPython(tools);

    expect(() => install({ ...env, DEPLOYER_PYTHON: python }, quiet)).to.throw(`${python} -m venv ${dir} exited with 7`);
    expect(calls()).to.deep.equal([`-m venv ${dir}`]);
    expect(existsSync(path.join(dir, "bin", "moto_server"))).to.equal(false);
  });

  it("rebuilds a venv that has no stamp (an install that was interrupted)", () => {
    const tools = temp.make("moto-tools-");
    const env = { DEPLOYER_TOOLS_DIR: tools };
    mkdirSync(path.join(motoDir(env), "bin"), { recursive: true });
    const { python, calls } = failingPython(tools);
    expect(() => install({ ...env, DEPLOYER_PYTHON: python }, quiet)).to.throw("exited with 7");
    expect(calls()).to.have.length(1);
  });

  it("reuses the installed venv without touching it, and prints moto_server's path last", function () {
    const server = motoServerPath();
    if (server === undefined) {
      if (process.env.CI === "true") throw new Error("moto is not installed: run `npm run moto:install`");
      this.skip();
    }
    const stamp = path.join(path.dirname(path.dirname(server)), ".deployer-moto-version");
    expect(readFileSync(stamp, "utf8").trim()).to.equal(PINNED_MOTO_VERSION);
    const before = statSync(stamp).mtimeMs;
    const { python } = failingPython(temp.make("moto-python-"));

    // A reused venv never calls the Python that would create one.
    expect(install({ ...process.env, DEPLOYER_PYTHON: python }, quiet)).to.equal(server);
    expect(statSync(stamp).mtimeMs).to.equal(before);

    const run = spawnSync(process.execPath, ["-r", "./automation/register.js", "tools/moto-install.ts"], { encoding: "utf8", env: { ...process.env, DEPLOYER_PYTHON: python } });
    expect(run.status, run.stderr).to.equal(0);
    expect(run.stdout.trim().split("\n").at(-1)).to.equal(server);
    expect(run.stderr).to.contain(`moto ${PINNED_MOTO_VERSION} already installed`);
  });
});
