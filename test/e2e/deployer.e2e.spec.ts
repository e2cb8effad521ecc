/**
 * The whole deployer on the real engine: the CLI (in process, as `npm run <op>` runs it) and the
 * HTTP service, driving the pulumi CLI on the stand-in program, with moto for the deployer's own
 * AWS calls (the account preflight, the ECR scan gate). Walks the life cycle a platform team runs.
 */
import { CreateRepositoryCommand, ECRClient, PutImageCommand, StartImageScanCommand } from "@aws-sdk/client-ecr";
import { expect } from "chai";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "fs";
import * as path from "path";
import { spawn } from "child_process";
import { watch } from "fs";
import { REPO_ROOT } from "../../automation/environment";
import { cli } from "../automation/support/cli";
import { tempDirs } from "../automation/support/temp";
import { startTestServer, type TestServer } from "../api/support/server";
import { imageManifest, requireMotoOrSkip, startMoto, MOTO_ACCOUNT_ID, type Moto } from "../support/moto";
import { checkpoint, engineEnv, lockFiles, removeStackFiles, requirePulumi, standInYaml, uniqueStack } from "./support";

/** Resolves once `file` exists, watching its directory (no polling). */
function fileAppears(file: string): Promise<void> {
  mkdirSync(path.dirname(file), { recursive: true });
  return new Promise((resolve) => {
    const watcher = watch(path.dirname(file), () => {
      if (existsSync(file)) {
        watcher.close();
        resolve();
      }
    });
    if (existsSync(file)) {
      watcher.close();
      resolve();
    }
  });
}

const REPOSITORY = `${MOTO_ACCOUNT_ID}.dkr.ecr.us-east-1.amazonaws.com/web`;
const VERSIONS = ["1.0.0", "2.0.0", "3.0.0"];
/** moto's scan reports one HIGH finding for every image; the gate stops at CRITICAL here. */
const DEPLOY = `deploy: { maxScanSeverity: CRITICAL }`;


/** POSTs a job and resolves with it once it has ended. */
async function job_(t: TestServer, pathname: string, body: object): Promise<any> {
  const res = await t.http().post(pathname).send(body);
  expect(res.status, res.text).to.equal(202);
  return t.done(res.body.id);
}

