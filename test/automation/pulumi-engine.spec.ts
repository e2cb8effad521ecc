/**
 * The pulumi engine through its seam: a fake workspace factory records every call and its options,
 * and plays back Automation API events and failures built the way the SDK builds them. No pulumi
 * CLI is needed; the CLI lookup tests use empty PATHs and tiny fake `pulumi` scripts.
 */
import { expect } from "chai";
import { execFileSync } from "child_process";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "fs";
import { hostname, tmpdir } from "os";
import * as path from "path";
import {
  CommandError,
  ConcurrentUpdateError,
  StackAlreadyExistsError,
  StackNotFoundError,
  type DestroyOptions,
  type EngineEvent as PulumiEngineEvent,
  type OpMap,
  type OutputMap,
  type PreviewOptions,
  type PreviewResult,
  type StackSettings,
  type RefreshOptions,
  type StepEventMetadata,
  type UpdateSummary,
  type UpOptions,
} from "@pulumi/pulumi/automation";
import { parseEnvironment, type Environment } from "../../automation/environment";
import {
  CanceledError,
  ChangesFoundError,
  ConfigError,
  ConflictError,
  DeployerError,
  EngineUnavailableError,
  NotFoundError,
  OperationFailedError,
} from "../../automation/errors";
import { stackConfig } from "../../automation/program/evaluate";
import { redactSecrets } from "../../automation/redact";
import type { EngineEvent, ProgramCallOptions } from "../../automation/engine/port";
import { PulumiEngine, resolveBackendUrl, type StackLike, type WorkspaceArgs } from "../../automation/engine/pulumi";
import { findPulumiOnPath } from "../../automation/engine/pulumi-cli";
import { firstErrorLines, MIN_PULUMI_VERSION } from "../../automation/engine/pulumi-errors";
import { changesFromOpMap, stepOp } from "../../automation/engine/pulumi-events";
import { CONFIG_KEYS } from "../../infra/config";

// The SDK builds its errors from a CommandResult with `createCommandError` (both internal, both
// exported by their modules): build them the same way.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { createCommandError } = require("@pulumi/pulumi/automation/errors") as { createCommandError: (result: unknown) => CommandError };
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { CommandResult } = require("@pulumi/pulumi/automation/cmd") as { CommandResult: new (stdout: string, stderr: string, code: number, err?: Error) => unknown };

function commandError(stderr: string, code = 255, err?: Error): CommandError {
  return createCommandError(new CommandResult("", stderr, code, err));
}

const ENV_YAML = (backend: string, secretsProvider = "passphrase") => `
engine: pulumi
backend: ${backend}
secretsProvider: ${secretsProvider}
aws: { region: us-east-1, accountId: "210987654321" }
network: { cidr: 10.10.0.0/16, availabilityZones: 2, natGateways: single }
app:
  name: web
  image: 210987654321.dkr.ecr.us-east-1.amazonaws.com/web
  port: 8080
  cpu: 256
  memory: 512
  desiredCount: 1
  autoscaling: { min: 1, max: 2, cpuTarget: 70 }
  healthCheck: { path: /health }
tags: { Owner: platform }
`;

const PASSPHRASE = "correct-horse-battery-staple";
const AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

type Call = { readonly method: string; readonly args: readonly unknown[] };

/** A stack that records every call and plays back what a test scripts. */
class FakeStack implements StackLike {
  readonly calls: Call[] = [];
  /** Fed to `onEvent` by every operation before it settles. */
  events: PulumiEngineEvent[] = [];
  opMap: OpMap = {};
  outputMap: OutputMap = {};
  historyList: UpdateSummary[] = [];
  /** Thrown by the next operation (after its events). */
  failure?: unknown;
  /** Called while an operation runs, before its events: lets a test abort mid-flight. */
  during?: () => void;

  constructor(readonly name: string) {}

  methods(): string[] {
    return this.calls.map((c) => c.method);
  }

  optionsOf(method: string): Record<string, unknown> {
    const call = this.calls.find((c) => c.method === method);
    if (!call) throw new Error(`${method} was not called (calls: ${this.methods().join(", ")})`);
    return call.args[0] as Record<string, unknown>;
  }

  private async operate(method: string, opts: { onEvent?: (e: PulumiEngineEvent) => void } | undefined): Promise<void> {
    this.calls.push({ method, args: [opts] });
    this.during?.();
    for (const e of this.events) opts?.onEvent?.(e);
    if (this.failure !== undefined) throw this.failure;
  }

  private summary(kind: UpdateSummary["kind"]): UpdateSummary {
    return { kind, startTime: new Date(0), endTime: new Date(1000), message: "", environment: {}, config: {}, result: "succeeded", version: 1, resourceChanges: this.opMap };
  }

  /** The stack settings file; `saveStackSettings` replaces it. */
  settings: StackSettings = { encryptionSalt: "v1:salt" };
  /**
   * What `pulumi stack output --json` prints without and with `--show-secrets`; by default made
   * from `outputMap` (a secret key masked whole).
   */
  outputPrints?: { masked: Record<string, unknown>; revealed: Record<string, unknown> };

  readonly workspace = {
    workDir: "/program",
    envVars: {} as Record<string, string>,
    stackSettings: async (_name: string): Promise<StackSettings> => ({ ...this.settings }),
    saveStackSettings: async (_name: string, settings: StackSettings): Promise<void> => {
      this.calls.push({ method: "saveStackSettings", args: [settings] });
      this.settings = settings;
    },
    pulumiCommand: {
      run: async (args: string[]) => {
        if (args[0] !== "stack" || args[1] !== "output") throw new Error(`unexpected command pulumi ${args.join(" ")}`);
        this.calls.push({ method: "outputs", args: [args] });
        if (this.failure !== undefined) throw this.failure;
        const prints = this.outputPrints ?? {
          masked: Object.fromEntries(Object.entries(this.outputMap).map(([k, o]) => [k, o.secret ? "[secret]" : o.value])),
          revealed: Object.fromEntries(Object.entries(this.outputMap).map(([k, o]) => [k, o.value])),
        };
        return { stdout: JSON.stringify(args.includes("--show-secrets") ? prints.revealed : prints.masked), stderr: "", code: 0 };
      },
    } as unknown as StackLike["workspace"]["pulumiCommand"],
  };
  async preview(opts?: PreviewOptions): Promise<PreviewResult> {
    await this.operate("preview", opts);
    return { stdout: "", stderr: "", changeSummary: this.opMap };
  }
  async up(opts?: UpOptions) {
    await this.operate("up", opts);
    return { stdout: "", stderr: "", outputs: this.outputMap, summary: this.summary("update") };
  }
  async refresh(opts?: RefreshOptions) {
    await this.operate("refresh", opts);
    return { stdout: "", stderr: "", summary: this.summary("refresh") };
  }
  async previewRefresh(opts?: RefreshOptions): Promise<PreviewResult> {
    await this.operate("previewRefresh", opts);
    return { stdout: "", stderr: "", changeSummary: this.opMap };
  }
  async destroy(opts?: DestroyOptions) {
    await this.operate("destroy", opts);
    return { stdout: "", stderr: "", summary: this.summary("destroy") };
  }
  async history(pageSize?: number, page?: number, showSecrets?: boolean): Promise<UpdateSummary[]> {
    this.calls.push({ method: "history", args: [pageSize, page, showSecrets] });
    return this.historyList;
  }
  /** What `exportStack` returns: a deployment with these pending operations. */
  pendingOperations: { resource: { urn: string; type: string }; type: string }[] = [];

