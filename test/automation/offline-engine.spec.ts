import { expect } from "chai";
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "fs";
import { tmpdir } from "os";
import * as path from "path";
import { diffProperties, planStep, requiresReplace } from "../../automation/engine/diff";
import { OfflineEngine } from "../../automation/engine/offline";
import { SECRET_MASK, type EngineEvent, type ProgramCallOptions } from "../../automation/engine/port";
import { loadEnvironment, type Environment } from "../../automation/environment";
import { CanceledError, ChangesFoundError, OperationFailedError } from "../../automation/errors";
import { offlineStackDir } from "../../automation/paths";
import { CONFIG_KEYS, type ProgramConfig } from "../../infra/config";
import { standIn } from "../e2e/support";

const FIXTURES = path.join(__dirname, "fixtures");
const PROGRAM = path.join(FIXTURES, "offline-program.ts");
const HANGING_PROGRAM = path.join(FIXTURES, "offline-program-hang.ts");
const THROWING_PROGRAM = path.join(FIXTURES, "offline-program-throw.ts");

const URN = {
  app: "urn:pulumi:local::pulumi-aws-deployer::fixture:index:App::web-local",
  bucket: "urn:pulumi:local::pulumi-aws-deployer::fixture:index:App$aws:s3/bucket:Bucket::web-local-assets",
  task: "urn:pulumi:local::pulumi-aws-deployer::fixture:index:App$aws:ecs/taskDefinition:TaskDefinition::web-local-task",
  parameter: "urn:pulumi:local::pulumi-aws-deployer::fixture:index:App$aws:ssm/parameter:Parameter::web-local-db-password",
};
const SECRETS = ["fixture-api-key-s3cr3t", "fixture-db-password-s3cr3t"];

const env: Environment = loadEnvironment("local");

function config(version: string, edit?: (settings: any) => void): ProgramConfig {
  const settings = structuredClone(env.settings);
  edit?.(settings);
  return { settings, version };
}

const tempDirs: string[] = [];
function tempDir(): string {
  const dir = mkdtempSync(path.join(tmpdir(), "offline-engine-"));
  tempDirs.push(dir);
  return dir;
}

function files(dataDir: string) {
  const dir = offlineStackDir("local", dataDir);
  return { state: path.join(dir, "state.json"), world: path.join(dir, "world.json"), history: path.join(dir, "history.json") };
}

function readJson(file: string): any {
  return JSON.parse(readFileSync(file, "utf8"));
}

function engine(dataDir: string, programPath = PROGRAM): OfflineEngine {
  return new OfflineEngine({ dataDir, programPath });
}

/** Records the events of one call. */
function recorder(): { events: EngineEvent[]; onEvent: (e: EngineEvent) => void } {
  const events: EngineEvent[] = [];
  return { events, onEvent: (e) => events.push(e) };
}

function rejection(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => {
      throw new Error("expected the operation to fail");
    },
    (err) => err,
  );
}

