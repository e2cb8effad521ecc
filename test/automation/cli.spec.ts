/**
 * The CLI's contract, driven in-process through `runCli` with captured stdout/stderr and a temp
 * `DEPLOYER_DATA_DIR`: the walk-throughs of issues 2 and 3, exit codes, input checks, the stack lease,
 * approvals and error output. Every run builds its collaborators the way `npm run <op>` does.
 */
import { expect } from "chai";
import { copyFileSync, existsSync, mkdirSync, writeFileSync } from "fs";
import { userInfo } from "os";
import * as path from "path";
import { PROJECT } from "../../infra/config";
import { TAGGABLE_TYPES } from "../../infra/tags";
import { openStore } from "../../automation/store";
import { cli, stackFrames, type CliRun } from "./support/cli";
import { copyEnvironments } from "./support/environments";
import { readJson, resourceOf, stackFiles, TYPES, writeJson } from "./support/offline-files";
import { tempDirs } from "./support/temp";

const COMPONENT_TYPES = ["Network", "Security", "Registry", "Service", "Storage", "Observability", "Alarms"].map((c) => `deployer:infra:${c}`);

/** This process's environment without what would change the CLI's behaviour, plus the data dir. */
function cliEnv(dataDir: string, extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, DEPLOYER_DATA_DIR: dataDir, ...extra };
  for (const name of ["DEBUG", "DEPLOYER_SMOKE_BASE_URL"]) if (!(name in extra)) delete env[name];
  return env;
}