  /** What `pulumi cancel` does to the backend (a DIY backend: delete the lock files). */
  onCancel?: () => void;

  async cancel(): Promise<void> {
    this.calls.push({ method: "cancel", args: [] });
    this.onCancel?.();
  }
  async exportStack() {
    this.calls.push({ method: "exportStack", args: [] });
    return { version: 3, deployment: { pending_operations: this.pendingOperations } };
  }
}

interface Harness {
  readonly engine: PulumiEngine;
  readonly stack: FakeStack;
  readonly opened: WorkspaceArgs[];
  readonly env: Environment;
  readonly config: ProgramCallOptions["config"];
  cliLookups: number;
}

let tmp: string;

function harness(opts: { backend?: string; secretsProvider?: string; processEnv?: NodeJS.ProcessEnv } = {}): Harness {
  const env = parseEnvironment("dev", ENV_YAML(opts.backend ?? `file://${path.join(tmp, "state")}`, opts.secretsProvider), "dev.yaml");
  const stack = new FakeStack(env.name);
  const opened: WorkspaceArgs[] = [];
  const h: Harness = {
    stack,
    opened,
    env,
    config: { settings: env.settings, version: "1.4.2" },
    cliLookups: 0,
    engine: undefined as unknown as PulumiEngine,
  };
  (h as { engine: PulumiEngine }).engine = new PulumiEngine({
    repoRoot: tmp,
    env: opts.processEnv ?? { PATH: "", PULUMI_CONFIG_PASSPHRASE: PASSPHRASE, AWS_SECRET_ACCESS_KEY: AWS_SECRET },
    pulumiCommand: async () => {
      h.cliLookups++;
      return { command: "pulumi", version: null };
    },
    workspaceFactory: async (args) => {
      opened.push(args);
      return stack;
    },
  });
  return h;
}

function meta(op: StepEventMetadata["op"], name: string, extra: Partial<StepEventMetadata> = {}): StepEventMetadata {
  const type = extra.type ?? "test:index:File";
  return { op, urn: `urn:pulumi:dev::pulumi-aws-deployer::${type}::${name}`, type, provider: "", ...extra };
}

function state(outputs: Record<string, unknown>) {
  return { type: "test:index:File", urn: "urn", id: "id", parent: "", inputs: {}, outputs, provider: "" };
}

let seq = 0;
function ev(e: Omit<PulumiEngineEvent, "sequence" | "timestamp">): PulumiEngineEvent {
  return { sequence: seq++, timestamp: 0, ...e };
}

function collect(): { events: EngineEvent[]; onEvent: (e: EngineEvent) => void } {
  const events: EngineEvent[] = [];
  return { events, onEvent: (e) => events.push(e) };
}

async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (err) {
    return err;
  }
  throw new Error("expected a rejection");
}

