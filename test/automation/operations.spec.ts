/**
 * Every operation on the offline engine, run the way the CLI and the service run them: a job row,
 * `executeJob`, the real collaborators from `createDeps` (the real `infra` program evaluated under
 * mocks in a child process, the offline scanner and verifier) and a temp data dir.
 *
 * An evaluation of the program takes a second or two, so each describe keeps one stack and moves it
 * forward in `before` hooks; its tests assert on what each step left behind, in order.
 */
import { expect } from "chai";
import { existsSync, readFileSync } from "fs";
import * as path from "path";
import { CONFIG_KEYS } from "../../infra/config";
import { createDeps, type DepsOptions } from "../../automation/deps";
import type { DriftResult } from "../../automation/engine/port";
import type { Environment } from "../../automation/environment";
import { CanceledError, ConflictError, GateError, NotFoundError, TimedOutError } from "../../automation/errors";
import type { JobParams } from "../../automation/jobs/execute";
import { withStackLease } from "../../automation/jobs/lease";
import type { OperationDeps } from "../../automation/operations/context";
import type { GateFinding } from "../../automation/operations/gates";
import { history } from "../../automation/operations/history";
import { outputs } from "../../automation/operations/outputs";
import type { PreviewReport } from "../../automation/operations/preview";
import { openStore, type Job, type Store } from "../../automation/store";
import { copyEnvironments, environment } from "./support/environments";
import { runJob, runOk, stepEvents, type RanJob } from "./support/jobs";
import { readJson, resourceOf, snapshot, stackFiles, TYPES, writeJson, type StackFiles } from "./support/offline-files";
import { startSmokeServer, type SmokeServer } from "./support/smoke-server";
import { tempDirs } from "./support/temp";
import { EXPIRED_IMAGES_FILE } from "../../automation/checks/image-exists";
import { offlineStackDir } from "../../automation/paths";

const LOCAL = environment("local");

function up(version: string, extra: { allowDestroy?: string[]; target?: string[] } = {}): JobParams {
  return { operation: "up", params: { version, ...extra } };
}

function preview(version: string): JobParams {
  return { operation: "preview", params: { version } };
}

/** The steps of a job that change something, as [type, op]. */
function changed(job: Job): [string, string][] {
  return (job.steps ?? []).filter((s) => s.op !== "same").map((s) => [s.type, s.op]);
}

interface Setup {
  readonly dataDir: string;
  readonly store: Store;
  readonly deps: OperationDeps;
  readonly files: StackFiles;
}