describe("the deployer on the real engine (e2e: CLI and service, moto for AWS)", function () {
  this.timeout(10 * 60_000);
  const temp = tempDirs();
  const stacks: string[] = [];
  let moto: Moto;
  let work: string;
  let envDir: string;
  let processEnv: NodeJS.ProcessEnv;
  let digestsFile: string;

  before(async function () {
    requirePulumi(this);
    requireMotoOrSkip(this);
    moto = await startMoto();
    work = temp.make("deployer-e2e-");
    envDir = path.join(work, "environments");
    mkdirSync(envDir);
    processEnv = engineEnv(work, { ...moto.env });
    // The images the versions deploy, pushed and scanned in moto's ECR.
    const ecr = new ECRClient({ endpoint: moto.endpoint, region: "us-east-1", credentials: { accessKeyId: "testing", secretAccessKey: "testing" } });
    await ecr.send(new CreateRepositoryCommand({ repositoryName: "web", imageTagMutability: "IMMUTABLE" }));
    const digests: Record<string, string> = {};
    for (const v of VERSIONS) {
      const put = await ecr.send(new PutImageCommand({ repositoryName: "web", imageTag: v, imageManifest: imageManifest(`${v.replace(/\./g, "")}b${v.replace(/\./g, "")}`) }));
      digests[v] = put.image!.imageId!.imageDigest!;
      await ecr.send(new StartImageScanCommand({ repositoryName: "web", imageId: { imageDigest: digests[v] } }));
    }
    // The program reports these as the digests it "pushed", so a rollback finds its image in ECR.
    digestsFile = path.join(work, "digests.json");
    writeFileSync(digestsFile, JSON.stringify(digests));
    ecr.destroy();
  });

  after(async () => {
    await moto?.stop();
    removeStackFiles(stacks);
    temp.cleanup();
  });

  let networks = 0;
  /** An environment file of the stand-in program in the env dir (a VPC range of its own); its output file's path. */
  function environment(prefix: string, accountId = MOTO_ACCOUNT_ID, tags: Record<string, string> = {}): { name: string; output: string } {
    const name = uniqueStack(prefix);
    const cidr = `10.${100 + networks++}.0.0/16`;
    stacks.push(name);
    const output = path.join(work, name, "output.txt");
    const yaml = standInYaml({ backend: `file://${path.join(work, name, "state")}`, output, accountId, deploy: DEPLOY, cidr, tags: { E2EDigests: digestsFile, ...tags } }).replace(
      "image: 000000000000.dkr.ecr.us-east-1.amazonaws.com/web",
      `image: ${REPOSITORY}`,
    );
    writeFileSync(path.join(envDir, `${name}.yaml`), yaml);
    return { name, output };
  }

  describe("through the CLI", () => {
    let name: string;
    let output: string;
    const run = (...argv: string[]) => cli([...argv, "--env-dir", envDir], { env: { ...processEnv, DEPLOYER_DATA_DIR: path.join(work, "cli-data") } });

    before(() => ({ name, output } = environment("cli")));

    it("refuses a stack of another account before any engine call", async () => {
      const other = environment("acct", "210987654321");
      const r = await run("up", "--stack", other.name, "--version", "1.0.0", "--yes");
      expect(r.code, r.stderr).to.equal(1);
      expect(r.stderr).to.contain("210987654321").and.to.contain(MOTO_ACCOUNT_ID);
      expect(existsSync(path.join(work, other.name, "state"))).to.equal(false);
    });

    it("deploys, previews no changes, deploys a new version", async () => {
      const up = await run("up", "--stack", name, "--version", "1.0.0", "--yes");
      expect(up.code, up.stderr).to.equal(0);
      expect(up.stdout).to.contain("pulumi engine");
      expect(readFileSync(output, "utf8")).to.equal(`web@1.0.0 ${REPOSITORY}:1.0.0\n`);
      const preview = await run("preview", "--stack", name, "--version", "1.0.0", "--expect-no-changes");
      expect(preview.code, preview.stderr + preview.stdout).to.equal(0);
      const two = await run("up", "--stack", name, "--version", "2.0.0", "--yes");
      expect(two.code, two.stderr).to.equal(0);
      expect(readFileSync(output, "utf8")).to.equal(`web@2.0.0 ${REPOSITORY}:2.0.0\n`);
    });

    it("rolls back to the previous deployment's recorded image, then a new version runs its own image", async () => {
      const back = await run("rollback", "--stack", name, "--reason", "e2e");
      expect(back.code, back.stderr).to.equal(0);
      expect(readFileSync(output, "utf8")).to.match(new RegExp(`^web@1\\.0\\.0 ${REPOSITORY}@sha256:[0-9a-f]{64}\\n$`));
      const three = await run("up", "--stack", name, "--version", "3.0.0", "--yes");
      expect(three.code, three.stderr).to.equal(0);
      expect(readFileSync(output, "utf8")).to.equal(`web@3.0.0 ${REPOSITORY}:3.0.0\n`);
    });

    it("finds drift made by hand (exit 3, naming the property), and none after a refresh", async () => {
      writeFileSync(output, "edited by hand\n");
      const drift = await run("drift", "--stack", name);
      expect(drift.code, drift.stderr).to.equal(3);
      expect(drift.stdout).to.contain("content");
      const refresh = await run("refresh", "--stack", name);
      expect(refresh.code, refresh.stderr).to.equal(0);
      expect((await run("drift", "--stack", name)).code).to.equal(0);
    });

    it("prints the outputs with the secrets masked, and destroys", async () => {
      const outputs = await run("outputs", "--stack", name, "--json", "--file", path.join(work, "outputs.json"));
      expect(outputs.code, outputs.stderr).to.equal(0);
      const doc = JSON.parse(outputs.stdout);
      const flat = JSON.stringify(doc);
      expect(flat).to.not.contain("pw-3.0.0").and.to.not.contain("deployed 3.0.0");
      expect(flat).to.contain("[secret]");
      const destroy = await run("destroy", "--stack", name, "--yes");
      expect(destroy.code, destroy.stderr).to.equal(0);
      expect(existsSync(output)).to.equal(false);
    });
  });

  describe("Ctrl-C on a terminal", () => {
    it("stops the update gracefully: one interrupt reaches pulumi, the checkpoint is written, no lock or pending operation is left", async () => {
      const { name, output } = environment("ctrlc", MOTO_ACCOUNT_ID, { E2EMarkers: "4", E2EDelayMs: "2000" });
      // The CLI as a terminal runs it: the foreground process group, which Ctrl-C signals whole.
      const child = spawn(process.execPath, ["-r", path.join(REPO_ROOT, "automation", "register.js"), path.join(REPO_ROOT, "automation", "cli", "main.ts"), "up", "--stack", name, "--version", "1.0.0", "--yes", "--env-dir", envDir], {
        cwd: REPO_ROOT,
        env: { ...processEnv, DEPLOYER_DATA_DIR: path.join(work, "ctrlc-data") },
        detached: true,
        stdio: ["ignore", "pipe", "pipe"],
      });
      let stderr = "";
      child.stderr!.setEncoding("utf8").on("data", (d: string) => (stderr += d));
      child.stdout!.resume();
      const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
      // The first resource exists once the update is under way; the markers follow, 2 s apart.
      await fileAppears(output);
      process.kill(-child.pid!, "SIGINT");
      const code = await exited;
      expect(code, stderr).to.not.equal(0);
      expect(stderr).to.contain("interrupting");
      const state = path.join(work, name, "state");
      expect(lockFiles(state, name), stderr).to.deep.equal([]);
      const latest = checkpoint(state, name).checkpoint.latest;
      expect(latest?.pending_operations ?? [], stderr).to.deep.equal([]);
      expect(existsSync(`${output}.marker-3`)).to.equal(false);
    });
  });

  describe("through the HTTP service", () => {
    let t: TestServer;
    let name: string;
    let output: string;

    before(async () => {
      ({ name, output } = environment("svc"));
      t = await startTestServer({ engine: "offline", envDir, processEnv, dataDir: temp.make("deployer-svc-") });
    });
    after(async () => t?.close());

    const job = (pathname: string, body: object) => job_(t, pathname, body);

    /** POSTs a deployment of a slow stack and resolves once the update is under way. */
    async function slowDeployment(prefix: string): Promise<{ name: string; output: string; jobId: string }> {
      const created = environment(prefix, MOTO_ACCOUNT_ID, { E2EMarkers: "4", E2EDelayMs: "2000" });
      const res = await t.http().post(`/v1/stacks/${created.name}/deployments`).send({ version: "1.0.0" });
      expect(res.status, res.text).to.equal(202);
      await fileAppears(created.output);
      return { ...created, jobId: res.body.id };
    }

    it("cancels a running deployment gracefully: the job is canceled, no lock or pending operation is left", async () => {
      const { name, output, jobId } = await slowDeployment("svccan");
      const res = await t.http().post(`/v1/jobs/${jobId}/cancel`).send({});
      expect(res.status, res.text).to.be.oneOf([200, 202]);
      const job = await t.done(jobId);
      expect(job.status, JSON.stringify(job.error)).to.equal("canceled");
      const state = path.join(work, name, "state");
      expect(lockFiles(state, name)).to.deep.equal([]);
      expect(checkpoint(state, name).checkpoint.latest?.pending_operations ?? []).to.deep.equal([]);
      expect(existsSync(`${output}.marker-3`)).to.equal(false);
    });

    it("force-cancels a deployment whose graceful cancel is not enough; unlock then clears the stale lock and the pending creates", async () => {
      const { name, jobId } = await slowDeployment("svckil");
      await t.http().post(`/v1/jobs/${jobId}/cancel`).send({});
      const forced = await t.http().post(`/v1/jobs/${jobId}/cancel`).send({ force: true });
      expect(forced.status, forced.text).to.be.oneOf([200, 202]);
      const job = await t.done(jobId);
      expect(job.status).to.be.oneOf(["canceled", "interrupted"]);
      const unlocked = await t.http().post(`/v1/stacks/${name}/unlock`).send({ clearPendingCreates: true });
      expect(unlocked.status, unlocked.text).to.equal(200);
      const state = path.join(work, name, "state");
      expect(lockFiles(state, name)).to.deep.equal([]);
      expect(checkpoint(state, name).checkpoint.latest?.pending_operations ?? []).to.deep.equal([]);
      const next = await job_(t, `/v1/stacks/${name}/deployments`, { version: "1.0.0" });
      expect(next.status, JSON.stringify(next.error)).to.equal("succeeded");
    });

    it("deploys, rolls back, deploys again, checks drift, shows masked outputs, destroys", async () => {
      const one = await job(`/v1/stacks/${name}/deployments`, { version: "1.0.0" });
      expect(one.status, JSON.stringify(one.error)).to.equal("succeeded");
      expect(one.engine).to.equal("pulumi");
      expect(one.changes).to.include({ create: 1 });
      expect((await job(`/v1/stacks/${name}/deployments`, { version: "2.0.0" })).status).to.equal("succeeded");
      const back = await job(`/v1/stacks/${name}/rollbacks`, { reason: "e2e" });
      expect(back.status, JSON.stringify(back.error)).to.equal("succeeded");
      expect(readFileSync(output, "utf8")).to.match(/^web@1\.0\.0 .+@sha256:/);
      expect((await job(`/v1/stacks/${name}/deployments`, { version: "3.0.0" })).status).to.equal("succeeded");
      expect(readFileSync(output, "utf8")).to.equal(`web@3.0.0 ${REPOSITORY}:3.0.0\n`);

      writeFileSync(output, "edited by hand\n");
      const drift = await job(`/v1/stacks/${name}/drift-checks`, {});
      expect(drift.status).to.equal("succeeded");
      const report = (await t.http().get(`/v1/stacks/${name}/drift`)).body;
      expect(JSON.stringify(report)).to.contain("content");

      const outputs = (await t.http().get(`/v1/stacks/${name}/outputs`)).body;
      expect(JSON.stringify(outputs)).to.not.contain("pw-3.0.0");
      expect(JSON.stringify(outputs)).to.contain("[secret]");

      const destroy = await job(`/v1/stacks/${name}/destroys`, { confirm: name });
      expect(destroy.status, JSON.stringify(destroy.error)).to.equal("succeeded");
      expect(existsSync(output)).to.equal(false);
    });
  });
});
