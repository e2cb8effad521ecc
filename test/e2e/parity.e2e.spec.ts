/**
 * Parity: one scenario on the offline engine and on the real one (the pulumi CLI), compared by what
 * the deployer sees: change counts, steps, outputs and their secret flags, the recorded config and
 * history. The offline engine is what most tests run on, so it must never be kinder than the real
 * engine: where they cannot agree it is the stricter one.
 */
import { expect } from "chai";
import * as path from "path";
import type { Environment } from "../../automation/environment";
import { OfflineEngine } from "../../automation/engine/offline";
import type { Engine, EngineHistoryEntry, OperationResult, Outputs } from "../../automation/engine/port";
import { PulumiEngine } from "../../automation/engine/pulumi";
import { CONFIG_KEYS, type ProgramConfig } from "../../infra/config";
import { tempDirs } from "../automation/support/temp";
import { engineEnv, PROGRAM_DIR, removeStackFiles, requirePulumi, standIn, uniqueStack } from "./support";

const DIGEST = `sha256:${"e7".repeat(32)}`;

interface Seen {
  readonly results: { op: string; changes: OperationResult["changes"]; steps: string[] }[];
  readonly outputs: Outputs;
  readonly history: Pick<EngineHistoryEntry, "kind" | "result">[];
  readonly recorded: (string | undefined)[][];
}

/** The scenario: up, a no-change preview, a new version, a pinned rollback, a new version after it. */
async function scenario(engine: Engine, env: Environment): Promise<Seen> {
  const v = (version: string, imageDigest?: string): ProgramConfig => ({ settings: env.settings, version, imageDigest });
  const results: Seen["results"] = [];
  const record = (op: string, r: OperationResult) => results.push({ op, changes: r.changes, steps: r.steps.map((s) => `${s.urn.split("::").pop()} ${s.op}`) });
  record("up 1.0.0", await engine.up(env, { config: v("1.0.0") }));
  record("preview 1.0.0", await engine.preview(env, { config: v("1.0.0") }));
  record("up 2.0.0", await engine.up(env, { config: v("2.0.0") }));
  record("rollback to 1.0.0 pinned", await engine.up(env, { config: v("1.0.0", DIGEST) }));
  record("up 3.0.0", await engine.up(env, { config: v("3.0.0") }));
  const outputs = await engine.outputs(env);
  const history = (await engine.history(env)).filter((h) => h.kind === "update");
  return {
    results,
    outputs,
    history: history.map((h) => ({ kind: h.kind, result: h.result })),
    // What each update recorded of the deployment: the version and the digest pin.
    recorded: history.map((h) => [h.config?.[CONFIG_KEYS.version], h.config?.[CONFIG_KEYS.imageDigest]]),
  };
}

describe("offline and real engine parity (e2e)", function () {
  this.timeout(5 * 60_000);
  const temp = tempDirs();
  const stacks: string[] = [];
  let offline: Seen;
  let real: Seen;

  before(async function () {
    requirePulumi(this);
    const work = temp.make("deployer-parity-");
    // One stack name and one output path for both: the program's settings must be the same.
    const name = uniqueStack("parity");
    stacks.push(name);
    const output = path.join(work, "world", "output.txt");
    const pulumiEnv = standIn(name, { backend: `file://${path.join(work, "state")}`, output });
    const offlineEnv = standIn(name, { backend: `file://${path.join(work, "state")}`, output, engine: "offline" });
    real = await scenario(new PulumiEngine({ env: engineEnv(work) }), pulumiEnv);
    offline = await scenario(new OfflineEngine({ dataDir: path.join(work, "offline"), programPath: path.join(PROGRAM_DIR, "index.ts") }), offlineEnv);
  });

  after(() => {
    removeStackFiles(stacks);
    temp.cleanup();
  });

  it("counts the same changes and steps for every operation", () => {
    expect(offline.results).to.deep.equal(real.results);
  });

  it("ends on the new version's image on both, not the rollback's pinned digest", () => {
    expect(real.outputs.image.value).to.equal("000000000000.dkr.ecr.us-east-1.amazonaws.com/web:3.0.0");
    expect(offline.outputs.image.value).to.equal(real.outputs.image.value);
  });

  it("reports the same outputs with the same secret flags, secrets masked whole", () => {
    expect(offline.outputs).to.deep.equal(real.outputs);
    expect(real.outputs.connection).to.deep.equal({ value: "[secret]", secret: true });
  });

  it("records the same history and config for each update", () => {
    expect(offline.history).to.deep.equal(real.history);
    expect(offline.recorded).to.deep.equal(real.recorded);
    // Newest first: the last update ran 3.0.0, with no digest pinned.
    expect(real.recorded[0]).to.deep.equal(["3.0.0", undefined]);
  });
});