describe("operations on the offline engine", function () {
  this.timeout(60_000);
  const temp = tempDirs();
  const stores: Store[] = [];

  /** A fresh data dir, its store, and the real collaborators (nothing read from this process's environment). */
  function setup(options: Omit<DepsOptions, "store" | "dataDir"> = {}): Setup {
    const dataDir = temp.make("operations-");
    const store = openStore(dataDir);
    stores.push(store);
    return { dataDir, store, deps: createDeps({ store, dataDir, env: {}, ...options }), files: stackFiles(dataDir) };
  }

  after(async () => {
    for (const store of stores) await store.close();
    temp.cleanup();
  });

  describe("a stack's lifecycle: preview, up, rollback, drift, refresh, outputs, history, destroy", () => {
    let s: Setup;
    let first: RanJob;
    let second: RanJob;
    let imageAfterSecond: unknown;
    let rolledBack: RanJob;

    before(() => {
      s = setup();
    });

    describe("preview of a fresh stack", () => {
      let ran: RanJob;
      before(async () => {
        ran = await runOk(s.deps, LOCAL, preview("1.0.0"));
      });

      it("plans every resource as a create and finds nothing for the gates to stop on", () => {
        const report = ran.result as PreviewReport;
        expect(report.engine).to.equal("offline");
        expect(report.steps.length).to.be.greaterThan(50);
        expect(report.steps.filter((step) => step.op !== "create")).to.deep.equal([]);
        expect(report.changes).to.deep.equal({ create: report.steps.length, update: 0, delete: 0, replace: 0, same: 0 });
        expect(report.findings).to.deep.equal([]);
        expect(ran.job.changes).to.deep.equal(report.changes);
      });

      it("writes no snapshot", () => {
        expect(existsSync(s.files.dir)).to.equal(false);
      });
    });

    describe("up of the first version", () => {
      before(async () => {
        first = await runOk(s.deps, LOCAL, up("1.0.0"));
      });

      it("records the version, the built image's digest, the config snapshot, the outputs and the changes", async () => {
        const job = (await s.store.getJob(first.job.id))!;
        const state = readJson(s.files.state);
        const image = resourceOf(state, TYPES.image).resource;

        expect(job.version).to.equal("1.0.0");
        expect(job.engine).to.equal("offline");
        expect(job.imageDigest).to.match(/^sha256:[a-f0-9]{64}$/);
        expect(image.outputs.repoDigest).to.equal(`${image.outputs.baseImageName.replace(/:1\.0\.0$/, "")}@${job.imageDigest}`);
        expect(job.config?.[CONFIG_KEYS.version]).to.equal("1.0.0");
        expect(JSON.parse(job.config![CONFIG_KEYS.settings])).to.deep.equal(JSON.parse(JSON.stringify(LOCAL.settings)));
        expect(job.outputs?.url.value).to.match(/^http:\/\/web-local-alb-.*\.elb\.amazonaws\.com$/);
        expect(job.outputs?.taskDefinitionArn.value).to.match(/^arn:aws:ecs:us-east-1:000000000000:task-definition\/web-local:\d+$/);
        expect(job.outputs?.imageRef.value).to.equal(image.outputs.repoDigest);
        expect(job.changes).to.deep.include({ update: 0, delete: 0, replace: 0, same: 0 });
        expect(job.changes!.create).to.equal(Object.keys(state.resources).length);
      });

      it("previews zero changes right after", async () => {
        const ran = await runOk(s.deps, LOCAL, preview("1.0.0"));

        const report = ran.result as PreviewReport;
        expect(report.changes).to.deep.equal({ create: 0, update: 0, delete: 0, replace: 0, same: report.steps.length });
      });

      it("refuses a rollback when there is no earlier deployment, changing nothing", async () => {
        const before = snapshot(s.files);

        const ran = await runJob(s.deps, LOCAL, { operation: "rollback", params: {} });

        expect(ran.job.status).to.equal("failed");
        expect(ran.error).to.be.instanceOf(NotFoundError);
        expect(ran.job.error?.code).to.equal("not_found");
        expect(snapshot(s.files)).to.deep.equal(before);
      });
    });

    describe("up of a second version", () => {
      before(async () => {
        second = await runOk(s.deps, LOCAL, up("2.0.0"));
        imageAfterSecond = resourceOf(readJson(s.files.state), TYPES.image).resource;
      });

      it("replaces the task definition and updates the service (and pushes the new image)", () => {
        expect(changed(second.job)).to.have.deep.members([
          [TYPES.image, "replace"],
          [TYPES.taskDefinition, "replace"],
          [TYPES.service, "update"],
        ]);
        const service = second.job.steps!.find((step) => step.type === TYPES.service)!;
        expect(service.changedProperties).to.include("taskDefinition");
      });

      it("runs the new image in the new task definition, and the service on it", () => {
        const state = readJson(s.files.state);
        const taskDefinition = resourceOf(state, TYPES.taskDefinition).resource;
        const service = resourceOf(state, TYPES.service).resource;

        expect(second.job.imageDigest).to.match(/^sha256:/).and.not.equal(first.job.imageDigest);
        expect(taskDefinition.inputs.containerDefinitions).to.include(second.job.imageDigest);
        expect(service.inputs.taskDefinition).to.equal(taskDefinition.outputs.arn);
        expect(second.job.outputs?.taskDefinitionArn.value).to.equal(taskDefinition.outputs.arn);
      });
    });

    describe("rollback to the previous good deployment", () => {
      before(async () => {
        rolledBack = await runOk(s.deps, LOCAL, { operation: "rollback", params: { reason: "2.0.0 misbehaves" } });
      });

      it("restores the previous version and its image digest", () => {
        const state = readJson(s.files.state);
        const taskDefinition = resourceOf(state, TYPES.taskDefinition).resource;

        expect(rolledBack.job.version).to.equal("1.0.0");
        expect(rolledBack.job.imageDigest).to.equal(first.job.imageDigest);
        expect(taskDefinition.inputs.containerDefinitions).to.include(first.job.imageDigest);
        expect(rolledBack.job.outputs?.taskDefinitionArn).to.deep.equal(first.job.outputs?.taskDefinitionArn);
        expect(rolledBack.job.outputs?.imageRef).to.deep.equal(first.job.outputs?.imageRef);
      });

      it("takes the fast path: only the task definition and the service change, and no image is built", () => {
        expect(changed(rolledBack.job)).to.have.deep.members([
          [TYPES.taskDefinition, "replace"],
          [TYPES.service, "update"],
        ]);
        expect(stepEvents(rolledBack.events).filter((e) => e.type === TYPES.image && e.op !== "same")).to.deep.equal([]);
        expect(rolledBack.events.filter((e) => e.type === "phase" && (e.phase === "image" || e.phase === "scan"))).to.deep.equal([]);
        expect(resourceOf(readJson(s.files.state), TYPES.image).resource).to.deep.equal(imageAfterSecond);
      });

      it("links the rollback to the deployment it replaced and the one it restored", () => {
        expect(rolledBack.job.rollbackOf).to.equal(second.job.id);
        expect(rolledBack.job.rollbackTo).to.equal(first.job.id);
        expect(rolledBack.job.reason).to.equal("2.0.0 misbehaves");
      });

      it("marks the replaced deployment as rolled back, so a second rollback does not return to it", async () => {
        expect((await s.store.getJob(second.job.id))?.rolledBackBy).to.equal(rolledBack.job.id);
        const before = snapshot(s.files);

        const again = await runJob(s.deps, LOCAL, { operation: "rollback", params: {} });

        expect(again.error).to.be.instanceOf(NotFoundError);
        expect(snapshot(s.files)).to.deep.equal(before);
      });
    });

    describe("rollback to a named deployment", () => {
      let toVersion: RanJob;

      it("restores the deployment a version names", async () => {
        toVersion = await runOk(s.deps, LOCAL, { operation: "rollback", params: { to: "2.0.0" } });

        const taskDefinition = resourceOf(readJson(s.files.state), TYPES.taskDefinition).resource;
        expect(toVersion.job).to.deep.include({ version: "2.0.0", imageDigest: second.job.imageDigest, rollbackTo: second.job.id, rollbackOf: rolledBack.job.id });
        expect(taskDefinition.inputs.containerDefinitions).to.include(second.job.imageDigest);
        expect(changed(toVersion.job)).to.have.deep.members([
          [TYPES.taskDefinition, "replace"],
          [TYPES.service, "update"],
        ]);
      });

      it("restores the deployment a job id names", async () => {
        const toId = await runOk(s.deps, LOCAL, { operation: "rollback", params: { to: first.job.id } });

        const taskDefinition = resourceOf(readJson(s.files.state), TYPES.taskDefinition).resource;
        expect(toId.job).to.deep.include({ version: "1.0.0", imageDigest: first.job.imageDigest, rollbackTo: first.job.id, rollbackOf: toVersion.job.id });
        expect(taskDefinition.inputs.containerDefinitions).to.include(first.job.imageDigest);
      });

      it("runs a version built before from its recorded digest instead of rebuilding it", async () => {
        const again = await runOk(s.deps, LOCAL, { operation: "up", params: { version: "2.0.0" } });

        expect(again.job.imageDigest).to.equal(second.job.imageDigest);
        expect(stepEvents(again.events).filter((e) => e.type === TYPES.image && (e.op === "create" || e.op === "replace"))).to.deep.equal([]);
        expect(resourceOf(readJson(s.files.state), TYPES.taskDefinition).resource.inputs.containerDefinitions).to.include(second.job.imageDigest);
      });

      it("refuses a `to` that names no deployment, changing nothing", async () => {
        const before = snapshot(s.files);

        const ran = await runJob(s.deps, LOCAL, { operation: "rollback", params: { to: "9.9.9" } });

        expect(ran.job.status).to.equal("failed");
        expect(ran.error).to.be.instanceOf(NotFoundError);
        expect(ran.error?.message).to.include("9.9.9");
        expect(snapshot(s.files)).to.deep.equal(before);
      });
    });

    describe("drift and refresh", () => {
      let vpcUrn: string;

      it("reports no drift on a clean stack and records the stack as not drifted", async () => {
        const ran = await runOk(s.deps, LOCAL, { operation: "drift" });

        expect((ran.result as DriftResult).drifted).to.deep.equal([]);
        expect(ran.job.drift).to.deep.equal([]);
        expect((await s.store.getStackState("local")).drifted).to.equal(false);
      });

      it("names the resource and the property changed in world.json, and writes no snapshot", async () => {
        const world = readJson(s.files.world);
        const vpc = resourceOf(world, TYPES.vpc);
        vpcUrn = vpc.urn;
        vpc.resource.inputs.tags.Owner = "someone-by-hand";
        vpc.resource.outputs.tags.Owner = "someone-by-hand";
        writeJson(s.files.world, world);
        const before = snapshot(s.files);

        const ran = await runOk(s.deps, LOCAL, { operation: "drift" });

        expect((ran.result as DriftResult).drifted).to.deep.equal([
          { urn: vpcUrn, type: TYPES.vpc, kind: "update", properties: [{ path: "tags.Owner", kind: "update", state: "platform", live: "someone-by-hand" }] },
        ]);
        expect(ran.job.drift).to.deep.equal((ran.result as DriftResult).drifted);
        expect(snapshot(s.files)).to.deep.equal(before);
        expect((await s.store.getStackState("local")).drifted).to.equal(true);
      });

      it("refresh takes what exists into the state, and drift is clear again", async () => {
        const refreshed = await runOk(s.deps, LOCAL, { operation: "refresh" });
        expect(refreshed.job.changes?.update).to.equal(1);
        expect((await s.store.getStackState("local")).drifted).to.equal(false);
        expect(readJson(s.files.state).resources[vpcUrn].outputs.tags.Owner).to.equal("someone-by-hand");

        const ran = await runOk(s.deps, LOCAL, { operation: "drift" });

        expect((ran.result as DriftResult).drifted).to.deep.equal([]);
        expect((await s.store.getStackState("local")).drifted).to.equal(false);
      });
    });

    describe("outputs", () => {
      it("writes them to a file shaped like `terraform output -json`, secret values masked", async () => {
        // The local program has no secret output; give the snapshot one, as a leaked clear value would be.
        const state = readJson(s.files.state);
        state.outputs.databasePassword = { value: "hunter2-clear-text", secret: true };
        writeJson(s.files.state, state);
        const file = path.join(temp.make("outputs-"), "infrastructure-outputs.json");

        const values = await outputs(LOCAL, s.deps.engineFor(LOCAL), { file });

        const doc = readJson(file);
        expect(Object.keys(doc)).to.include.members(["vpcId", "url", "albDnsName", "clusterName", "serviceName", "taskDefinitionArn", "repositoryUrl", "imageRef", "logGroupName", "alarmTopicArn"]);
        expect(doc.url).to.deep.equal({ value: first.job.outputs?.url.value, sensitive: false });
        expect(doc.databasePassword).to.deep.equal({ value: "[secret]", sensitive: true });
        expect(values.databasePassword).to.deep.equal({ value: "[secret]", secret: true });
        expect(readFileSync(file, "utf8")).to.not.include("hunter2");
      });
    });

    describe("history", () => {
      it("lists the deployments newest first, failed ones included, each rollback linked to what it replaced", async () => {
        const entries = await history(s.store, "local");

        const deployments = await s.store.listJobs({ stack: "local", operation: ["up", "rollback", "destroy"] });
        expect(entries.map((e) => e.id)).to.deep.equal(deployments.map((j) => j.id));
        expect([...entries.map((e) => e.id)].sort().reverse()).to.deep.equal(entries.map((e) => e.id));
        expect(entries.map((e) => [e.operation, e.version ?? null, e.status])).to.deep.equal([
          ["rollback", null, "failed"],
          ["up", "2.0.0", "succeeded"],
          ["rollback", "1.0.0", "succeeded"],
          ["rollback", "2.0.0", "succeeded"],
          ["rollback", null, "failed"],
          ["rollback", "1.0.0", "succeeded"],
          ["up", "2.0.0", "succeeded"],
          ["rollback", null, "failed"],
          ["up", "1.0.0", "succeeded"],
        ]);
        const rollback = entries.find((e) => e.id === rolledBack.job.id)!;
        expect(rollback).to.deep.include({ rollbackOf: second.job.id, rollbackTo: first.job.id, engine: "offline", requestedBy: "tester" });
        expect(entries.find((e) => e.id === second.job.id)?.changes).to.deep.include({ replace: 2, update: 1 });
      });
    });

    describe("destroy", () => {
      let destroyed: RanJob;
      let count: number;
      before(async () => {
        count = Object.keys(readJson(s.files.state).resources).length;
        destroyed = await runOk(s.deps, LOCAL, { operation: "destroy", params: {} });
      });

      it("deletes every resource from the state and the world", () => {
        expect(readJson(s.files.state).resources).to.deep.equal({});
        expect(readJson(s.files.world).resources).to.deep.equal({});
        expect(destroyed.job.changes).to.deep.equal({ create: 0, update: 0, delete: count, replace: 0, same: 0 });
      });

      it("leaves no outputs", async () => {
        expect(await outputs(LOCAL, s.deps.engineFor(LOCAL))).to.deep.equal({});
      });
    });
  });

  describe("review gates", () => {
    let s: Setup;
    /** local with a database, and deploy.protect naming RDS instances. */
    let withDatabase: Environment;
    /** The same without the database. */
    let withoutDatabase: Environment;
    let databaseUrn: string;

    before(async () => {
      s = setup();
      const protect = (doc: Record<string, any>) => (doc.deploy.protect = ["aws:rds/instance:Instance"]);
      withDatabase = environment("local", copyEnvironments(temp.make("envs-"), {
        local: (doc) => {
          protect(doc);
          doc.database = { engine: "postgres", engineVersion: "16", instanceClass: "db.t4g.micro" };
        },
      }));
      withoutDatabase = environment("local", copyEnvironments(temp.make("envs-"), { local: protect }));
      await runOk(s.deps, withDatabase, up("1.0.0"));
      databaseUrn = resourceOf(readJson(s.files.state), TYPES.database).urn;
    });

    it("stops a deployment that would delete a protected resource (exit code 4), changing nothing", async () => {
      const before = snapshot(s.files);

      const ran = await runJob(s.deps, withoutDatabase, up("1.0.0"));

      expect(ran.job.status).to.equal("failed");
      expect(ran.error).to.be.instanceOf(GateError);
      expect(ran.error?.exitCode).to.equal(4);
      expect(ran.job.error?.code).to.equal("blocked");
      expect(ran.error?.message).to.include("would be deleted").and.include("--allow-destroy");
      const findings = (ran.error?.details as { findings: GateFinding[] }).findings;
      expect(findings).to.deep.equal([{ gate: "protected-resource", urn: databaseUrn, message: findings[0].message }]);
      expect(snapshot(s.files)).to.deep.equal(before);
    });

    it("refuses to destroy a stack holding protected resources unless they are named", async () => {
      const before = snapshot(s.files);

      const ran = await runJob(s.deps, withDatabase, { operation: "destroy", params: {} });

      expect(ran.error).to.be.instanceOf(GateError);
      expect(ran.error?.message).to.include(databaseUrn);
      expect(snapshot(s.files)).to.deep.equal(before);
    });

    it("stops a deployment whose program breaks a policy rule, naming the rule", async () => {
      const before = snapshot(s.files);
      const deps: OperationDeps = {
        ...s.deps,
        evaluate: async (config, signal) => {
          const evaluation = await s.deps.evaluate(config, signal);
          const resources = evaluation.resources.map((r) =>
            r.type === TYPES.repository ? { ...r, inputs: { ...r.inputs, imageScanningConfiguration: { scanOnPush: false } } } : r,
          );
          return { ...evaluation, resources };
        },
      };

      const ran = await runJob(deps, withDatabase, up("1.0.0"));

      expect(ran.error).to.be.instanceOf(GateError);
      expect(ran.error?.message).to.include("[ecr-scan-and-immutable]");
      const findings = (ran.error?.details as { findings: GateFinding[] }).findings;
      expect(findings.map((f) => f.gate)).to.deep.equal(["policy"]);
      expect(snapshot(s.files)).to.deep.equal(before);
    });

    it("lets the deletion through when the URN is named in allowDestroy", async () => {
      const ran = await runOk(s.deps, withoutDatabase, up("1.0.0", { allowDestroy: [databaseUrn] }));

      expect(readJson(s.files.state).resources[databaseUrn]).to.equal(undefined);
      expect(ran.job.steps?.find((step) => step.urn === databaseUrn)?.op).to.equal("delete");
    });

    it("stops a fresh stack whose creates exceed deploy.bounds.maxCreates, creating nothing", async () => {
      const fresh = setup();
      const bounded = environment("local", copyEnvironments(temp.make("envs-"), { local: (doc) => (doc.deploy.bounds = { maxCreates: 1 }) }));

      const ran = await runJob(fresh.deps, bounded, up("1.0.0"));

      expect(ran.error).to.be.instanceOf(GateError);
      expect(ran.error?.message).to.include("above deploy.bounds.maxCreates = 1");
      expect(existsSync(fresh.files.dir)).to.equal(false);
    });
  });

  describe("the image gate", () => {
    let s: Setup;
    let original: { taskDefinition: unknown; service: unknown };
    let vulnerable: RanJob;

    before(async () => {
      s = setup();
      await runOk(s.deps, LOCAL, up("1.0.0"));
      const state = readJson(s.files.state);
      original = { taskDefinition: resourceOf(state, TYPES.taskDefinition).resource, service: resourceOf(state, TYPES.service).resource };
      writeJson(s.files.scanFindings, {
        "6.6.6": [
          { name: "CVE-2099-0001", severity: "CRITICAL" },
          { name: "CVE-2099-0002", severity: "LOW" },
        ],
      });
      vulnerable = await runJob(s.deps, LOCAL, up("6.6.6"));
    });

    it("fails the deployment listing the findings at or above the threshold", () => {
      expect(vulnerable.job.status).to.equal("failed");
      expect(vulnerable.error).to.be.instanceOf(GateError);
      expect(vulnerable.error?.message).to.include("CVE-2099-0001 (CRITICAL)").and.not.include("CVE-2099-0002");
      expect(vulnerable.job.error?.code).to.equal("blocked");
    });

    it("never changes the ECS service: the task definition and service in state are still 1.0.0's", () => {
      const state = readJson(s.files.state);
      expect(resourceOf(state, TYPES.taskDefinition).resource).to.deep.equal(original.taskDefinition);
      expect(resourceOf(state, TYPES.service).resource).to.deep.equal(original.service);
      expect(stepEvents(vulnerable.events).filter((e) => e.phase === "done" && e.op !== "same" && (e.type === TYPES.taskDefinition || e.type === TYPES.service))).to.deep.equal([]);
    });

    it("records the pushed digest on the failed job: the tag is taken in ECR", () => {
      expect(vulnerable.job.imageDigest).to.match(/^sha256:[a-f0-9]{64}$/);
    });

    it("refuses to deploy the blocked version again before anything runs, naming the way out", async () => {
      const before = snapshot(s.files);
      const again = await runJob(s.deps, LOCAL, up("6.6.6"));
      expect(again.job.status).to.equal("failed");
      expect(again.error).to.be.instanceOf(GateError);
      expect(again.error?.message).to.include(`job ${vulnerable.job.id}`).and.to.include("ECR tags are immutable").and.to.include("deploy a new version");
      expect(again.events.flatMap((e) => (e.type === "phase" ? [e.phase] : []))).to.deep.equal(["preflight"]);
      expect(snapshot(s.files)).to.deep.equal(before);
    });

    it("pushed the image, then scanned it, before anything else", () => {
      const image = resourceOf(readJson(s.files.state), TYPES.image).resource;
      expect(image.inputs.imageName).to.match(/:6\.6\.6$/);
      const phases = vulnerable.events.flatMap((e) => (e.type === "phase" ? [e.phase] : []));
      expect(phases).to.deep.equal(["preflight", "preview", "review", "image", "scan"]);
    });
  });

  describe("rollback to an image ECR's lifecycle policy has expired", () => {
    it("refuses before anything changes, naming the image and the way out", async () => {
      const s = setup();
      const first = await runOk(s.deps, LOCAL, up("1.0.0"));
      await runOk(s.deps, LOCAL, up("2.0.0"));
      writeJson(path.join(offlineStackDir("local", s.dataDir), EXPIRED_IMAGES_FILE), [first.job.imageDigest]);
      const before = snapshot(s.files);

      const ran = await runJob(s.deps, LOCAL, { operation: "rollback", params: { reason: "2.0.0 misbehaves" } });

      expect(ran.job.status).to.equal("failed");
      expect(ran.error).to.be.instanceOf(GateError);
      expect(ran.error?.message).to.include(`${first.job.imageDigest}, is no longer in ECR`).and.to.include("deploy 1.0.0's source as a new version");
      expect(snapshot(s.files)).to.deep.equal(before);
    });
  });

  describe("rebuilding a version that is already in ECR", () => {
    it("refuses a changed build of the running version after the preview, before anything changes, naming the way out", async () => {
      const s = setup();
      const first = await runOk(s.deps, LOCAL, up("1.0.0"));
      // The build changes (here: the Dockerfile named explicitly), so the program would build and push 1.0.0 again.
      const edited = environment("local", copyEnvironments(temp.make("envs-"), { local: (doc) => (doc.app.build = { context: "examples/app", dockerfile: "Dockerfile" }) }));
      const before = snapshot(s.files);

      const again = await runJob(s.deps, edited, up("1.0.0"));

      expect(again.job.status).to.equal("failed");
      expect(again.error).to.be.instanceOf(GateError);
      expect(again.error?.message).to.include(`version 1.0.0 is already in ECR (${first.job.imageDigest}`).and.to.include("deploy it as a new version");
      expect(again.events.flatMap((e) => (e.type === "phase" ? [e.phase] : []))).to.deep.equal(["preflight", "preview"]);
      expect(snapshot(s.files)).to.deep.equal(before);
      // The unchanged build of the same version still deploys (nothing to push).
      expect((await runJob(s.deps, LOCAL, up("1.0.0"))).job.status).to.equal("succeeded");
    });

    it("still deploys a version whose earlier attempt stopped before the push", async () => {
      const s = setup();
      const strict = environment("local", copyEnvironments(temp.make("envs-"), { local: (doc) => (doc.deploy.bounds = { maxCreates: 0 }) }));
      const stopped = await runJob(s.deps, strict, up("3.0.0"));
      expect(stopped.job.status).to.equal("failed");
      expect(stopped.events.flatMap((e) => (e.type === "phase" ? [e.phase] : []))).to.not.include("image");

      expect((await runJob(s.deps, LOCAL, up("3.0.0"))).job.status).to.equal("succeeded");
    });
  });

  describe("verification failure with automatic rollback", () => {
    let s: Setup;
    let server: SmokeServer;
    let good: RanJob;
    let goodTaskDefinition: unknown;
    let failed: RanJob;
    let rollback: Job;

    before(async () => {
      server = await startSmokeServer(200);
      // One attempt per smoke test: the deadline is already past when the first answer is wrong.
      s = setup({ env: { DEPLOYER_SMOKE_BASE_URL: server.url }, smoke: { smokeDeadlineMs: 0, smokeIntervalMs: 0, requestTimeoutMs: 5_000 } });
      good = await runOk(s.deps, LOCAL, up("1.0.0"));
      goodTaskDefinition = resourceOf(readJson(s.files.state), TYPES.taskDefinition).resource;
      // 2.0.0 is broken; the rollback puts the healthy 1.0.0 back, so the app heals when it starts.
      server.status = 500;
      failed = await runJob(s.deps, LOCAL, up("2.0.0"), {
        onEvent: (event) => {
          if (event.type === "phase" && event.phase === "rollback") server.status = 200;
        },
      });
      rollback = (await s.store.getJob(failed.job.rolledBackBy ?? ""))!;
    });

    after(() => server.close());

    it("runs the smoke tests against DEPLOYER_SMOKE_BASE_URL", () => {
      const smoke = good.events.find((e) => e.type === "check" && e.name === "smoke GET /health");
      expect(smoke).to.deep.include({ ok: true });
      expect(server.requests[0]).to.equal("GET /health");
    });

    it("fails the deployment saying verification failed and it was rolled back automatically", () => {
      expect(failed.job.status).to.equal("failed");
      expect(failed.job.error?.message).to.match(/verification failed: smoke GET \/health: GET \/health → 500, expected 200/);
      expect(failed.job.error?.message).to.match(/rolled back automatically to 1\.0\.0/);
    });

    it("records a separate rollback job linked to the failed deployment, saying why", () => {
      expect(rollback).to.not.equal(undefined);
      expect(rollback).to.deep.include({
        operation: "rollback",
        status: "succeeded",
        version: "1.0.0",
        imageDigest: good.job.imageDigest,
        rollbackOf: failed.job.id,
        autoRollbackOf: failed.job.id,
        rollbackTo: good.job.id,
      });
      expect(rollback.reason).to.match(/^automatic: verification failed/);
    });

    it("keeps the rollback's own event log", async () => {
      const events = await s.store.listEvents(rollback.id);
      expect(events.map((e) => e.type)).to.include("phase");
      expect(events.some((e) => e.type === "step")).to.equal(true);
    });

    it("marks the failed deployment as rolled back by that job", () => {
      expect(failed.job.rolledBackBy).to.equal(rollback.id);
    });

    it("puts 1.0.0's task definition back through the fast path", () => {
      expect(resourceOf(readJson(s.files.state), TYPES.taskDefinition).resource).to.deep.equal(goodTaskDefinition);
      expect(changed(rollback)).to.have.deep.members([
        [TYPES.taskDefinition, "replace"],
        [TYPES.service, "update"],
      ]);
    });

    it("shows in history newest first: the rollback, the failed deployment, the good one", async () => {
      expect((await history(s.store, "local")).map((e) => [e.id, e.status])).to.deep.equal([
        [rollback.id, "succeeded"],
        [failed.job.id, "failed"],
        [good.job.id, "succeeded"],
      ]);
    });

    it("makes the rollback the last good deployment", async () => {
      expect((await s.store.lastGoodDeployment("local"))?.id).to.equal(rollback.id);
    });
  });

  describe("cancel and timeout", () => {
    let s: Setup;

    before(async () => {
      s = setup();
      await runOk(s.deps, LOCAL, up("1.0.0"));
    });

    it("cancels a running up when its signal aborts: canceled, promptly, state untouched", async () => {
      const before = snapshot(s.files);
      const controller = new AbortController();
      let engineStarted!: () => void;
      const started = new Promise<void>((resolve) => (engineStarted = resolve));

      const running = runJob(s.deps, LOCAL, up("3.0.0"), {
        signal: controller.signal,
        onEvent: (event) => {
          if (event.type === "started") engineStarted();
        },
      });
      await started;
      const abortedAt = Date.now();
      controller.abort();
      const ran = await running;

      expect(Date.now() - abortedAt).to.be.below(2_500);
      expect(ran.job.status).to.equal("canceled");
      expect(ran.error).to.be.instanceOf(CanceledError);
      expect(ran.job.error?.code).to.equal("canceled");
      expect(snapshot(s.files)).to.deep.equal(before);
    });

    it("times an operation out when it exceeds its timeout: timed_out, state untouched", async () => {
      const before = snapshot(s.files);

      const ran = await runJob(s.deps, LOCAL, up("4.0.0"), { timeoutMs: 50 });

      expect(ran.job.status).to.equal("timed_out");
      expect(ran.error).to.be.instanceOf(TimedOutError);
      expect(ran.job.error?.message).to.match(/exceeded its timeout of 50ms/);
      expect(snapshot(s.files)).to.deep.equal(before);
    });
  });

  describe("the stack lease", () => {
    it("refuses to run while another owner holds the stack, naming the holder", async () => {
      const store = openStore(temp.make("lease-"));
      stores.push(store);
      await store.acquireLease("local", { owner: "service:deployer-1", ttlMs: 60_000, jobId: "job_01held" });
      let ran = false;

      const err = await withStackLease(store, "local", "cli:tester@host:1", async () => {
        ran = true;
      }).then(() => undefined, (e: unknown) => e);

      expect(err).to.be.instanceOf(ConflictError);
      expect((err as Error).message).to.include("service:deployer-1").and.include("job_01held");
      expect(ran).to.equal(false);
    });

    it("releases the lease when the function is done, so the next owner gets it", async () => {
      const store = openStore(temp.make("lease-"));
      stores.push(store);

      await withStackLease(store, "local", "cli:first@host:1", async () => undefined);

      expect(await store.getLease("local")).to.equal(undefined);
      expect((await store.acquireLease("local", { owner: "cli:second@host:2", ttlMs: 60_000 })).owner).to.equal("cli:second@host:2");
    });
  });
});