describe("OfflineEngine (test program)", function () {
  this.timeout(60_000);

  /** A data dir holding the fixture stack after one up at 1.0.0; each test takes a copy. */
  let deployedTemplate: string;
  let firstUp: Awaited<ReturnType<OfflineEngine["up"]>>;
  let firstUpEvents: EngineEvent[];

  before(async () => {
    deployedTemplate = tempDir();
    const rec = recorder();
    firstUp = await engine(deployedTemplate).up(env, { config: config("1.0.0"), onEvent: rec.onEvent });
    firstUpEvents = rec.events;
  });

  after(() => {
    for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
  });

  function deployed(): string {
    const dir = tempDir();
    cpSync(deployedTemplate, dir, { recursive: true });
    return dir;
  }

  it("previews every resource as a create on a fresh stack, and writes nothing", async () => {
    const dataDir = tempDir();
    const rec = recorder();

    const result = await engine(dataDir).preview(env, { config: config("1.0.0"), onEvent: rec.onEvent });

    expect(result.engine).to.equal("offline");
    expect(result.changes).to.deep.equal({ create: 4, update: 0, delete: 0, replace: 0, same: 0 });
    expect(result.steps.map((s) => s.urn)).to.deep.equal([URN.app, URN.bucket, URN.task, URN.parameter]);
    const steps = rec.events.filter((e) => e.type === "step");
    expect(steps).to.have.length(4);
    expect(steps.every((e) => e.type === "step" && e.phase === "pre")).to.equal(true);
    expect(rec.events[0]).to.deep.equal({ type: "started", operation: "preview", engine: "offline", stack: "local" });
    expect(rec.events[rec.events.length - 1]).to.include({ type: "summary", result: "succeeded" });
    expect(existsSync(offlineStackDir("local", dataDir))).to.equal(false);
  });

  it("writes the applied resources to state and world on up, with done events and outputs", () => {
    const f = files(deployedTemplate);

    expect(firstUp.engine).to.equal("offline");
    expect(firstUp.changes.create).to.equal(4);
    expect(firstUpEvents.filter((e) => e.type === "step" && e.phase === "done")).to.have.length(4);
    expect(Object.keys(readJson(f.state).resources)).to.deep.equal([URN.app, URN.bucket, URN.task, URN.parameter]);
    expect(readJson(f.world)).to.deep.equal({ resources: readJson(f.state).resources });
    expect(firstUp.outputs.bucketName).to.deep.equal({ value: "web-local-assets", secret: false });
    expect(firstUp.outputs.version).to.deep.equal({ value: "1.0.0", secret: false });
  });

  it("shows no changes when previewing what was just deployed", async () => {
    const result = await engine(deployed()).preview(env, { config: config("1.0.0") });

    expect(result.engine).to.equal("offline");
    expect(result.changes).to.deep.equal({ create: 0, update: 0, delete: 0, replace: 0, same: 4 });
  });

  it("replaces the task definition when the version changes, naming containerDefinitions", async () => {
    const result = await engine(deployed()).preview(env, { config: config("1.1.0") });

    const changed = result.steps.filter((s) => s.op !== "same");
    expect(changed).to.deep.equal([
      { urn: URN.task, type: "aws:ecs/taskDefinition:TaskDefinition", op: "replace", changedProperties: ["containerDefinitions"] },
    ]);
    expect(result.changes.replace).to.equal(1);
  });

  it("refuses an up with expectNoChanges when there are changes, and leaves the state alone", async () => {
    const dataDir = deployed();
    const before = readFileSync(files(dataDir).state);

    const err = await rejection(engine(dataDir).up(env, { config: config("1.1.0"), expectNoChanges: true }));

    expect(err).to.be.instanceOf(ChangesFoundError);
    expect((err as Error).message).to.contain("1 to replace");
    expect(readFileSync(files(dataDir).state).equals(before)).to.equal(true);
  });

  it("reports a hand edit of world.json as drift naming the resource and the property", async () => {
    const dataDir = deployed();
    const f = files(dataDir);
    const world = readJson(f.world);
    world.resources[URN.bucket].outputs.tags.Owner = "someone-in-the-console";
    writeFileSync(f.world, JSON.stringify(world, null, 2));

    const result = await engine(dataDir).drift(env, {});

    expect(result.engine).to.equal("offline");
    expect(result.drifted).to.deep.equal([
      {
        urn: URN.bucket,
        type: "aws:s3/bucket:Bucket",
        kind: "update",
        properties: [{ path: "tags.Owner", kind: "update", state: "platform", live: "someone-in-the-console" }],
      },
    ]);
    expect(result.changes.update).to.equal(1);
  });

  it("writes nothing when checking for drift", async () => {
    const dataDir = deployed();
    const f = files(dataDir);
    const world = readJson(f.world);
    delete world.resources[URN.parameter];
    world.resources[URN.task].inputs.cpu = "512";
    writeFileSync(f.world, JSON.stringify(world, null, 2));
    const before = [f.state, f.world, f.history].map((file) => readFileSync(file));

    const result = await engine(dataDir).drift(env, {});

    expect(result.drifted.map((d) => [d.urn, d.kind])).to.deep.equal([
      [URN.task, "update"],
      [URN.parameter, "delete"],
    ]);
    const after = [f.state, f.world, f.history].map((file) => readFileSync(file));
    after.forEach((bytes, i) => expect(bytes.equals(before[i]), [f.state, f.world, f.history][i]).to.equal(true));
  });

  it("clears drift on refresh by copying the world into the state", async () => {
    const dataDir = deployed();
    const f = files(dataDir);
    const world = readJson(f.world);
    world.resources[URN.bucket].outputs.tags.Owner = "someone-in-the-console";
    delete world.resources[URN.parameter];
    writeFileSync(f.world, JSON.stringify(world, null, 2));
    const e = engine(dataDir);

    const refresh = await e.refresh(env, {});
    const drift = await e.drift(env, {});

    expect(refresh.engine).to.equal("offline");
    expect(refresh.steps.filter((s) => s.op !== "same")).to.deep.equal([
      { urn: URN.bucket, type: "aws:s3/bucket:Bucket", op: "update", changedProperties: ["tags.Owner"] },
      { urn: URN.parameter, type: "aws:ssm/parameter:Parameter", op: "delete", changedProperties: [] },
    ]);
    expect(drift.drifted).to.deep.equal([]);
    expect(readJson(f.state).resources).to.deep.equal(readJson(f.world).resources);
  });

  it("proposes restoring a drifted property once a refresh has brought it into state", async () => {
    const dataDir = deployed();
    const f = files(dataDir);
    const world = readJson(f.world);
    world.resources[URN.bucket].outputs.tags.Owner = "someone-in-the-console";
    writeFileSync(f.world, JSON.stringify(world, null, 2));
    const e = engine(dataDir);
    await e.refresh(env, {});

    const preview = await e.preview(env, { config: config("1.0.0") });

    expect(preview.steps.filter((s) => s.op !== "same")).to.deep.equal([
      { urn: URN.bucket, type: "aws:s3/bucket:Bucket", op: "update", changedProperties: ["tags.Owner"] },
    ]);
  });

  it("changes only the target on a targeted up", async () => {
    const dataDir = deployed();
    const f = files(dataDir);
    const before = readJson(f.state);
    const options: ProgramCallOptions = { config: config("1.1.0", (s) => (s.tags.Owner = "payments")), target: [URN.bucket] };

    const result = await engine(dataDir).up(env, options);

    expect(result.steps.filter((s) => s.op !== "same")).to.deep.equal([
      { urn: URN.bucket, type: "aws:s3/bucket:Bucket", op: "update", changedProperties: ["tags.Owner"] },
    ]);
    const state = readJson(f.state);
    const world = readJson(f.world);
    expect(state.resources[URN.bucket].inputs.tags.Owner).to.equal("payments");
    expect(world.resources[URN.bucket].inputs.tags.Owner).to.equal("payments");
    for (const urn of [URN.app, URN.task, URN.parameter]) {
      expect(state.resources[urn], urn).to.deep.equal(before.resources[urn]);
      expect(world.resources[urn], urn).to.deep.equal(before.resources[urn]);
    }
    // The stack outputs follow the program, as the engine re-registers them on a targeted up too.
    expect(state.outputs.version).to.deep.equal({ value: "1.1.0", secret: false });
  });

  it("empties state and world on destroy, deleting children before their parent", async () => {
    const dataDir = deployed();
    const f = files(dataDir);
    const e = engine(dataDir);

    const result = await e.destroy(env, {});

    expect(result.engine).to.equal("offline");
    expect(result.steps.map((s) => [s.urn, s.op])).to.deep.equal([
      [URN.parameter, "delete"],
      [URN.task, "delete"],
      [URN.bucket, "delete"],
      [URN.app, "delete"],
    ]);
    expect(readJson(f.state).resources).to.deep.equal({});
    expect(readJson(f.world)).to.deep.equal({ resources: {} });
    expect(await e.outputs(env)).to.deep.equal({});
  });

  it("masks secret outputs and writes no secret value to disk", async () => {
    const dataDir = deployed();
    const f = files(dataDir);

    const outputs = await engine(dataDir).outputs(env, { reveal: true });

    expect(firstUp.outputs.apiKey).to.deep.equal({ value: SECRET_MASK, secret: true });
    expect(outputs.apiKey).to.deep.equal({ value: SECRET_MASK, secret: true });
    expect(outputs.bucketName).to.deep.equal({ value: "web-local-assets", secret: false });
    expect(readJson(f.state).resources[URN.parameter].inputs.value).to.equal(SECRET_MASK);
    for (const file of [f.state, f.world, f.history]) {
      const text = readFileSync(file, "utf8");
      for (const secret of SECRETS) expect(text, `${path.basename(file)} holds ${secret}`).not.to.contain(secret);
    }
  });

  it("lists history newest first with the non-secret config of each update", async () => {
    const dataDir = deployed();
    const e = engine(dataDir);
    await e.refresh(env, {});

    const history = await e.history(env);

    expect(history.map((h) => [h.version, h.kind, h.result])).to.deep.equal([
      [2, "refresh", "succeeded"],
      [1, "update", "succeeded"],
    ]);
    expect(history[1].changes).to.include({ create: 4 });
    expect(history[1].config?.["pulumi-aws-deployer:version"]).to.equal("1.0.0");
  });

  it("stops a hanging program when the signal aborts, rejecting with CanceledError and writing nothing", async () => {
    const dataDir = deployed();
    const f = files(dataDir);
    const before = [f.state, f.world, f.history].map((file) => readFileSync(file));
    const controller = new AbortController();
    const rec = recorder();
    let abortedAt = 0;
    const onEvent = (event: EngineEvent) => {
      rec.onEvent(event);
      if (event.type === "diagnostic" && event.diagnostic.message.includes("fixture: hanging")) {
        abortedAt = Date.now();
        controller.abort();
      }
    };

    const err = await rejection(engine(dataDir, HANGING_PROGRAM).up(env, { config: config("1.1.0"), signal: controller.signal, onEvent }));

    expect(err).to.be.instanceOf(CanceledError);
    expect(abortedAt).to.be.greaterThan(0);
    expect(Date.now() - abortedAt).to.be.below(1500);
    expect(rec.events[rec.events.length - 1]).to.include({ type: "summary", result: "canceled" });
    const after = [f.state, f.world, f.history].map((file) => readFileSync(file));
    after.forEach((bytes, i) => expect(bytes.equals(before[i])).to.equal(true));
  });

  it("interrupts the running operation of a stack on cancel(env)", async () => {
    const e = engine(deployed(), HANGING_PROGRAM);
    const onEvent = (event: EngineEvent) => {
      if (event.type === "diagnostic" && event.diagnostic.message.includes("fixture: hanging")) void e.cancel(env);
    };

    const err = await rejection(e.preview(env, { config: config("1.0.0"), onEvent }));

    expect(err).to.be.instanceOf(CanceledError);
  });

  it("fails with the program's own message, without a stack trace, when the program throws", async () => {
    const dataDir = deployed();
    const before = readFileSync(files(dataDir).state);

    const err = await rejection(engine(dataDir, THROWING_PROGRAM).up(env, { config: config("1.1.0") }));

    expect(err).to.be.instanceOf(OperationFailedError);
    expect((err as Error).message).to.contain("fixture: the bucket name is invalid");
    expect((err as Error).message).not.to.match(/\n\s+at /);
    expect(readFileSync(files(dataDir).state).equals(before)).to.equal(true);
    expect((await engine(dataDir).history(env))[0]).to.include({ kind: "update", result: "failed" });
  });

  it("is always available", async () => {
    expect(await engine(tempDir()).available()).to.deep.equal({ ok: true });
  });
});

