/**
 * The CLI's arguments get the service's validation (fast-check): for every operation, hostile values of
 * --stack, --version, --target and --to (`--help`, `-s`, `..`, `../x`, NUL, newlines, 10 kB strings,
 * unicode, `%2e%2e%2f`, shell syntax) end in exit 2 with a one-line error free of control characters,
 * never reach the engine, create no job, and write nothing outside the data directory.
 */
import { expect } from "chai";
import fc from "fast-check";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from "fs";
import { tmpdir } from "os";
import * as path from "path";
import { REPO_ROOT } from "../../automation/environment";
import { openStore, storeFile } from "../../automation/store";
import { versionSchema } from "../../infra/config";
import { cli, stackFrames } from "./support/cli";
import { tree } from "./support/temp";
import { TestEngine, testDeps, testEnvDir } from "./support/test-engine";

const HOSTILE = [
  "--help", "-h", "-s", "-", "--", "--json", "--yes", "--stack=prod", "--env-dir=/", "..", "../x", "../../etc/passwd",
  "..\\x", "./", "/", "%2e%2e%2f", "..%2f", "%00", "\0", "s1\0", "a\nb", "\r\n", "s1\n", "\x1b[31mred", "x".repeat(10_240),
  "latest", "LATEST", "$(id)", "`id`", "; rm -rf /", "|cat /etc/passwd", "\u202e", "😀", "ｓ１", "C:\\Windows",
  "/etc/passwd", "s1/../s2", " s1", "s1 ", "S1", "__proto__", "constructor", "job_", "job_../../etc",
  "urn:pulumi:s1::x::y::../z", "urn:pulumi:s2::pulumi-aws-deployer::aws:s3/bucket:Bucket::b", "", " ", "-1", "1e309",
];

const hostile: fc.Arbitrary<string> = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom(...HOSTILE) },
  { weight: 1, arbitrary: fc.string({ maxLength: 40 }) },
  { weight: 1, arbitrary: fc.string({ unit: "binary", maxLength: 40 }) },
  { weight: 1, arbitrary: fc.tuple(fc.constantFrom(...HOSTILE), fc.string({ maxLength: 8 })).map(([a, b]) => a + b) },
);

/** Each operation with the options it takes: hostile values are given where they reach its validation. */
const OPS: Readonly<Record<string, readonly ("version" | "target" | "to")[]>> = {
  validate: ["version"],
  preview: ["version", "target"],
  up: ["version", "target"],
  rollback: ["to"],
  refresh: [],
  drift: [],
  destroy: [],
  outputs: [],
  history: [],
};
const URN_OF_S1 = /^urn:pulumi:s1::[A-Za-z0-9._-]+::[A-Za-z0-9:/$._-]+::[A-Za-z0-9._:/-]+$/;
const ROLLBACK_TO = /^(job_[0-9A-Za-z]{10,40}|[A-Za-z0-9][A-Za-z0-9._-]{0,127})$/;


describe("cli: fuzzing the arguments (fast-check)", function () {
  this.timeout(180_000);
  let root: string;
  let dataDir: string;
  let cwd: string;
  let envDir: string;
  const engine = new TestEngine();
  let baseline: { root: string[]; envs: string[]; repo: string[]; environments: string[] };

  const snapshot = () => ({
    root: tree(root, new Set([dataDir])),
    envs: tree(envDir),
    repo: readdirSync(REPO_ROOT).sort(),
    environments: readdirSync(path.join(REPO_ROOT, "environments")).sort(),
  });

  before(() => {
    root = mkdtempSync(path.join(tmpdir(), "deployer-cli-fuzz-"));
    dataDir = path.join(root, "data");
    cwd = path.join(root, "work");
    mkdirSync(cwd);
    envDir = testEnvDir(["s1"]);
    baseline = snapshot();
  });

  after(() => {
    rmSync(root, { recursive: true, force: true });
    rmSync(envDir, { recursive: true, force: true });
  });

  async function jobsInStore(): Promise<number> {
    if (!existsSync(storeFile(dataDir))) return 0;
    const store = openStore(dataDir);
    try {
      return (await store.listJobs({ limit: 500 })).length;
    } finally {
      await store.close();
    }
  }

  const option = <T>(arb: fc.Arbitrary<T>) => fc.option(arb, { nil: undefined, freq: 2 });

  it("ends every run with a hostile --stack, --version, --target or --to in exit 2, with nothing run, recorded or written", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...Object.keys(OPS)),
        fc.oneof(fc.constant("s1"), hostile),
        option(hostile),
        option(hostile),
        option(hostile),
        fc.boolean(),
        async (op, stack, givenVersion, givenTarget, givenTo, json) => {
          const version = OPS[op].includes("version") ? givenVersion : undefined;
          const target = OPS[op].includes("target") ? givenTarget : undefined;
          const to = OPS[op].includes("to") ? givenTo : undefined;
          const hostileStack = stack !== "s1";
          const hostileVersion = version !== undefined && !versionSchema.safeParse(version).success;
          const hostileTarget = target !== undefined && !(URN_OF_S1.test(target) && target.length <= 1024);
          const hostileTo = to !== undefined && !ROLLBACK_TO.test(to);
          // Something must be wrong; a valid rest would run for real (and may legitimately create a job).
          fc.pre(hostileStack || hostileVersion || hostileTarget || hostileTo);
          fc.pre(hostileStack || (version === undefined || hostileVersion) && (target === undefined || hostileTarget) && (to === undefined || hostileTo));
          const argv = [op, "--stack", stack, "--env-dir", envDir];
          if (version !== undefined) argv.push("--version", version);
          if (target !== undefined) argv.push("--target", target);
          if (to !== undefined) argv.push("--to", to);
          if (json) argv.push("--json");
          const run = await cli(argv, { cwd, env: { DEPLOYER_DATA_DIR: dataDir }, deps: (store) => testDeps(store, engine) });
          const label = JSON.stringify(argv.map((a) => (a === envDir ? "<envs>" : a.slice(0, 40))));
          expect(run.code, `${label}: ${run.stderr.slice(0, 300)}`).to.equal(2);
          expect(engine.calls, label).to.have.length(0);
          expect(stackFrames(run.stderr), label).to.deep.equal([]);
          expect(run.stderr, label).to.not.match(/[\x00-\x08\x0b-\x1f\x7f\u202e]/);
          expect(run.stderr.trim().split("\n").length, label).to.be.at.most(3);
          expect(run.stderr.length, label).to.be.below(2_000);
          expect(await jobsInStore(), label).to.equal(0);
        },
      ),
      { numRuns: 150 },
    );
  });

  it("wrote no file outside the data directory, and in it only the store", () => {
    expect(snapshot()).to.deep.equal(baseline);
    if (existsSync(dataDir)) expect(tree(dataDir).filter((f) => !/^deployer\.db(-wal|-shm)?$/.test(f))).to.deep.equal([]);
  });
});
