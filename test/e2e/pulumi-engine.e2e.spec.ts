/**
 * The pulumi engine on the real pulumi CLI (built by `npm run engine:install`), with the stand-in
 * program (test/e2e/program: local files by a dynamic provider, no cloud) on a file:// backend.
 * Each defect a reading of the adapter found has its test here, where the CLI can show it.
 * Skipped with one line when there is no CLI; under CI=true it fails instead.
 */
import { expect } from "chai";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "fs";
import * as path from "path";
import type { Environment } from "../../automation/environment";
import { CanceledError, ChangesFoundError, OperationFailedError } from "../../automation/errors";
import { hasChanges, type EngineEvent } from "../../automation/engine/port";
import { localWorkspaceFactory, PulumiEngine, type StackLike } from "../../automation/engine/pulumi";
import { descendantsOf, type RunFn } from "../../automation/engine/pulumi-process";
import { CONFIG_KEYS, type ProgramConfig, type Settings } from "../../infra/config";
import { tempDirs } from "../automation/support/temp";
import { checkpoint, engineEnv, groupMembers, isRunning, lockFiles, PROJECT, removeStackFiles, requirePulumi, stackSettingsText, standIn, uniqueStack } from "./support";

const DIGEST = `sha256:${"d1".repeat(32)}`;

async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (err) {
    return err;
  }
  throw new Error("expected a rejection");
}