describe("offline property diffs", () => {
  it("reports top-level keys and one level into objects", () => {
    const paths = diffProperties(
      { tags: { Owner: "a", Team: "x" }, cpu: "256", cidrs: ["10.0.0.0/24"], gone: 1 },
      { tags: { Owner: "b", New: "y", Team: "x" }, cpu: "256", cidrs: ["10.0.1.0/24"] },
    );

    expect(paths).to.deep.equal([
      { path: "cidrs", kind: "update", state: ["10.0.0.0/24"], live: ["10.0.1.0/24"] },
      { path: "gone", kind: "delete", state: 1 },
      { path: "tags.New", kind: "add", live: "y" },
      { path: "tags.Owner", kind: "update", state: "a", live: "b" },
    ]);
  });

  it("omits the values of a secret property", () => {
    expect(diffProperties({ password: SECRET_MASK }, { password: "changed" })).to.deep.equal([{ path: "password", kind: "update" }]);
  });

  it("replaces on a replace-on-change property and updates otherwise", () => {
    expect(requiresReplace("aws:ec2/subnet:Subnet", ["availabilityZone"])).to.equal(true);
    expect(requiresReplace("aws:ec2/subnet:Subnet", ["tags.Name"])).to.equal(false);
    expect(requiresReplace("aws:ecs/taskDefinition:TaskDefinition", ["cpu"])).to.equal(true);
    expect(requiresReplace("aws:ecs/taskDefinition:TaskDefinition", ["tags.Owner"])).to.equal(false);
    expect(requiresReplace("aws:lb/targetGroup:TargetGroup", ["port"])).to.equal(true);
  });

  it("compares new inputs with the state's last known values, ignoring computed outputs", () => {
    const old = { type: "aws:s3/bucket:Bucket", inputs: { bucket: "b" }, outputs: { bucket: "b", arn: "arn:aws:s3:::b" } };

    expect(planStep(old.type, old, { bucket: "b" })).to.deep.equal({ op: "same", changedProperties: [] });
    expect(planStep(old.type, old, { bucket: "c" })).to.deep.equal({ op: "replace", changedProperties: ["bucket"] });
    expect(planStep(old.type, undefined, { bucket: "b" })).to.deep.equal({ op: "create", changedProperties: [] });
  });
});