/** The job id in the CLI's closing line: `up succeeded (job_…, version 1.0.0, offline engine)`. */
function jobIdOf(run: CliRun): string {
  const m = /^\w+ \w+ \((job_[0-9a-z]+)/m.exec(run.stdout);
  if (!m) throw new Error(`no job line in:\n${run.stdout}`);
  return m[1];
}

describe("the CLI", function () {
  this.timeout(60_000);
  const temp = tempDirs();
  after(() => temp.cleanup());

  describe("issue 3's walk-through on the offline engine", () => {
    let root: string;
    let dataDir: string;
    let env: NodeJS.ProcessEnv;
    let firstUp: string;
    let secondUp: string;
    let vpcUrn: string;

    before(() => {
      root = temp.make("cli-");
      dataDir = path.join(root, "data");
      env = cliEnv(dataDir);
    });

    it("up --stack local exits 0 and prints the outputs", async () => {
      const run = await cli(["up", "--stack", "local"], { env });

      expect(run.code, run.stderr).to.equal(0);
      expect(run.stdout).to.match(/^outputs:$/m);
      expect(run.stdout).to.match(/^ {2}url +http:\/\/web-local-alb-\S+$/m);
      expect(run.stdout).to.match(/^ {2}taskDefinitionArn +arn:aws:ecs:us-east-1:000000000000:task-definition\/web-local:\d+$/m);
      expect(run.stdout).to.match(/^up succeeded \(job_\w+, version 1\.0\.0, offline engine\)$/m);
      firstUp = jobIdOf(run);
    });

    it("preview --json prints exactly one JSON document with nothing to create, update, replace or delete", async () => {
      const run = await cli(["preview", "--stack", "local", "--json"], { env });

      expect(run.code, run.stderr).to.equal(0);
      expect(run.stderr).to.equal("");
      const doc = JSON.parse(run.stdout);
      expect(doc.changes).to.deep.include({ create: 0, update: 0, replace: 0, delete: 0 });
      expect(doc.job).to.deep.include({ operation: "preview", status: "succeeded", engine: "offline", version: "1.0.0" });
      expect(doc.findings).to.deep.equal([]);
    });

    it("up --version 2.0.0 replaces the task definition and updates the service", async () => {
      const run = await cli(["up", "--stack", "local", "--version", "2.0.0"], { env });

      expect(run.code, run.stderr).to.equal(0);
      expect(run.stdout).to.include("+- aws:ecs/taskDefinition:TaskDefinition  web-local-task [containerDefinitions] done");
      expect(run.stdout).to.include("~  aws:ecs/service:Service  web-local-service [taskDefinition] done");
      expect(run.stdout).to.match(/^changes +0 to create, 1 to update, 2 to replace, 0 to delete/m);
      secondUp = jobIdOf(run);
    });

    it("rollback returns to 1.0.0, replacing 2.0.0", async () => {
      const run = await cli(["rollback", "--stack", "local"], { env });

      expect(run.code, run.stderr).to.equal(0);
      expect(run.stdout).to.include(`restored 1.0.0 from ${firstUp}, replacing ${secondUp}`);
      expect(run.stdout).to.match(/^rollback succeeded \(job_\w+, version 1\.0\.0, offline engine\)$/m);
    });

    it("history --json shows all three, newest first, the rollback linked to what it replaced", async () => {
      const run = await cli(["history", "--stack", "local", "--json"], { env });

      expect(run.code, run.stderr).to.equal(0);
      const doc = JSON.parse(run.stdout);
      expect(doc.stack).to.equal("local");
      expect(doc.deployments.map((d: any) => [d.operation, d.version, d.status])).to.deep.equal([
        ["rollback", "1.0.0", "succeeded"],
        ["up", "2.0.0", "succeeded"],
        ["up", "1.0.0", "succeeded"],
      ]);
      expect(doc.deployments[0]).to.deep.include({ rollbackOf: secondUp, rollbackTo: firstUp, engine: "offline" });
      expect(doc.deployments.slice(1).map((d: any) => d.id)).to.deep.equal([secondUp, firstUp]);
    });

    it("drift exits 0 on the deployed stack", async () => {
      const run = await cli(["drift", "--stack", "local"], { env });

      expect(run.code, run.stderr).to.equal(0);
      expect(run.stdout).to.include("no drift");
    });

    it("drift exits 3 naming the resource and property changed in world.json", async () => {
      const files = stackFiles(dataDir);
      const world = readJson(files.world);
      const vpc = resourceOf(world, TYPES.vpc);
      vpcUrn = vpc.urn;
      vpc.resource.outputs.enableDnsHostnames = false;
      writeJson(files.world, world);

      const run = await cli(["drift", "--stack", "local"], { env });

      expect(run.code).to.equal(3);
      expect(run.stdout).to.include(`~ ${vpcUrn}`);
      expect(run.stdout).to.include("enableDnsHostnames: true → false");
      expect(run.stderr).to.include("run refresh to accept");
    });

    it("drift exits 0 again after refresh", async () => {
      const refresh = await cli(["refresh", "--stack", "local"], { env });
      expect(refresh.code, refresh.stderr).to.equal(0);

      const run = await cli(["drift", "--stack", "local"], { env });

      expect(run.code, run.stderr).to.equal(0);
      expect(readJson(stackFiles(dataDir).state).resources[vpcUrn].outputs.enableDnsHostnames).to.equal(false);
    });

    it("outputs reads a relative DEPLOYER_DATA_DIR and writes infrastructure-outputs.json, both from the working directory", async () => {
      const run = await cli(["outputs", "--stack", "local"], { env: cliEnv("data"), cwd: root });

      expect(run.code, run.stderr).to.equal(0);
      const doc = readJson(path.join(root, "infrastructure-outputs.json"));
      expect(doc.url).to.deep.include({ sensitive: false });
      expect(doc.url.value).to.match(/^http:\/\/web-local-alb-/);
      expect(run.stdout).to.include("written to infrastructure-outputs.json");
    });

    it("destroy without --yes exits 2 and deletes nothing", async () => {
      const run = await cli(["destroy", "--stack", "local"], { env });

      expect(run.code).to.equal(2);
      expect(run.stderr).to.include("--yes");
      expect(Object.keys(readJson(stackFiles(dataDir).state).resources)).to.not.be.empty;
    });
  });

  describe("usage and configuration errors", () => {
    let env: NodeJS.ProcessEnv;
    before(() => {
      env = cliEnv(temp.make("cli-"));
    });

    it("up --stack dev without a pulumi CLI on PATH exits 5 within 5 s with an install hint and no stack trace", async () => {
      // No CLI on PATH, and none built into the tools cache either.
      const run = await cli(["up", "--stack", "dev"], { env: { ...env, PATH: temp.make("empty-path-"), DEPLOYER_TOOLS_DIR: temp.make("no-tools-") } });

      expect(run.code).to.equal(5);
      expect(run.ms).to.be.below(5_000);
      expect(run.stderr).to.include("pulumi CLI is not installed").and.include("install it from");
      expect(stackFrames(run.stderr)).to.deep.equal([]);
    });

    it("refuses --stack ../etc with exit 2 before touching the file system", async () => {
      const run = await cli(["up", "--stack", "../etc"], { env });

      expect(run.code).to.equal(2);
      expect(run.stderr).to.include('stack: "../etc" is not a stack name');
    });

    it("refuses an unknown stack with exit 2, listing the known ones", async () => {
      const run = await cli(["preview", "--stack", "nope"], { env });

      expect(run.code).to.equal(2);
      expect(run.stderr).to.include('stack "nope" has no environment file').and.include("local");
    });

    for (const op of ["up", "validate"]) {
      it(`refuses --version latest for ${op} with exit 2`, async () => {
        const run = await cli([op, "--stack", "local", "--version", "latest"], { env });

        expect(run.code).to.equal(2);
        expect(run.stderr).to.include("--version").and.include("latest");
      });
    }

    it("refuses a --target that is not a URN of the stack with exit 2, naming --target", async () => {
      const run = await cli(["preview", "--stack", "local", "--target", "urn:pulumi:prod::pulumi-aws-deployer::aws:ec2/vpc:Vpc::web-prod-vpc"], { env });

      expect(run.code).to.equal(2);
      expect(run.stderr).to.match(/--target: .* is not a URN of stack local/);
    });

    it("runs --stack local when a copy of local.yaml is saved as twin.yaml, and up stops at the review gate naming both files", async () => {
      const envDir = copyEnvironments(temp.make("envs-"));
      copyFileSync(path.join(envDir, "local.yaml"), path.join(envDir, "twin.yaml"));
      writeFileSync(path.join(envDir, "broken.yaml"), "app: [unclosed\n");

      const history = await cli(["history", "--stack", "local", "--env-dir", envDir], { env });
      const up = await cli(["up", "--stack", "local", "--env-dir", envDir], { env });
      const broken = await cli(["history", "--stack", "broken", "--env-dir", envDir], { env });

      expect(history.code, history.stderr).to.equal(0);
      expect(up.code, up.stderr).to.equal(4);
      expect(up.stderr).to.include("local.yaml").and.include("twin.yaml").and.include("overlaps");
      expect(broken.code).to.equal(2);
      expect(broken.stderr).to.include("broken.yaml: (file): is not valid YAML");
    });

    it("refuses an unknown option with exit 2", async () => {
      const run = await cli(["up", "--stack", "local", "--colour", "blue"], { env });

      expect(run.code).to.equal(2);
      expect(run.stderr).to.include("--colour");
    });
  });

  describe("errors", () => {
    let dataDir: string;
    before(() => {
      dataDir = temp.make("cli-");
      // A snapshot the engine cannot read: every operation on the stack fails.
      const files = stackFiles(dataDir);
      mkdirSync(files.dir, { recursive: true });
      writeFileSync(files.state, "{ not json");
    });

    it("print one line and no stack trace when DEBUG is unset", async () => {
      const run = await cli(["drift", "--stack", "local"], { env: cliEnv(dataDir) });

      expect(run.code).to.equal(1);
      expect(run.stderr).to.match(/^error: .*state\.json is not valid JSON/m);
      expect(stackFrames(run.stderr)).to.deep.equal([]);
    });

    it("add the stack trace with DEBUG=1", async () => {
      const run = await cli(["drift", "--stack", "local"], { env: cliEnv(dataDir, { DEBUG: "1" }) });

      expect(run.code).to.equal(1);
      expect(stackFrames(run.stderr)).to.not.be.empty;
    });
  });

  describe("a busy stack", () => {
    it("stops a second run at once with exit 1, saying who holds the stack and for which job", async () => {
      const dataDir = temp.make("cli-");
      const store = openStore(dataDir);
      try {
        await store.acquireLease("local", { owner: "service:deployer-1", ttlMs: 60_000, jobId: "job_01heldbytheservice" });

        const run = await cli(["up", "--stack", "local"], { env: cliEnv(dataDir) });

        expect(run.code).to.equal(1);
        expect(run.stderr).to.include("service:deployer-1").and.include("job_01heldbytheservice");
        expect(run.ms).to.be.below(5_000);
        expect(existsSync(stackFiles(dataDir).dir)).to.equal(false);
      } finally {
        await store.close();
      }
    });
  });

  describe("a stack that requires approvals", () => {
    const me = userInfo().username;

    function approvalsEnvDir(bypass: string[]): string {
      return copyEnvironments(temp.make("envs-"), { local: (doc) => (doc.deploy.approvals = { required: 1, bypass }) });
    }

    it("runs the preview and exits 4, saying to request the deployment through the service", async () => {
      const dataDir = temp.make("cli-");

      const run = await cli(["up", "--stack", "local", "--env-dir", approvalsEnvDir([me])], { env: cliEnv(dataDir) });

      expect(run.code).to.equal(4);
      expect(run.stdout).to.include("+  aws:ecs/service:Service  web-local-service");
      expect(run.stderr).to.include("requires 1 approval").and.include("through the service").and.include("--yes");
      expect(existsSync(stackFiles(dataDir).state)).to.equal(false);
    });

    it("still exits 4 on --yes from a principal not allowed to bypass", async () => {
      const dataDir = temp.make("cli-");

      const run = await cli(["up", "--stack", "local", "--yes", "--env-dir", approvalsEnvDir(["someone-else"])], { env: cliEnv(dataDir) });

      expect(run.code).to.equal(4);
      expect(existsSync(stackFiles(dataDir).state)).to.equal(false);
    });

    it("deploys on --yes from a principal in deploy.approvals.bypass", async () => {
      const dataDir = temp.make("cli-");

      const run = await cli(["up", "--stack", "local", "--yes", "--env-dir", approvalsEnvDir([me])], { env: cliEnv(dataDir) });

      expect(run.code, run.stderr).to.equal(0);
      expect(existsSync(stackFiles(dataDir).state)).to.equal(true);
    });
  });

  describe("a stack the service holds", () => {
    it("refuses up on a blocked stack as the service does (exit 4, naming the recovery), changing nothing; preview still runs", async () => {
      const dataDir = temp.make("cli-");
      const store = openStore(dataDir);
      await store.setStackState("local", { blockedReason: "up job job_x was interrupted (the deployer stopped); recover the stack before changing it again", blockedJobId: "job_x" });
      const jobsBefore = (await store.listJobs({})).length;
      await store.close();

      const up = await cli(["up", "--stack", "local"], { env: cliEnv(dataDir) });
      expect(up.code).to.equal(4);
      expect(up.stderr).to.include("stack local is blocked").and.include("POST /v1/stacks/local/unlock");
      expect(existsSync(stackFiles(dataDir).state)).to.equal(false);
      const after = openStore(dataDir);
      expect((await after.listJobs({})).length).to.equal(jobsBefore);
      await after.close();

      const preview = await cli(["preview", "--stack", "local"], { env: cliEnv(dataDir) });
      expect(preview.code, preview.stderr).to.equal(0);
    });

    it("refuses up while a job of the stack awaits approval (exit 4, naming the job)", async () => {
      const dataDir = temp.make("cli-");
      const store = openStore(dataDir);
      const waiting = await store.createJob({ stack: "local", operation: "up", requestedBy: "alice", source: "api", engine: "offline", status: "awaiting_approval", version: "1.0.0", approvalsRequired: 1 });
      await store.close();

      const up = await cli(["up", "--stack", "local"], { env: cliEnv(dataDir) });
      expect(up.code).to.equal(4);
      expect(up.stderr).to.include(waiting.id).and.include("awaits approval");
      expect(existsSync(stackFiles(dataDir).state)).to.equal(false);
    });
  });

  describe("issue 2's validate", () => {
    let env: NodeJS.ProcessEnv;
    before(() => {
      env = cliEnv(temp.make("cli-"));
    });

    it("validate --stack prod --json exits 0 with no violations, every component, and the three tags on every taggable resource", async () => {
      const run = await cli(["validate", "--stack", "prod", "--json"], { env });

      expect(run.code, run.stderr).to.equal(0);
      const doc = JSON.parse(run.stdout);
      expect(doc.stack).to.equal("prod");
      expect(doc.violations).to.deep.equal([]);
      const types = new Set(doc.resources.map((r: any) => r.type));
      for (const component of COMPONENT_TYPES) expect(types, component).to.include(component);
      const taggable = doc.resources.filter((r: any) => TAGGABLE_TYPES.has(r.type));
      expect(taggable.length).to.be.greaterThan(30);
      for (const r of taggable) {
        expect(r.inputs.tags, r.urn).to.deep.include({ Environment: "prod", Project: PROJECT, ManagedBy: "pulumi" });
      }
    });

    const broken: [string, (doc: Record<string, any>) => void, RegExp][] = [
      ["runs a single task", (doc) => (doc.app.desiredCount = 1), /app\.desiredCount/],
      ["has an invalid CIDR", (doc) => (doc.network.cidr = "10.40.0.0/33"), /network\.cidr/],
      ["writes a secret as a plain value", (doc) => (doc.app.secrets.DATABASE_URL = "postgres://web:hunter2@db/web"), /app\.secrets\.DATABASE_URL/],
      ["has an unknown key", (doc) => (doc.app.colour = "blue"), /unknown key "colour"/],
    ];
    for (const [what, edit, field] of broken) {
      it(`validate --env-dir exits non-zero naming the field when prod ${what}`, async () => {
        const envDir = copyEnvironments(temp.make("envs-"), { prod: edit });

        const run = await cli(["validate", "--stack", "prod", "--env-dir", envDir], { env });

        expect(run.code).to.equal(2);
        expect(run.stderr).to.match(field);
        expect(run.stderr).to.not.include("hunter2");
        expect(stackFrames(run.stderr)).to.deep.equal([]);
      });
    }
  });
});