describe("PulumiEngine", () => {
  beforeEach(() => {
    tmp = mkdtempSync(path.join(tmpdir(), "pulumi-engine-"));
    // The program directory the engine runs (repoRoot): recovery reads its project name.
    writeFileSync(path.join(tmp, "Pulumi.yaml"), "name: pulumi-aws-deployer\nruntime: nodejs\n");
  });
  afterEach(() => {
    rmSync(tmp, { recursive: true, force: true });
  });

  describe("workspace", () => {
    it("opens the environment's stack on the repository's Pulumi.yaml with the backend URL, no update check and transpile-only", async () => {
      const h = harness();
      await h.engine.preview(h.env, { config: h.config });
      expect(h.opened).to.have.length(1);
      const args = h.opened[0];
      expect(args.stackName).to.equal("dev");
      expect(args.workDir).to.equal(tmp);
      expect(args.envVars.PULUMI_BACKEND_URL).to.equal(`file://${path.join(tmp, "state")}`);
      expect(args.envVars.PULUMI_SKIP_UPDATE_CHECK).to.equal("true");
      expect(args.envVars.PULUMI_NODEJS_TRANSPILE_ONLY).to.equal("true");
    });

    it("tells the factory a stack it opened before is known (no `stack select` needed), until an operation on it fails", async () => {
      const h = harness();
      await h.engine.preview(h.env, { config: h.config });
      await h.engine.up(h.env, { config: h.config });
      expect(h.opened.map((a) => a.known === true)).to.deep.equal([false, true]);
      h.stack.failure = new Error("no stack named 'dev' found");
      await rejection(h.engine.preview(h.env, { config: h.config }));
      h.stack.failure = undefined;
      await h.engine.preview(h.env, { config: h.config });
      expect(h.opened.map((a) => a.known === true)).to.deep.equal([false, true, true, false]);
    });

    it("resolves a relative file:// backend against the repository root and leaves s3:// alone", async () => {
      const h = harness({ backend: "file://.deployer/state" });
      await h.engine.preview(h.env, { config: h.config });
      expect(h.opened[0].envVars.PULUMI_BACKEND_URL).to.equal(`file://${path.join(tmp, ".deployer", "state")}`);
      expect(resolveBackendUrl("s3://acme-state/web?region=us-east-1", tmp)).to.equal("s3://acme-state/web?region=us-east-1");
      expect(resolveBackendUrl("file:///var/state", tmp)).to.equal("file:///var/state");
      expect(resolveBackendUrl("file://~/state", tmp)).to.equal("file://~/state");
    });

    it("passes the environment's secrets provider, and the passphrase from the process environment", async () => {
      const h = harness();
      await h.engine.preview(h.env, { config: h.config });
      expect(h.opened[0].secretsProvider).to.equal("passphrase");
      expect(h.opened[0].envVars.PULUMI_CONFIG_PASSPHRASE).to.equal(PASSPHRASE);

      const kms = harness({ backend: "s3://acme-state/web?region=us-east-1", secretsProvider: "awskms://alias/pulumi?region=us-east-1", processEnv: { PATH: "" } });
      await kms.engine.preview(kms.env, { config: kms.config });
      expect(kms.opened[0].secretsProvider).to.equal("awskms://alias/pulumi?region=us-east-1");
      expect(kms.opened[0].envVars).to.not.have.property("PULUMI_CONFIG_PASSPHRASE");
    });

    it("refuses a passphrase stack without PULUMI_CONFIG_PASSPHRASE, naming the variable, before looking for the CLI", async () => {
      const h = harness({ processEnv: { PATH: "" } });
      const err = await rejection(h.engine.preview(h.env, { config: h.config }));
      expect(err).to.be.instanceOf(ConfigError);
      expect((err as Error).message).to.contain("PULUMI_CONFIG_PASSPHRASE");
      expect(h.cliLookups).to.equal(0);
      expect(h.opened).to.have.length(0);
    });

    it("accepts PULUMI_CONFIG_PASSPHRASE_FILE instead, and refuses one that names no file", async () => {
      const file = path.join(tmp, "passphrase.txt");
      writeFileSync(file, `${PASSPHRASE}\n`);
      const h = harness({ processEnv: { PATH: "", PULUMI_CONFIG_PASSPHRASE_FILE: file } });
      await h.engine.preview(h.env, { config: h.config });
      expect(h.opened[0].envVars.PULUMI_CONFIG_PASSPHRASE_FILE).to.equal(file);

      const missing = harness({ processEnv: { PATH: "", PULUMI_CONFIG_PASSPHRASE_FILE: path.join(tmp, "nope") } });
      const err = await rejection(missing.engine.preview(missing.env, { config: missing.config }));
      expect(err).to.be.instanceOf(ConfigError);
      expect((err as Error).message).to.contain("PULUMI_CONFIG_PASSPHRASE_FILE");
    });

    it("creates the stack for preview and up, and only selects it for everything else", async () => {
      const h = harness();
      await h.engine.preview(h.env, { config: h.config });
      await h.engine.up(h.env, { config: h.config });
      await h.engine.refresh(h.env, {});
      await h.engine.drift(h.env, {});
      await h.engine.destroy(h.env, {});
      await h.engine.outputs(h.env);
      await h.engine.history(h.env);
      await h.engine.cancel(h.env);
      // cancel opens nothing: it interrupts the running CLI process.
      expect(h.opened.map((a) => a.create)).to.deep.equal([true, true, false, false, false, false, false]);
    });

    it("looks for the CLI once per engine", async () => {
      const h = harness();
      await h.engine.preview(h.env, { config: h.config });
      await h.engine.outputs(h.env);
      expect(h.cliLookups).to.equal(1);
    });
  });

  describe("config", () => {
    it("writes the stack config from stackConfig, as plain values, before the preview runs, keeping the secrets settings", async () => {
      const h = harness();
      await h.engine.preview(h.env, { config: h.config });
      expect(h.stack.methods()).to.deep.equal(["saveStackSettings", "preview"]);
      const [settings] = h.stack.calls[0].args as [StackSettings];
      expect(settings.encryptionSalt).to.equal("v1:salt");
      const config = settings.config as Record<string, string>;
      expect(Object.keys(config).sort()).to.deep.equal(Object.keys(stackConfig(h.config)).sort());
      expect(config[CONFIG_KEYS.version]).to.equal("1.4.2");
      expect(JSON.parse(config[CONFIG_KEYS.settings])).to.deep.equal(JSON.parse(JSON.stringify(h.env.settings)));
    });

    it("writes the config whole: a key the deployment does not set (a rollback's digest pin) is removed", async () => {
      const h = harness();
      await h.engine.up(h.env, { config: { ...h.config, imageDigest: `sha256:${"ab".repeat(32)}` } });
      expect(h.stack.settings.config).to.have.property(CONFIG_KEYS.imageDigest);
      await h.engine.up(h.env, { config: { ...h.config, version: "1.5.0" } });
      expect(h.stack.settings.config).to.not.have.property(CONFIG_KEYS.imageDigest);
      expect((h.stack.settings.config as Record<string, string>)[CONFIG_KEYS.version]).to.equal("1.5.0");
    });

    it("writes config before up, and before refresh only when the deployed config is given", async () => {
      const h = harness();
      await h.engine.up(h.env, { config: { ...h.config, imageDigest: `sha256:${"ab".repeat(32)}` } });
      await h.engine.refresh(h.env, {});
      await h.engine.refresh(h.env, { config: h.config });
      expect(h.stack.methods()).to.deep.equal(["saveStackSettings", "up", "outputs", "refresh", "saveStackSettings", "refresh"]);
      expect(((h.stack.calls[0].args[0] as StackSettings).config as Record<string, string>)[CONFIG_KEYS.imageDigest]).to.equal(`sha256:${"ab".repeat(32)}`);
    });
  });

  describe("operation options", () => {
    it("passes target, targetDependents, refresh, expectNoChanges and the signal to preview, with color off and no diff", async () => {
      const h = harness();
      h.stack.opMap = { same: 2 };
      const signal = new AbortController().signal;
      const target = ["urn:pulumi:dev::pulumi-aws-deployer::aws:ecs/service:Service::web"];
      await h.engine.preview(h.env, { config: h.config, target, targetDependents: true, refresh: true, expectNoChanges: true, signal });
      const opts = h.stack.optionsOf("preview");
      expect(opts).to.include({ targetDependents: true, refresh: true, expectNoChanges: true, color: "never", diff: false, signal });
      expect(opts.target).to.deep.equal(target);
      expect(opts.onEvent).to.be.a("function");
    });

    it("leaves out targetDependents without targets, and the flags nobody asked for", async () => {
      const h = harness();
      await h.engine.up(h.env, { config: h.config, targetDependents: true });
      const opts = h.stack.optionsOf("up");
      expect(opts.target).to.equal(undefined);
      expect(opts.targetDependents).to.equal(undefined);
      expect(opts.refresh).to.equal(undefined);
      expect(opts.expectNoChanges).to.equal(undefined);
    });

    it("passes targets to refresh, drift and destroy", async () => {
      const h = harness();
      const target = ["urn:pulumi:dev::pulumi-aws-deployer::test:index:File::a"];
      await h.engine.refresh(h.env, { target });
      await h.engine.drift(h.env, { target });
      await h.engine.destroy(h.env, { target });
      for (const m of ["refresh", "previewRefresh", "destroy"]) expect(h.stack.optionsOf(m).target).to.deep.equal(target);
    });

    it("runs up with expectNoChanges only after a preview found nothing to change", async () => {
      const h = harness();
      h.stack.opMap = { same: 3 };
      await h.engine.up(h.env, { config: h.config, expectNoChanges: true });
      expect(h.stack.methods()).to.deep.equal(["saveStackSettings", "preview", "saveStackSettings", "up", "outputs"]);
      expect(h.stack.optionsOf("up").expectNoChanges).to.equal(true);
    });

    it("refuses up with expectNoChanges when the preview finds changes, without applying", async () => {
      const h = harness();
      h.stack.opMap = { update: 1, same: 2 };
      const err = await rejection(h.engine.up(h.env, { config: h.config, expectNoChanges: true }));
      expect(err).to.be.instanceOf(ChangesFoundError);
      expect(h.stack.methods()).to.not.include("up");
    });
  });

  describe("events", () => {
    it("translates resource events into step events with the changed properties", async () => {
      const h = harness();
      const bucket = meta("update", "logs", { type: "aws:s3/bucket:Bucket", detailedDiff: { "tags.Owner": { diffKind: "update" as never, inputDiff: true } } });
      const service = meta("create", "web", { type: "aws:ecs/service:Service", diffs: ["taskDefinition"] });
      h.stack.events = [
        ev({ resourcePreEvent: { metadata: bucket } }),
        ev({ resOutputsEvent: { metadata: bucket } }),
        ev({ resourcePreEvent: { metadata: service } }),
        ev({ resOpFailedEvent: { metadata: service, status: 1, steps: 1 } }),
      ];
      const { events, onEvent } = collect();
      await h.engine.up(h.env, { config: h.config, onEvent });
      const steps = events.filter((e) => e.type === "step");
      expect(steps).to.deep.equal([
        { type: "step", phase: "pre", step: { urn: bucket.urn, type: "aws:s3/bucket:Bucket", op: "update", changedProperties: ["tags.Owner"] } },
        { type: "step", phase: "done", step: { urn: bucket.urn, type: "aws:s3/bucket:Bucket", op: "update", changedProperties: ["tags.Owner"] } },
        { type: "step", phase: "pre", step: { urn: service.urn, type: "aws:ecs/service:Service", op: "create", changedProperties: ["taskDefinition"] } },
        { type: "step", phase: "failed", step: { urn: service.urn, type: "aws:ecs/service:Service", op: "create", changedProperties: ["taskDefinition"] } },
      ]);
    });

    it("translates diagnostics, scrubbing secret values from their messages", async () => {
      const h = harness();
      h.stack.events = [
        ev({ diagnosticEvent: { message: `using passphrase ${PASSPHRASE}\n`, color: "never", severity: "warning", urn: "urn:x" } }),
        ev({ diagnosticEvent: { message: "progress…", color: "never", severity: "info", ephemeral: true } }),
        ev({ diagnosticEvent: { message: "hello from the program", color: "never", severity: "info#err" } }),
      ];
      const { events, onEvent } = collect();
      const result = await h.engine.preview(h.env, { config: h.config, onEvent });
      expect(events.filter((e) => e.type === "diagnostic")).to.deep.equal([
        { type: "diagnostic", diagnostic: { severity: "warning", message: "using passphrase [secret]", urn: "urn:x" } },
        { type: "diagnostic", diagnostic: { severity: "debug", message: "progress…" } },
        { type: "diagnostic", diagnostic: { severity: "info", message: "hello from the program" } },
      ]);
      expect(result.diagnostics.map((d) => d.severity)).to.deep.equal(["warning", "info"]);
    });

    it("emits started first and a summary with the result last", async () => {
      const h = harness();
      h.stack.opMap = { create: 2 };
      h.stack.events = [ev({ summaryEvent: { maybeCorrupt: false, durationSeconds: 1, resourceChanges: { create: 2 }, policyPacks: {} } })];
      const { events, onEvent } = collect();
      await h.engine.up(h.env, { config: h.config, onEvent });
      expect(events[0]).to.deep.equal({ type: "started", operation: "up", engine: "pulumi", stack: "dev" });
      expect(events[events.length - 1]).to.deep.equal({ type: "summary", changes: { create: 2, update: 0, delete: 0, replace: 0, same: 0 }, result: "succeeded" });
    });

    it("keeps running when a listener throws", async () => {
      const h = harness();
      h.stack.events = [ev({ resourcePreEvent: { metadata: meta("same", "a") } })];
      const result = await h.engine.preview(h.env, {
        config: h.config,
        onEvent: () => {
          throw new Error("listener bug");
        },
      });
      expect(result.steps).to.have.length(1);
    });
  });

  describe("results", () => {
    it("counts a replacement once, whichever of replace, create-replacement and delete-replaced the engine reports", () => {
      expect(changesFromOpMap({ create: 1, replace: 2, "create-replacement": 2, "delete-replaced": 2, same: 3, read: 1 })).to.deep.equal({ create: 1, update: 0, delete: 0, replace: 2, same: 4 });
      expect(changesFromOpMap({ "create-replacement": 1, "delete-replaced": 1 })).to.deep.equal({ create: 0, update: 0, delete: 0, replace: 1, same: 0 });
      expect(stepOp("create-replacement")).to.equal("replace");
      expect(stepOp("delete-replaced")).to.equal("replace");
    });

    it("maps the preview's change summary and collects one step per resource", async () => {
      const h = harness();
      h.stack.opMap = { replace: 1, "create-replacement": 1, "delete-replaced": 1, update: 1, same: 4 };
      const td = (op: StepEventMetadata["op"]) => meta(op, "web-td", { type: "aws:ecs/taskDefinition:TaskDefinition", keys: ["containerDefinitions"], diffs: ["containerDefinitions"] });
      h.stack.events = [
        ev({ resourcePreEvent: { metadata: td("create-replacement") } }),
        ev({ resourcePreEvent: { metadata: td("replace") } }),
        ev({ resourcePreEvent: { metadata: td("delete-replaced") } }),
        ev({ resourcePreEvent: { metadata: meta("update", "web", { type: "aws:ecs/service:Service", diffs: ["taskDefinition"] }) } }),
      ];
      const result = await h.engine.preview(h.env, { config: h.config });
      expect(result.engine).to.equal("pulumi");
      expect(result.changes).to.deep.equal({ create: 0, update: 1, delete: 0, replace: 1, same: 4 });
      expect(result.steps.map((s) => [s.type, s.op])).to.deep.equal([
        ["aws:ecs/taskDefinition:TaskDefinition", "replace"],
        ["aws:ecs/service:Service", "update"],
      ]);
      expect(result.durationMs).to.be.a("number");
    });

    it("falls back to counting steps when the engine sent no summary", async () => {
      const h = harness();
      h.stack.events = [ev({ resourcePreEvent: { metadata: meta("create", "a") } }), ev({ resourcePreEvent: { metadata: meta("same", "b") } })];
      const result = await h.engine.preview(h.env, { config: h.config });
      expect(result.changes).to.deep.equal({ create: 1, update: 0, delete: 0, replace: 0, same: 1 });
    });

    it("masks secret outputs of up and outputs(), and reveals them only when asked", async () => {
      const h = harness();
      h.stack.outputMap = { url: { value: "http://web.example", secret: false }, dbPassword: { value: "hunter2", secret: true } };
      const up = await h.engine.up(h.env, { config: h.config });
      expect(up.outputs).to.deep.equal({ url: { value: "http://web.example", secret: false }, dbPassword: { value: "[secret]", secret: true } });
      expect(await h.engine.outputs(h.env)).to.deep.equal(up.outputs);
      expect((await h.engine.outputs(h.env, { reveal: true })).dbPassword).to.deep.equal({ value: "hunter2", secret: true });
    });

    it("takes an up's outputs from the engine's event for the stack (a nested secret masks its key whole), running no `stack output`", async () => {
      const h = harness();
      const sig = { "4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270", ciphertext: "[secret]" };
      const stackType = "pulumi:pulumi:Stack";
      h.stack.events = [
        ev({ resOutputsEvent: { metadata: meta("same", "dev", { type: stackType, new: { ...state({ url: "http://web.example", connection: { host: "db", password: sig }, note: sig }), type: stackType } }) } }),
      ];
      const up = await h.engine.up(h.env, { config: h.config });
      expect(up.outputs).to.deep.equal({
        url: { value: "http://web.example", secret: false },
        connection: { value: "[secret]", secret: true },
        note: { value: "[secret]", secret: true },
      });
      expect(h.stack.methods()).to.not.include("outputs");
      // A targeted up reads them from the backend instead (the stack's outputs are not rewritten by it).
      await h.engine.up(h.env, { config: h.config, target: ["urn:pulumi:dev::pulumi-aws-deployer::test:index:File::a"] });
      expect(h.stack.methods()).to.include("outputs");
    });

    it("maps history, keeping only non-secret config values and asking the CLI not to show secrets", async () => {
      const h = harness();
      h.stack.historyList = [
        {
          version: 7,
          kind: "update",
          result: "succeeded",
          message: "",
          environment: {},
          startTime: new Date("2024-05-01T10:00:00Z"),
          endTime: new Date("2024-05-01T10:05:00Z"),
          config: { [CONFIG_KEYS.version]: { value: "1.4.2", secret: false }, "pulumi-aws-deployer:token": { value: "[secret]", secret: true } },
          resourceChanges: { update: 1, same: 9 },
        },
      ];
      const history = await h.engine.history(h.env);
      expect(history).to.deep.equal([
        {
          version: 7,
          kind: "update",
          result: "succeeded",
          startTime: "2024-05-01T10:00:00.000Z",
          endTime: "2024-05-01T10:05:00.000Z",
          changes: { create: 0, update: 1, delete: 0, replace: 0, same: 9 },
          config: { [CONFIG_KEYS.version]: "1.4.2" },
        },
      ]);
      expect(h.stack.calls.find((c) => c.method === "history")?.args[2]).to.equal(false);
    });

    it("cancels without `pulumi cancel`, which on DIY backends only deletes the running update's lock", async () => {
      const h = harness();
      await h.engine.cancel(h.env);
      expect(h.stack.methods()).to.deep.equal([]);
    });
  });

  describe("recovery", () => {
    const pendingCreate = { resource: { urn: "urn:pulumi:dev::pulumi-aws-deployer::aws:ecs/service:Service::web-dev-service", type: "aws:ecs/service:Service" }, type: "creating" };

    /** A lock file as the CLI leaves it in a file:// backend, and a `pulumi cancel` that deletes it. */
    function staleLock(h: Harness): string {
      const dir = path.join(tmp, "state", ".pulumi", "locks", "organization", "pulumi-aws-deployer", h.env.name);
      mkdirSync(dir, { recursive: true });
      const file = path.join(dir, "b0a1.json");
      writeFileSync(file, JSON.stringify({ pid: 4242, username: "ci", hostname: "runner-1", timestamp: "2026-01-02T03:04:05Z" }));
      h.stack.onCancel = () => rmSync(dir, { recursive: true, force: true });
      return file;
    }

    it("reports pending operations, clears the stale lock, and leaves pending creates unless asked", async () => {
      const h = harness();
      h.stack.pendingOperations = [pendingCreate];
      staleLock(h);

      const report = await h.engine.recover(h.env, {});

      expect(report.pendingOperations).to.deep.equal([{ urn: pendingCreate.resource.urn, type: "aws:ecs/service:Service", kind: "creating" }]);
      expect(report.lockCleared).to.equal(true);
      expect(report.notes.join(" ")).to.include("cleared the backend lock of ci@runner-1 (pid 4242)");
      expect(report.refresh).to.equal(undefined);
      expect(report.notes.join(" ")).to.match(/1 pending create/);
      expect(h.stack.methods()).to.not.include("refresh");
    });

    it("refreshes with pending creates cleared when asked", async () => {
      const h = harness();
      h.stack.pendingOperations = [pendingCreate];

      const report = await h.engine.recover(h.env, { clearPendingCreates: true });

      expect(h.stack.optionsOf("refresh")).to.include({ clearPendingCreates: true });
      expect(report.refresh?.engine).to.equal("pulumi");
    });

    /**
     * The stack's checkpoint as the CLI leaves it in a file:// backend, with fileblob's metadata
     * sidecar beside it, and an export that fails as the CLI's does while the sidecar does not parse.
     */
    function checkpointWithSidecar(h: Harness, sidecar: string): string {
      const dir = path.join(tmp, "state", ".pulumi", "stacks", "pulumi-aws-deployer");
      mkdirSync(dir, { recursive: true });
      writeFileSync(path.join(dir, `${h.env.name}.json`), JSON.stringify({ version: 3, checkpoint: {} }));
      const attrs = path.join(dir, `${h.env.name}.json.attrs`);
      writeFileSync(attrs, sidecar);
      const realExport = h.stack.exportStack.bind(h.stack);
      h.stack.exportStack = async () => {
        if (existsSync(attrs)) JSON.parse(readFileSync(attrs, "utf8") || "x");
        return realExport();
      };
      return attrs;
    }

    it("removes the metadata sidecar a killed update left empty, which made every read of the checkpoint fail, and says so", async () => {
      const h = harness();
      const attrs = checkpointWithSidecar(h, "");
      const whole = path.join(path.dirname(attrs), `${h.env.name}.json.bak.attrs`);
      writeFileSync(whole, JSON.stringify({ "user.content_type": "application/json" }));
      const other = path.join(path.dirname(attrs), `${h.env.name}-other.json.attrs`);
      writeFileSync(other, "");

      const report = await h.engine.recover(h.env, {});

      expect(existsSync(attrs)).to.equal(false);
      expect(existsSync(whole), "a sidecar that parses").to.equal(true);
      expect(existsSync(other), "another stack's").to.equal(true);
      expect(report.notes.join(" ")).to.include(`removed ${attrs}, a metadata file of the backend that the killed update left cut short`);
      expect(h.stack.methods()).to.include("exportStack");
      rmSync(path.join(tmp, "state", ".pulumi"), { recursive: true, force: true });
    });

    it("leaves the sidecars alone while the update holding the lock still runs on this host", async () => {
      const h = harness();
      const attrs = checkpointWithSidecar(h, "");
      const dir = path.join(tmp, "state", ".pulumi", "locks", "organization", "pulumi-aws-deployer", h.env.name);
      mkdirSync(dir, { recursive: true });
      writeFileSync(path.join(dir, "live.json"), JSON.stringify({ pid: process.pid, username: "ci", hostname: hostname(), timestamp: "2026-01-02T03:04:05Z" }));

      const err = await h.engine.recover(h.env, {}).then(() => undefined, (e: unknown) => e);

      expect(String(err)).to.match(/JSON/);
      expect(existsSync(attrs)).to.equal(true);
      expect(h.stack.methods()).to.not.include("cancel");
      rmSync(path.join(tmp, "state", ".pulumi"), { recursive: true, force: true });
    });

    it("counts a lock the killed CLI was still writing (its temporary file) as a lock, and clears it", async () => {
      const h = harness();
      const dir = path.join(tmp, "state", ".pulumi", "locks", "organization", "pulumi-aws-deployer", h.env.name);
      mkdirSync(dir, { recursive: true });
      // The CLI refuses every update while this is there ("invalid character ... in string literal").
      const partial = path.join(dir, "b0a1.json.18a0b1c2d3e4.tmp");
      writeFileSync(partial, '{"pi');
      writeFileSync(path.join(dir, "b0a1.json.attrs"), "");
      h.stack.onCancel = () => rmSync(dir, { recursive: true, force: true });

      const report = await h.engine.recover(h.env, {});

      expect(report.lockCleared).to.equal(true);
      expect(report.notes.join(" ")).to.include(`cleared the backend lock ${partial}, which the killed update left cut short`);
      expect(h.stack.methods()).to.include("cancel");
    });

    it("says so when there was no lock to clear, and does not run pulumi cancel", async () => {
      const h = harness();

      const report = await h.engine.recover(h.env, { clearPendingCreates: true });

      expect(report.lockCleared).to.equal(false);
      expect(report.notes.join(" ")).to.match(/no lock was held in the backend/);
      expect(h.stack.methods()).to.not.include("cancel");
      expect(h.stack.methods()).to.not.include("refresh");
    });

    it("reports a lock that pulumi cancel did not remove as not cleared", async () => {
      const h = harness();
      staleLock(h);
      h.stack.onCancel = undefined;

      const report = await h.engine.recover(h.env, {});

      expect(report.lockCleared).to.equal(false);
      expect(report.notes.join(" ")).to.include("could not clear the backend lock of ci@runner-1");
    });
  });

  describe("drift", () => {
    it("previews a refresh, never refreshing, and reports changed properties and gone resources", async () => {
      const h = harness();
      h.stack.opMap = { update: 2, delete: 1, same: 2 };
      const detailed = meta("refresh", "logs", {
        type: "aws:s3/bucket:Bucket",
        detailedDiff: { "tags.Owner": { diffKind: "update" as never, inputDiff: false }, versioning: { diffKind: "add-replace" as never, inputDiff: false } },
        old: state({ tags: { Owner: "platform" } }),
        new: state({ tags: { Owner: "someone" }, versioning: { enabled: true } }),
      });
      const byOutputs = meta("refresh", "file", { old: state({ path: "/tmp/a", content: "v1", __provider: "x" }), new: state({ path: "/tmp/a", content: "edited", __provider: "x" }) });
      const gone = meta("refresh", "queue", { type: "aws:sqs/queue:Queue", old: state({ name: "q" }) });
      const unchanged = meta("refresh", "vpc", { type: "aws:ec2/vpc:Vpc", old: state({ cidr: "10.0.0.0/16" }), new: state({ cidr: "10.0.0.0/16" }) });
      const root = meta("refresh", "dev", { type: "pulumi:pulumi:Stack", old: state({}) });
      h.stack.events = [detailed, byOutputs, gone, unchanged, root].flatMap((m) => [
        // Before the read the engine's new state is the old one: no drift can be told yet.
        ev({ resourcePreEvent: { metadata: { ...m, new: m.old, detailedDiff: undefined } } }),
        ev({ resOutputsEvent: { metadata: m } }),
      ]);
      const result = await h.engine.drift(h.env, { config: h.config });
      expect(h.stack.methods()).to.deep.equal(["saveStackSettings", "previewRefresh"]);
      // The engine's counts include the stack resource itself; a deployment's do not.
      expect(result.changes).to.deep.equal({ create: 0, update: 2, delete: 1, replace: 0, same: 1 });
      expect(result.drifted).to.deep.equal([
        {
          urn: detailed.urn,
          type: "aws:s3/bucket:Bucket",
          kind: "update",
          properties: [
            { path: "tags.Owner", kind: "update", state: "platform", live: "someone" },
            { path: "versioning", kind: "add", live: { enabled: true } },
          ],
        },
        { urn: byOutputs.urn, type: "test:index:File", kind: "update", properties: [{ path: "content", kind: "update", state: "v1", live: "edited" }] },
        { urn: gone.urn, type: "aws:sqs/queue:Queue", kind: "delete", properties: [] },
      ]);
    });

    it("leaves out the values of secret properties", async () => {
      const h = harness();
      const m = meta("refresh", "db", { diffs: ["password"], old: state({ password: "[secret]" }), new: state({ password: "[secret]" }) });
      h.stack.events = [ev({ resOutputsEvent: { metadata: m } })];
      const result = await h.engine.drift(h.env, {});
      expect(result.drifted[0].properties).to.deep.equal([{ path: "password", kind: "update" }]);
    });
  });

  describe("errors", () => {
    it("sorts createCommandError's classes as the SDK builds them", () => {
      expect(commandError("error: [409] Conflict: Another update is currently in progress.")).to.be.instanceOf(ConcurrentUpdateError);
      expect(commandError("error: the stack is currently locked by 1 lock(s)")).to.be.instanceOf(ConcurrentUpdateError);
      expect(commandError("error: no stack named 'dev' found")).to.be.instanceOf(StackNotFoundError);
      expect(commandError("error: stack 'dev' already exists")).to.be.instanceOf(StackAlreadyExistsError);
    });

    it("maps a concurrent update to ConflictError naming the stack", async () => {
      const h = harness();
      h.stack.failure = commandError("error: the stack is currently locked by 1 lock(s). Either wait for the other process(es) to end or delete the lock file with `pulumi cancel`.");
      const err = await rejection(h.engine.up(h.env, { config: h.config }));
      expect(err).to.be.instanceOf(ConflictError);
      expect((err as Error).message).to.equal("another update is running on dev");
    });

    it("maps a missing stack to NotFoundError and an existing one to ConflictError", async () => {
      const h = harness();
      h.stack.failure = commandError("error: no stack named 'dev' found");
      const notFound = await rejection(h.engine.outputs(h.env));
      expect(notFound).to.be.instanceOf(NotFoundError);
      expect((notFound as Error).message).to.contain("stack dev does not exist");

      h.stack.failure = commandError("error: stack 'dev' already exists");
      const exists = await rejection(h.engine.preview(h.env, { config: h.config }));
      expect(exists).to.be.instanceOf(ConflictError);
    });

    it("maps a failed step to OperationFailedError with the engine's first error, and a failed summary event", async () => {
      const h = harness();
      h.stack.events = [
        ev({ diagnosticEvent: { message: "creating ECS Service (web): InvalidParameterException: subnet not found\n", color: "never", severity: "error", urn: "urn:web" } }),
        ev({ diagnosticEvent: { message: "update failed", color: "never", severity: "error" } }),
      ];
      h.stack.failure = commandError("error: update failed\n", 255);
      const { events, onEvent } = collect();
      const err = await rejection(h.engine.up(h.env, { config: h.config, onEvent }));
      expect(err).to.be.instanceOf(OperationFailedError);
      expect((err as Error).message).to.equal("up of dev failed: creating ECS Service (web): InvalidParameterException: subnet not found");
      expect(events[events.length - 1]).to.include({ type: "summary", result: "failed" });
    });

    it("shortens the CLI's stderr to its first meaningful error lines, scrubbing secret values", async () => {
      const h = harness();
      const stderr = [
        "Updating (dev):",
        `error: getting secrets manager: passphrase must be set with PULUMI_CONFIG_PASSPHRASE (not "${PASSPHRASE}")`,
        `error: 1 error occurred:`,
        `\t* reading credentials: key ${AWS_SECRET} rejected`,
        "error: update failed",
      ].join("\n");
      h.stack.failure = commandError(stderr);
      const err = (await rejection(h.engine.up(h.env, { config: h.config }))) as DeployerError;
      expect(err).to.be.instanceOf(OperationFailedError);
      expect(err.message).to.not.contain(PASSPHRASE);
      expect(err.message).to.not.contain(AWS_SECRET);
      expect(err.message).to.contain("getting secrets manager");
      expect(err.message).to.contain("reading credentials: key [secret] rejected");
      expect(err.message).to.not.contain("Updating (dev)");
      expect(String((err.cause as Error).message)).to.not.contain(PASSPHRASE);
    });

    it("reads the CLI's Diagnostics from its stdout, which the SDK keeps on the execa error and not in commandResult.stdout", async () => {
      const h = harness();
      // How the SDK's own runner reports a failed command: empty stdout, the execa error's message as
      // stderr, and the real stdout on the error.
      const execaError = Object.assign(new Error("Command failed with exit code 255: pulumi up"), {
        exitCode: 255,
        stderr: "",
        stdout: ["Diagnostics:", "  aws:s3:Bucket (logs):", "    error: creating S3 Bucket (acme-logs): BucketAlreadyExists", ""].join("\n"),
      });
      h.stack.failure = commandError("Command failed with exit code 255: pulumi up", -2, execaError);
      const err = (await rejection(h.engine.up(h.env, { config: h.config }))) as DeployerError;
      expect(err).to.be.instanceOf(OperationFailedError);
      expect(err.message).to.contain("creating S3 Bucket (acme-logs): BucketAlreadyExists");
    });

    it("keeps a secret whole out of a message cut to length: redacted first, then cut", async () => {
      const h = harness();
      // The secret straddles the 600-character cut: cut first, its first half would survive unrecognised.
      h.stack.failure = commandError(`error: ${"x".repeat(580)} key=${AWS_SECRET}`);
      const err = (await rejection(h.engine.up(h.env, { config: h.config }))) as DeployerError;
      expect(err.message).to.not.contain(AWS_SECRET.slice(0, 12));
    });

    it("reports changes found when expectNoChanges stops a preview", async () => {
      const h = harness();
      h.stack.failure = commandError("error: no changes were expected but changes were proposed");
      const err = await rejection(h.engine.preview(h.env, { config: h.config, expectNoChanges: true }));
      expect(err).to.be.instanceOf(ChangesFoundError);
    });

    it("keeps an unrelated failure under expectNoChanges an OperationFailedError", async () => {
      const h = harness();
      h.stack.events = [
        ev({ resourcePreEvent: { metadata: meta("create", "a") } }),
        ev({ diagnosticEvent: { message: "Running program failed: TypeError: x is undefined", color: "never", severity: "error" } }),
      ];
      h.stack.failure = commandError("error: preview failed");
      const err = await rejection(h.engine.preview(h.env, { config: h.config, expectNoChanges: true }));
      expect(err).to.be.instanceOf(OperationFailedError);
      expect((err as Error).message).to.equal("preview of dev failed: Running program failed: TypeError: x is undefined");
    });

    it("maps an abort to CanceledError and a canceled summary", async () => {
      const h = harness();
      const controller = new AbortController();
      h.stack.during = () => controller.abort();
      h.stack.failure = commandError("error: update canceled", 255);
      const { events, onEvent } = collect();
      const err = await rejection(h.engine.up(h.env, { config: h.config, signal: controller.signal, onEvent }));
      expect(err).to.be.instanceOf(CanceledError);
      expect(events[events.length - 1]).to.include({ type: "summary", result: "canceled" });
    });

    it("never opens the stack when the signal has already fired", async () => {
      const h = harness();
      const controller = new AbortController();
      controller.abort();
      const err = await rejection(h.engine.preview(h.env, { config: h.config, signal: controller.signal }));
      expect(err).to.be.instanceOf(CanceledError);
      expect(h.opened).to.have.length(0);
    });

    it("maps a CLI that vanished (ENOENT when spawning) to EngineUnavailableError with the install hint", async () => {
      const h = harness();
      const spawn = Object.assign(new Error("spawn pulumi ENOENT"), { code: "ENOENT" });
      h.stack.failure = commandError("spawn pulumi ENOENT", -2, spawn);
      const err = await rejection(h.engine.refresh(h.env, {}));
      expect(err).to.be.instanceOf(EngineUnavailableError);
      expect((err as Error).message).to.contain("https://www.pulumi.com/docs/install/");
    });

    it("wraps anything else in a DeployerError with a scrubbed one-line message", async () => {
      const h = harness();
      h.stack.failure = new Error(`boom ${PASSPHRASE}\nstack trace`);
      const err = await rejection(h.engine.destroy(h.env, {}));
      expect(err).to.be.instanceOf(DeployerError);
      expect((err as Error).message).to.equal("destroy of dev: boom [secret]");
    });

    it("scrubs the passphrase file's content too", async () => {
      const file = path.join(tmp, "passphrase.txt");
      writeFileSync(file, "file-held-passphrase\n");
      const h = harness({ processEnv: { PATH: "", PULUMI_CONFIG_PASSPHRASE_FILE: file } });
      h.stack.failure = commandError("error: decrypting with file-held-passphrase failed");
      const err = await rejection(h.engine.up(h.env, { config: h.config }));
      expect((err as Error).message).to.equal("up of dev failed: decrypting with [secret] failed");
    });
  });

  describe("the CLI", () => {
    it("is unavailable within a second, with the install hint, when pulumi is not on PATH", async () => {
      const emptyBin = mkdtempSync(path.join(tmp, "bin-"));
      const env = parseEnvironment("dev", ENV_YAML(`file://${path.join(tmp, "state")}`), "dev.yaml");
      let opened = 0;
      const engine = new PulumiEngine({
        repoRoot: tmp,
        // No CLI on PATH, and none built into the tools cache either.
        env: { PATH: emptyBin, PULUMI_CONFIG_PASSPHRASE: PASSPHRASE, DEPLOYER_TOOLS_DIR: mkdtempSync(path.join(tmp, "tools-")) },
        workspaceFactory: async () => {
          opened++;
          throw new Error("must not be reached");
        },
      });
      const started = Date.now();
      const availability = await engine.available();
      expect(Date.now() - started).to.be.below(1000);
      expect(availability.ok).to.equal(false);
      expect(availability.reason).to.equal(
        `the pulumi CLI is not installed or not on PATH: install it from https://www.pulumi.com/docs/install/ (version >= ${MIN_PULUMI_VERSION}), or use an environment with \`engine: offline\``,
      );
      const err = await rejection(engine.preview(env, { config: { settings: env.settings, version: "1.0.0" } }));
      expect(err).to.be.instanceOf(EngineUnavailableError);
      expect((err as Error).message).to.equal(availability.reason);
      expect(opened).to.equal(0);
    });

    describe("with a fake pulumi on PATH", () => {
      function fakePulumi(script: string): string {
        const bin = path.join(tmp, "fake", "bin");
        mkdirSync(bin, { recursive: true });
        const exe = path.join(bin, "pulumi");
        writeFileSync(exe, `#!/bin/sh\n${script}\n`);
        chmodSync(exe, 0o755);
        return bin;
      }

      before(function () {
        if (process.platform === "win32") this.skip();
      });

      it("finds it on PATH", () => {
        const bin = fakePulumi("echo v3.200.0");
        expect(findPulumiOnPath({ PATH: `${path.join(tmp, "nothing")}${path.delimiter}${bin}` })).to.equal(path.join(bin, "pulumi"));
        expect(findPulumiOnPath({ PATH: "" })).to.equal(undefined);
      });

      it("is available when it is recent enough", async () => {
        const bin = fakePulumi("echo v3.200.0");
        expect(await new PulumiEngine({ env: { PATH: bin } }).available()).to.deep.equal({ ok: true });
      });

      it("answers whether it is usable without loading the Pulumi SDK (what readiness asks at start)", () => {
        const bin = fakePulumi("echo v3.200.0");
        const repo = path.resolve(__dirname, "../..");
        const script = `
          const { PulumiEngine } = require("./automation/engine/pulumi");
          new PulumiEngine({ env: { PATH: ${JSON.stringify(bin)} } }).available().then((a) => {
            const loaded = Object.keys(require.cache).filter((f) => f.includes(path.join("@pulumi", "pulumi") + path.sep));
            console.log(JSON.stringify({ availability: a, loaded: loaded.length }));
          });`;
        const out = execFileSync(process.execPath, ["-r", "./automation/register.js", "-e", `const path = require("path");${script}`], { cwd: repo, encoding: "utf8" });
        expect(JSON.parse(out)).to.deep.equal({ availability: { ok: true }, loaded: 0 });
      });

      it("runs `pulumi version` for readiness once while it passes, and again after it failed", async () => {
        const calls = path.join(tmp, "version-calls");
        const verdict = path.join(tmp, "version-verdict");
        writeFileSync(verdict, "v3.50.0");
        const bin = fakePulumi(`echo x >> '${calls}'; cat '${verdict}'`);
        const engine = new PulumiEngine({ env: { PATH: `${bin}${path.delimiter}/usr/bin${path.delimiter}/bin` } });
        expect((await engine.available()).ok).to.equal(false);
        writeFileSync(verdict, "v3.200.0");
        for (let i = 0; i < 3; i++) expect(await engine.available()).to.deep.equal({ ok: true });
        expect(readFileSync(calls, "utf8").split("\n").filter(Boolean)).to.have.length(2);
      });

      it("is unavailable when too old, naming the minimum version", async () => {
        const bin = fakePulumi("echo v3.50.0");
        const availability = await new PulumiEngine({ env: { PATH: bin } }).available();
        expect(availability.ok).to.equal(false);
        expect(availability.reason).to.contain("3.50.0").and.to.contain(`>= ${MIN_PULUMI_VERSION}`);
      });

      it("is unavailable when `pulumi version` fails", async () => {
        const bin = fakePulumi("echo 'error: broken install' >&2; exit 3");
        const availability = await new PulumiEngine({ env: { PATH: bin } }).available();
        expect(availability.ok).to.equal(false);
        expect(availability.reason).to.contain("could not run `pulumi version`");
      });
    });

    it("names the minimum version when the SDK's version check refuses the CLI", async () => {
      const engine = new PulumiEngine({
        pulumiCommand: async () => {
          throw new Error("Minimum version requirement failed. The minimum CLI version requirement is 3.2.0, your current CLI version is 3.1.0. Please update the Pulumi CLI.");
        },
      });
      const availability = await engine.available();
      expect(availability.ok).to.equal(false);
      expect(availability.reason).to.contain(`>= ${MIN_PULUMI_VERSION}`);
    });
  });
});