describe("pulumi engine on the real CLI (e2e)", function () {
  this.timeout(5 * 60_000);
  const temp = tempDirs();
  const stacks: string[] = [];
  let work: string;

  before(function () {
    requirePulumi(this);
    work = temp.make("deployer-e2e-");
  });

  after(() => {
    removeStackFiles(stacks);
    temp.cleanup();
  });

  function stack(prefix: string, tags: Record<string, string> = {}) {
    const name = uniqueStack(prefix);
    stacks.push(name);
    const state = path.join(work, name, "state");
    const output = path.join(work, name, "world", "output.txt");
    const env = standIn(name, { backend: `file://${state}`, output, tags });
    return { name, env, state, output, v: (version: string, imageDigest?: string): ProgramConfig => ({ settings: env.settings, version, imageDigest }) };
  }

  function engine(extra: NodeJS.ProcessEnv = {}, options: ConstructorParameters<typeof PulumiEngine>[0] = {}): PulumiEngine {
    return new PulumiEngine({ env: engineEnv(work, extra), ...options });
  }

  describe("a stack's life cycle", () => {
    let s: ReturnType<typeof stack>;
    let e: PulumiEngine;
    before(() => {
      s = stack("life");
      e = engine();
    });

    it("is available", async () => {
      expect(await e.available()).to.deep.equal({ ok: true });
    });

    it("creates with up; its steps and counts hold the program's resources only, not the stack or default providers", async () => {
      const result = await e.up(s.env, { config: s.v("1.0.0") });
      expect(result.engine).to.equal("pulumi");
      expect(readFileSync(s.output, "utf8")).to.equal("web@1.0.0 000000000000.dkr.ecr.us-east-1.amazonaws.com/web:1.0.0\n");
      expect(result.steps.map((st) => `${st.type} ${st.op}`)).to.deep.equal(["pulumi-nodejs:dynamic:Resource create"]);
      expect(result.changes).to.deep.equal({ create: 1, update: 0, delete: 0, replace: 0, same: 0 });
    });

    it("masks a secret output, and one nested in an object, and reveals them only when asked", async () => {
      const outputs = await e.outputs(s.env);
      expect(outputs.content).to.deep.equal({ value: "web@1.0.0 000000000000.dkr.ecr.us-east-1.amazonaws.com/web:1.0.0\n", secret: false });
      expect(outputs.note).to.deep.equal({ value: "[secret]", secret: true });
      expect(outputs.connection).to.deep.equal({ value: "[secret]", secret: true });
      const revealed = await e.outputs(s.env, { reveal: true });
      expect(revealed.connection).to.deep.equal({ value: { host: "db.internal", password: "pw-1.0.0" }, secret: true });
    });

    it("runs the program compiled with the repository's tsconfig.json, as npm run build checks it", async () => {
      // ES2022 class fields: a field without an initializer is an own property (ts-node's defaults would drop it).
      expect((await e.outputs(s.env)).classFields).to.deep.equal({ value: ["field"], secret: false });
    });

    it("previews no changes right after", async () => {
      const result = await e.preview(s.env, { config: s.v("1.0.0") });
      expect(hasChanges(result.changes), JSON.stringify(result.changes)).to.equal(false);
      expect(result.changes.same).to.equal(1);
    });

    it("fails a preview that expects no changes and finds some as ChangesFoundError (the CLI's current wording)", async () => {
      const err = await rejection(e.preview(s.env, { config: s.v("9.9.9"), expectNoChanges: true }));
      expect(err, String(err)).to.be.instanceOf(ChangesFoundError);
    });

    it("reports the file changed by hand as drift, naming the property, without changing state", async () => {
      writeFileSync(s.output, "edited by hand\n");
      const first = await e.drift(s.env, { config: s.v("1.0.0") });
      const file = first.drifted.find((d) => d.urn.endsWith("::output"));
      expect(file, JSON.stringify(first.drifted)).to.not.equal(undefined);
      expect(file!.properties.map((p) => p.path)).to.include("content");
      const second = await e.drift(s.env, { config: s.v("1.0.0") });
      expect(second.drifted.map((d) => d.urn)).to.deep.equal(first.drifted.map((d) => d.urn));
      expect(readFileSync(s.output, "utf8")).to.equal("edited by hand\n");
    });

    it("takes what exists into state with refresh, after which nothing drifts", async () => {
      await e.refresh(s.env, { config: s.v("1.0.0") });
      expect((await e.drift(s.env, { config: s.v("1.0.0") })).drifted).to.deep.equal([]);
    });

    it("deploys a new version", async () => {
      const result = await e.up(s.env, { config: s.v("2.0.0") });
      expect(result.changes).to.include({ update: 1, delete: 0, replace: 0 });
      expect(readFileSync(s.output, "utf8")).to.equal("web@2.0.0 000000000000.dkr.ecr.us-east-1.amazonaws.com/web:2.0.0\n");
    });

    it("rolls back to the first version's recorded config, pinned by digest", async () => {
      const history = await e.history(s.env);
      const first = history.find((h) => h.kind === "update" && h.result === "succeeded" && h.config?.[CONFIG_KEYS.version] === "1.0.0");
      expect(first, JSON.stringify(history)).to.not.equal(undefined);
      const recorded: ProgramConfig = { settings: JSON.parse(first!.config![CONFIG_KEYS.settings]) as Settings, version: first!.config![CONFIG_KEYS.version], imageDigest: DIGEST };
      await e.up(s.env, { config: recorded });
      expect(readFileSync(s.output, "utf8")).to.equal(`web@1.0.0 000000000000.dkr.ecr.us-east-1.amazonaws.com/web@${DIGEST}\n`);
    });

    it("runs the new version's image after a rollback, not the digest the rollback pinned", async () => {
      // The stack config is written whole: the rollback's imageDigest does not outlive it.
      await e.up(s.env, { config: s.v("3.0.0") });
      expect(readFileSync(s.output, "utf8")).to.equal("web@3.0.0 000000000000.dkr.ecr.us-east-1.amazonaws.com/web:3.0.0\n");
      expect(stackSettingsText(s.name)).to.not.include("imageDigest");
      expect((await e.outputs(s.env)).image.value).to.equal("000000000000.dkr.ecr.us-east-1.amazonaws.com/web:3.0.0");
    });

    it("runs no reads after an update (the SDK's Stack runs three): the outputs come from the engine's event; and selects the stack once", async () => {
      const commands: string[][] = [];
      const traced = engine({}, {
        workspaceFactory: async (args) => {
          const real = await localWorkspaceFactory(args);
          const runner = real.workspace.pulumiCommand as unknown as { run: RunFn };
          const run = runner.run.bind(runner);
          runner.run = (cmdArgs, ...rest) => {
            commands.push(cmdArgs);
            return run(cmdArgs, ...rest);
          };
          return real;
        },
      });
      await traced.preview(s.env, { config: s.v("3.0.1") });
      const result = await traced.up(s.env, { config: s.v("3.0.1") });
      expect(result.changes.update).to.equal(1);
      expect(result.outputs.content?.value).to.contain("web@3.0.1");
      // The outputs come from the engine's own event for the stack (masked, the nested secret included).
      const after = commands.slice(commands.findIndex((c) => c[0] === "up") + 1);
      expect(after.map((c) => c.slice(0, 3).join(" "))).to.deep.equal([]);
      expect(result.outputs.connection).to.deep.equal({ value: "[secret]", secret: true });
      expect(result.outputs.note).to.deep.equal({ value: "[secret]", secret: true });
      // The stack is selected once, when this engine first opens it (before the tracing here is in
      // place): the up's open selects nothing, since every command names the stack.
      expect(commands.filter((c) => c[0] === "stack" && c[1] === "select")).to.deep.equal([]);
      expect(commands.filter((c) => ["preview", "up"].includes(c[0])).every((c) => c.includes("--stack"))).to.equal(true);
    });

    it("reports a targeted update as succeeded when only the output read after it fails", async () => {
      // A targeted update reads the outputs from the backend; here that read fails as a flaky backend would.
      const target = checkpoint(s.state, s.name).checkpoint.latest!.resources!.map((r) => r.urn).filter((u) => !u.includes("::pulumi:"));
      const flaky = engine({}, {
        workspaceFactory: async (args) => {
          const real = await localWorkspaceFactory(args);
          const runner = real.workspace.pulumiCommand as unknown as { run: RunFn };
          const run = runner.run.bind(runner);
          runner.run = (cmdArgs, ...rest) => (cmdArgs[0] === "stack" && (cmdArgs[1] === "output" || cmdArgs[1] === "history") ? Promise.reject(new Error("backend went away")) : run(cmdArgs, ...rest));
          return real;
        },
      });
      expect(target).to.have.length(1);
      const result = await flaky.up(s.env, { config: s.v("3.1.0"), target });
      expect(readFileSync(s.output, "utf8")).to.contain("web@3.1.0");
      expect(result.changes.update).to.equal(1);
      expect(result.diagnostics.map((d) => d.message).join("\n")).to.match(/succeeded, but/);
      const last = (await e.history(s.env))[0];
      expect(last).to.include({ kind: "update", result: "succeeded" });
    });

    it("destroys the file", async () => {
      const result = await e.destroy(s.env, { config: s.v("3.1.0") });
      expect(result.changes.delete).to.equal(1);
      expect(existsSync(s.output)).to.equal(false);
    });
  });

  describe("failures", () => {
    it("carries the program's own message when the program throws", async () => {
      const s = stack("throw", { E2EThrow: "the settings name no database for this stack" });
      const err = await rejection(engine().up(s.env, { config: s.v("1.0.0") }));
      expect(err).to.be.instanceOf(OperationFailedError);
      expect((err as Error).message).to.contain("the settings name no database for this stack");
      expect((err as Error).message).to.not.match(/unhandled exception:?$/);
    });

    it("refuses a CLI older than the minimum with a clear reason", async () => {
      const fake = path.join(temp.make("old-cli-"), "bin");
      require("fs").mkdirSync(fake, { recursive: true });
      writeFileSync(path.join(fake, "pulumi"), "#!/bin/sh\necho v3.50.0\n", { mode: 0o755 });
      const old = engine({ PATH: `${fake}${path.delimiter}${process.env.PATH}` });
      const availability = await old.available();
      expect(availability.ok).to.equal(false);
      expect(availability.reason).to.match(/3\.50\.0.*version >= 3\.\d+\.\d+ is required/);
    });
  });

  describe("cancel", () => {
    /** Markers created one after another, each after a delay: an update long enough to cancel. */
    const slow = { E2EMarkers: "4", E2EDelayMs: "1500" };

    /** Runs `up`, calling `midway` once the first marker's create has started. */
    function upAndThen(e: PulumiEngine, env: Environment, config: ProgramConfig, signal: AbortSignal | undefined, midway: () => void): Promise<unknown> {
      let fired = false;
      const onEvent = (ev: EngineEvent) => {
        if (!fired && ev.type === "step" && ev.phase === "pre" && ev.step.urn.endsWith("::marker-0")) {
          fired = true;
          midway();
        }
      };
      return e.up(env, { config, signal, onEvent });
    }

    it("stops an update gracefully with one interrupt: canceled, no lock left, no pending operations, state usable", async () => {
      const s = stack("cancel", slow);
      const e = engine();
      const controller = new AbortController();
      const err = await rejection(upAndThen(e, s.env, s.v("1.0.0"), controller.signal, () => controller.abort()));
      expect(err, String(err)).to.be.instanceOf(CanceledError);
      expect(lockFiles(s.state, s.name)).to.deep.equal([]);
      expect(checkpoint(s.state, s.name).checkpoint.latest?.pending_operations ?? []).to.deep.equal([]);
      // The engine's own cancel of a stack runs nothing but the interrupt.
      await e.cancel(s.env);
      const next = await e.up(s.env, { config: s.v("1.0.0") });
      expect(next.changes.create).to.be.greaterThan(0);
      expect(readFileSync(`${s.output}.marker-3`, "utf8")).to.equal("1.0.0\n");
    });

    it("does not lose an abort that comes before the SDK listens for it", async () => {
      const s = stack("early", slow);
      const controller = new AbortController();
      // The abort fires after the engine's own checks, just as the SDK starts the command.
      const e = engine({}, {
        workspaceFactory: async (args) => {
          const real = await localWorkspaceFactory(args);
          const up = real.up.bind(real);
          return Object.assign(Object.create(real) as StackLike, {
            workspace: real.workspace,
            up: (opts?: Parameters<StackLike["up"]>[0]) => {
              controller.abort();
              return up(opts);
            },
          });
        },
      });
      const err = await rejection(e.up(s.env, { config: s.v("1.0.0"), signal: controller.signal }));
      expect(err, String(err)).to.be.instanceOf(CanceledError);
      expect(existsSync(`${s.output}.marker-3`)).to.equal(false);
      expect(lockFiles(s.state, s.name)).to.deep.equal([]);
    });

    it("kills the whole process tree on a forced cancel; recovery then clears the stale lock and the pending creates", async () => {
      const s = stack("kill", slow);
      const e = engine();
      let pgid = 0;
      let tree: number[] = [];
      const err = await rejection(
        upAndThen(e, s.env, s.v("1.0.0"), undefined, () => {
          pgid = e.processes.of(s.name)[0].pid;
          // The language host and the provider plugins run in process groups of their own.
          tree = descendantsOf(pgid);
          void e.kill(s.env);
        }),
      );
      expect(err, String(err)).to.be.instanceOf(CanceledError);
      expect(pgid).to.be.greaterThan(0);
      expect(tree.length, "the CLI's language host and plugins").to.be.greaterThan(0);
      expect(isRunning(pgid)).to.equal(false);
      expect(groupMembers(pgid)).to.deep.equal([]);
      expect(tree.filter(isRunning), "processes of the killed tree still running").to.deep.equal([]);
      // A killed CLI leaves its lock and its in-flight creates behind.
      expect(lockFiles(s.state, s.name)).to.not.be.empty;

      const report = await e.recover(s.env, { clearPendingCreates: true });
      expect(report.lockCleared, report.notes.join("; ")).to.equal(true);
      expect(report.notes.join(" ")).to.match(/cleared the backend lock of .+ \(pid \d+\)/);
      // What was in flight when the group died (nothing, if the kill beat the engine's checkpoint).
      for (const p of report.pendingOperations) expect(p.kind).to.equal("creating");
      expect(lockFiles(s.state, s.name)).to.deep.equal([]);
      expect(checkpoint(s.state, s.name).checkpoint.latest?.pending_operations ?? []).to.deep.equal([]);
      const again = await e.recover(s.env, {});
      expect(again.lockCleared).to.equal(false);
      expect(again.pendingOperations).to.deep.equal([]);
      await e.up(s.env, { config: s.v("1.0.0") });
      expect(readFileSync(`${s.output}.marker-3`, "utf8")).to.equal("1.0.0\n");
    });
  });

  it("recovers from what a kill inside the CLI's writes leaves: an empty metadata sidecar beside the checkpoint, a lock's temporary file", async () => {
    const s = stack("torn");
    const e = engine();
    await e.up(s.env, { config: s.v("1.0.0") });
    // fileblob truncates `<object>.attrs` and then writes it, before renaming the object into place:
    // a kill between the two leaves it empty. A kill while writing the lock leaves its temporary file.
    const attrs = path.join(s.state, ".pulumi", "stacks", PROJECT, `${s.name}.json.attrs`);
    expect(existsSync(attrs), "the CLI writes the sidecar").to.equal(true);
    writeFileSync(attrs, "");
    const locks = path.join(s.state, ".pulumi", "locks", "organization", PROJECT, s.name);
    mkdirSync(locks, { recursive: true });
    writeFileSync(path.join(locks, "0f3e.json.18a0b1c2d3e4.tmp"), '{"pid":');
    // As the CLI leaves it: nothing reads the stack, and no update starts.
    const broken = await rejection(e.outputs(s.env));
    expect(String(broken)).to.match(/failed to load checkpoint: EOF/);

    const report = await e.recover(s.env, {});
    expect(report.notes.join(" ")).to.include(`removed ${attrs}`);
    expect(report.lockCleared, report.notes.join("; ")).to.equal(true);
    expect(lockFiles(s.state, s.name)).to.deep.equal([]);
    const next = await e.up(s.env, { config: s.v("1.0.1") });
    expect(next.changes.update).to.equal(1);
    expect(readFileSync(s.output, "utf8")).to.contain("web@1.0.1");
  });

  it("updates two stacks of one program at the same time (pulumi/pulumi#8186)", async () => {
    const a = stack("para");
    const b = stack("parb");
    const e = engine();
    const [ra, rb] = await Promise.all([e.up(a.env, { config: a.v("1.0.0") }), e.up(b.env, { config: b.v("2.0.0") })]);
    expect(ra.changes.create).to.equal(1);
    expect(rb.changes.create).to.equal(1);
    expect(readFileSync(a.output, "utf8")).to.contain("web@1.0.0");
    expect(readFileSync(b.output, "utf8")).to.contain("web@2.0.0");
  });
});