// Needs the real program (infra/index.ts → infra/stack.ts); everything above runs on the fixture.
describe("OfflineEngine (real infra program, local stack)", function () {
  this.timeout(90_000);

  it("deploys local at 1.0.0 and then previews no changes", async () => {
    const dataDir = mkdtempSync(path.join(tmpdir(), "offline-engine-infra-"));
    try {
      const e = new OfflineEngine({ dataDir });
      const cfg: ProgramConfig = { settings: loadEnvironment("local").settings, version: "1.0.0" };

      const up = await e.up(env, { config: cfg });
      const preview = await e.preview(env, { config: cfg });

      expect(up.engine).to.equal("offline");
      expect(up.changes.create).to.be.greaterThan(10);
      expect(up.steps.some((s) => s.type === "aws:ecs/taskDefinition:TaskDefinition")).to.equal(true);
      expect(preview.changes).to.include({ create: 0, update: 0, delete: 0, replace: 0 });
      expect(preview.changes.same).to.equal(up.changes.create);
      // The program marks the registry password secret; the mocks answer with this stand-in.
      const world = readFileSync(files(dataDir).world, "utf8");
      expect(world).not.to.contain("offline-registry-password");
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});

describe("OfflineEngine stack config", function () {
  this.timeout(120_000);

  it("runs a new version's own image after a rollback pinned a digest: the stack config is written whole", async () => {
    const dataDir = mkdtempSync(path.join(tmpdir(), "offline-config-"));
    try {
      // The stand-in program the real engine's tests run: it pins the image when the config says so.
      const env = standIn("pins", { backend: "file://unused", output: path.join(dataDir, "out.txt"), engine: "offline" });
      const e = new OfflineEngine({ dataDir });
      const v = (version: string, imageDigest?: string) => ({ settings: env.settings, version, imageDigest });
      await e.up(env, { config: v("1.0.0") });
      await e.up(env, { config: v("1.0.0", `sha256:${"ab".repeat(32)}`) });
      expect((await e.outputs(env)).image.value).to.equal(`000000000000.dkr.ecr.us-east-1.amazonaws.com/web@sha256:${"ab".repeat(32)}`);
      await e.up(env, { config: v("3.0.0") });
      expect((await e.outputs(env)).image.value).to.equal("000000000000.dkr.ecr.us-east-1.amazonaws.com/web:3.0.0");
      const kept = readJson(path.join(offlineStackDir("pins", dataDir), "stack-config.json"));
      expect(Object.keys(kept.config)).to.not.include(CONFIG_KEYS.imageDigest);
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