describe("redactSecrets", () => {
  it("replaces the values of the secret environment variables and extra values with [secret]", () => {
    const env = { PULUMI_CONFIG_PASSPHRASE: "pp-pp-pp", AWS_SECRET_ACCESS_KEY: "ak-ak-ak", AWS_SESSION_TOKEN: "st-st-st", PULUMI_ACCESS_TOKEN: "pul-123", HOME: "/root/home" };
    expect(redactSecrets("pp-pp-pp ak-ak-ak st-st-st pul-123 /root/home extra-1", env, ["extra-1"])).to.equal("[secret] [secret] [secret] [secret] /root/home [secret]");
  });

  it("redacts overlapping values whole, longest first", () => {
    expect(redactSecrets("token abcdef-ghi", { PULUMI_ACCESS_TOKEN: "abcdef" }, ["abcdef-ghi"])).to.equal("token [secret]");
  });

  it("ignores unset and empty variables", () => {
    expect(redactSecrets("nothing here", { PULUMI_CONFIG_PASSPHRASE: "" })).to.equal("nothing here");
  });
});

describe("firstErrorLines", () => {
  it("keeps the meaningful error lines with their continuation lines and drops generic ones", () => {
    const text = "Previewing update (dev):\n\x1b[31merror:\x1b[0m 1 error occurred:\n\t* creating bucket: AccessDenied\n\nerror: preview failed\n";
    expect(firstErrorLines(text)).to.equal("1 error occurred:; * creating bucket: AccessDenied");
    expect(firstErrorLines("error: update failed\n")).to.equal(undefined);
  });
});
