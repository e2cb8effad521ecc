/**
 * The pulumi engine for real: the pulumi CLI, a file:// backend in a temporary directory, and the
 * fixture program in test/e2e/program (one dynamic-provider resource writing a local file). Walks
 * the deployer's life cycle: up, a clean preview, drift made by hand, refresh, a new version, and a
 * rollback to the first version's recorded config. Skipped, with one line saying why, when no
 * `pulumi` is on PATH (development and CI machines have none).
 */
import { expect } from "chai";
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "fs";
import { tmpdir } from "os";
import * as path from "path";
import { parseEnvironment, REPO_ROOT, type Environment } from "../../automation/environment";
import { hasChanges } from "../../automation/engine/port";
import { PulumiEngine } from "../../automation/engine/pulumi";
import { findPulumiOnPath } from "../../automation/engine/pulumi-cli";
import { CONFIG_KEYS, type ProgramConfig, type Settings } from "../../infra/config";

const PROGRAM_FILES = ["Pulumi.yaml", "index.ts", "package.json", "tsconfig.json"];

function environmentYaml(backend: string, output: string): string {
  return `
engine: pulumi
backend: file://${backend}
secretsProvider: passphrase
aws: { region: us-east-1, accountId: "000000000000" }
network: { cidr: 10.99.0.0/16, availabilityZones: 2, natGateways: none }
app:
  name: web
  image: 000000000000.dkr.ecr.us-east-1.amazonaws.com/web
  port: 8080
  cpu: 256
  memory: 512
  desiredCount: 1
  autoscaling: { min: 1, max: 1, cpuTarget: 70 }
  healthCheck: { path: /health }
tags: { Owner: e2e, E2EOutput: ${JSON.stringify(output)} }
`;
}

describe("pulumi engine, for real (e2e)", function () {
  this.timeout(5 * 60_000);

  let work: string | undefined;
  let engine: PulumiEngine;
  let env: Environment;
  let output: string;
  let version1: ProgramConfig;

  before(function () {
    if (findPulumiOnPath() === undefined) {
      console.log("    skipped: no pulumi CLI on PATH (install it from https://www.pulumi.com/docs/install/ to run test/e2e)");
      this.skip();
    }
    work = mkdtempSync(path.join(tmpdir(), "deployer-e2e-"));
    // A copy of the program, so the stack file the workspace writes (Pulumi.e2e.yaml) stays out of
    // the repository; its node_modules is the repository's.
    const program = path.join(work, "program");
    mkdirSync(program);
    for (const f of PROGRAM_FILES) copyFileSync(path.join(__dirname, "program", f), path.join(program, f));
    symlinkSync(path.join(REPO_ROOT, "node_modules"), path.join(program, "node_modules"), "dir");

    output = path.join(work, "world", "output.txt");
    env = parseEnvironment("e2e", environmentYaml(path.join(work, "state"), output), "e2e.yaml");
    version1 = { settings: env.settings, version: "1.0.0" };
    engine = new PulumiEngine({ repoRoot: program, env: { ...process.env, PULUMI_CONFIG_PASSPHRASE: "e2e-only-passphrase" } });
  });

  after(() => {
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it("is available", async () => {
    expect(await engine.available()).to.deep.equal({ ok: true });
  });

  it("creates the file with up, masking the secret output", async () => {
    const result = await engine.up(env, { config: version1 });
    expect(result.engine).to.equal("pulumi");
    expect(result.changes.create).to.be.greaterThan(0);
    expect(readFileSync(output, "utf8")).to.equal("web@1.0.0\n");
    expect(result.outputs.content).to.deep.equal({ value: "web@1.0.0\n", secret: false });
    expect(result.outputs.note).to.deep.equal({ value: "[secret]", secret: true });
    expect(result.steps.some((s) => s.urn.endsWith("::output") && s.op === "create")).to.equal(true);
  });

  it("previews no changes right after", async () => {
    const result = await engine.preview(env, { config: version1 });
    expect(hasChanges(result.changes), JSON.stringify(result.changes)).to.equal(false);
  });

  it("reports the file changed by hand as drift, without changing state", async () => {
    writeFileSync(output, "edited by hand\n");
    const first = await engine.drift(env, { config: version1 });
    const file = first.drifted.find((d) => d.urn.endsWith("::output"));
    expect(file, JSON.stringify(first.drifted)).to.not.equal(undefined);
    expect(file!.kind).to.equal("update");
    expect(file!.properties.map((p) => p.path)).to.include("content");
    // A preview never writes state: asking again finds the same drift.
    const second = await engine.drift(env, { config: version1 });
    expect(second.drifted.map((d) => d.urn)).to.deep.equal(first.drifted.map((d) => d.urn));
    expect(readFileSync(output, "utf8")).to.equal("edited by hand\n");
  });

  it("takes what exists into state with refresh, after which nothing drifts", async () => {
    await engine.refresh(env, { config: version1 });
    const after = await engine.drift(env, { config: version1 });
    expect(after.drifted).to.deep.equal([]);
    expect(readFileSync(output, "utf8")).to.equal("edited by hand\n");
  });

  it("deploys a new version", async () => {
    const result = await engine.up(env, { config: { ...version1, version: "2.0.0" } });
    expect(result.changes).to.include({ delete: 0, replace: 0 });
    expect(result.changes.update).to.be.greaterThan(0);
    expect(readFileSync(output, "utf8")).to.equal("web@2.0.0\n");
  });

  it("rolls back by deploying the first version's config as the engine recorded it", async () => {
    const history = await engine.history(env);
    const first = history.find((h) => h.kind === "update" && h.result === "succeeded" && h.config?.[CONFIG_KEYS.version] === "1.0.0");
    expect(first, JSON.stringify(history)).to.not.equal(undefined);
    const recorded: ProgramConfig = {
      settings: JSON.parse(first!.config![CONFIG_KEYS.settings]) as Settings,
      version: first!.config![CONFIG_KEYS.version],
    };
    await engine.up(env, { config: recorded });
    expect(readFileSync(output, "utf8")).to.equal("web@1.0.0\n");
    expect((await engine.outputs(env)).version).to.deep.equal({ value: "1.0.0", secret: false });
  });

  it("destroys the file", async () => {
    const result = await engine.destroy(env, { config: version1 });
    expect(result.changes.delete).to.be.greaterThan(0);
    expect(() => readFileSync(output)).to.throw();
  });
});
