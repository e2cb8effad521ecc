import { expect } from "chai";
import { cpSync, mkdtempSync, readFileSync, symlinkSync, writeFileSync } from "fs";
import { tmpdir } from "os";
import * as path from "path";
import { parse, stringify } from "yaml";
import { cidrOverlaps, DEFAULT_ENV_DIR, listEnvironments, loadEnvironment, programEntry, REPO_ROOT } from "../../automation/environment";
import { ConfigError, NotFoundError } from "../../automation/errors";

/** A copy of environments/ whose `stack` file is changed by `edit`. */
function copyWith(stack: string, edit: (doc: any) => void): string {
  const dir = mkdtempSync(path.join(tmpdir(), "envs-"));
  cpSync(DEFAULT_ENV_DIR, dir, { recursive: true });
  const file = path.join(dir, `${stack}.yaml`);
  const doc = parse(readFileSync(file, "utf8"));
  edit(doc);
  writeFileSync(file, stringify(doc));
  return dir;
}

function refusal(stack: string, edit: (doc: any) => void): ConfigError {
  const envDir = copyWith(stack, edit);
  try {
    loadEnvironment(stack, { envDir });
  } catch (err) {
    expect(err).to.be.instanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error("expected the environment to be refused");
}

describe("environment files", () => {
  it("loads every shipped environment", () => {
    const names = listEnvironments();
    expect(names).to.have.members(["local", "dev", "qa", "staging", "prod"]);
    for (const name of names) expect(loadEnvironment(name).name).to.equal(name);
  });

  it("gives local the offline engine and a default version", () => {
    const local = loadEnvironment("local");
    expect(local.engine).to.equal("offline");
    expect(local.backend).to.match(/^file:\/\//);
    expect(local.secretsProvider).to.equal("passphrase");
    expect(local.settings.app.version).to.equal("1.0.0");
  });

  it("gives prod three zones, a NAT per zone, two approvals, a database and deletion protection", () => {
    const prod = loadEnvironment("prod");
    expect(prod.engine).to.equal("pulumi");
    expect(prod.backend).to.match(/^s3:\/\//);
    expect(prod.secretsProvider).to.match(/^awskms:\/\//);
    expect(prod.settings.network).to.include({ availabilityZones: 3, natGateways: "one-per-az" });
    expect(prod.deploy.approvals.required).to.equal(2);
    expect(prod.settings.database?.multiAz).to.equal(true);
    expect(prod.settings.deletionProtection).to.equal(true);
  });

  it("refuses an unknown key, naming it and its path", () => {
    const e = refusal("prod", (d) => (d.app.replicas = 3));
    expect(e.message).to.contain("envs-").and.to.contain("prod.yaml").and.to.contain("app: unknown key \"replicas\"");
  });

  it("refuses a malformed CIDR", () => {
    const e = refusal("prod", (d) => (d.network.cidr = "10.40.0.300/16"));
    expect(e.message).to.contain("network.cidr").and.to.contain("octet above 255");
  });

  it("refuses a CIDR with host bits set", () => {
    expect(refusal("prod", (d) => (d.network.cidr = "10.40.1.0/16")).message).to.contain("network.cidr").and.to.contain("host bits");
  });

  it("loads two environments whose VPCs overlap in one account, and names the overlap for the review gate", () => {
    const envDir = copyWith("qa", (d) => (d.network.cidr = "10.10.0.0/17"));
    const qa = loadEnvironment("qa", { envDir });
    const dev = loadEnvironment("dev", { envDir });
    expect(cidrOverlaps(qa)).to.deep.equal([{ stack: "dev", file: path.join(envDir, "dev.yaml"), cidr: "10.10.0.0/16", accountId: qa.settings.aws.accountId }]);
    expect(cidrOverlaps(dev).map((o) => o.stack)).to.deep.equal(["qa"]);
    expect(cidrOverlaps(loadEnvironment("staging", { envDir }))).to.deep.equal([]);
  });

  it("sees another environment's CIDR change at the next check (each file's network is remembered until the file changes)", () => {
    const envDir = copyWith("qa", (d) => (d.network.cidr = "10.10.0.0/17"));
    const dev = loadEnvironment("dev", { envDir });
    expect(cidrOverlaps(dev).map((o) => o.stack)).to.deep.equal(["qa"]);
    const qaFile = path.join(envDir, "qa.yaml");
    const moved = readFileSync(qaFile, "utf8").replace("10.10.0.0/17", "10.99.0.0/16");
    expect(moved).to.not.equal(readFileSync(qaFile, "utf8"));
    writeFileSync(qaFile, moved);
    expect(cidrOverlaps(dev)).to.deep.equal([]);
    writeFileSync(qaFile, moved.replace("10.99.0.0/16", "10.10.128.0/17"));
    expect(cidrOverlaps(dev).map((o) => [o.stack, o.cidr])).to.deep.equal([["qa", "10.10.128.0/17"]]);
  });

  it("keeps loading every stack when a copy of local.yaml is saved as twin.yaml", () => {
    const envDir = copyWith("local", () => undefined);
    writeFileSync(path.join(envDir, "twin.yaml"), readFileSync(path.join(envDir, "local.yaml")));
    for (const name of listEnvironments({ envDir })) expect(loadEnvironment(name, { envDir }).name).to.equal(name);
    expect(cidrOverlaps(loadEnvironment("local", { envDir })).map((o) => o.stack)).to.deep.equal(["twin"]);
  });

  it("makes only its own stack invalid when a file does not parse or cannot be read", () => {
    const envDir = copyWith("local", () => undefined);
    writeFileSync(path.join(envDir, "broken.yaml"), "app: [unclosed\n");
    symlinkSync(path.join(envDir, "nowhere.yaml"), path.join(envDir, "ghost.yaml"));
    for (const name of ["local", "dev", "qa", "staging", "prod"]) expect(loadEnvironment(name, { envDir }).name).to.equal(name);
    expect(() => loadEnvironment("broken", { envDir })).to.throw(ConfigError, /broken\.yaml: \(file\): is not valid YAML/);
    expect(() => loadEnvironment("ghost", { envDir })).to.throw(/ghost\.yaml/);
  });

  it("allows the same CIDR in another account", () => {
    const envDir = copyWith("prod", (d) => (d.network.cidr = "10.10.0.0/16"));
    expect(loadEnvironment("prod", { envDir }).settings.network.cidr).to.equal("10.10.0.0/16");
    expect(cidrOverlaps(loadEnvironment("prod", { envDir }))).to.deep.equal([]);
  });

  it("refuses more availability zones than the region model has", () => {
    const e = refusal("dev", (d) => {
      d.aws.region = "us-west-1";
      d.network.availabilityZones = 3;
    });
    expect(e.message).to.contain("network.availabilityZones").and.to.contain("us-west-1 has 2");
  });

  it("refuses a region outside the model", () => {
    expect(refusal("dev", (d) => (d.aws.region = "mars-north-1")).message).to.contain("aws.region");
  });

  it("refuses a cpu/memory pair Fargate does not accept", () => {
    const e = refusal("prod", (d) => (d.app.memory = 512));
    expect(e.message).to.contain("app.memory").and.to.contain("512 MiB is not allowed with 512 CPU units");
  });

  it("refuses a CPU size Fargate does not have", () => {
    expect(refusal("prod", (d) => (d.app.cpu = 300)).message).to.contain("app.cpu");
  });

  it("refuses a desiredCount outside the autoscaling range", () => {
    const e = refusal("dev", (d) => (d.app.desiredCount = 7));
    expect(e.message).to.contain("app.desiredCount").and.to.contain("outside the autoscaling range 1–3");
  });

  it("refuses a secret written as a plain value", () => {
    const e = refusal("prod", (d) => (d.app.secrets.DATABASE_URL = "postgres://admin:hunter2@db/prod"));
    expect(e.message).to.contain("app.secrets.DATABASE_URL").and.to.contain("must be a reference");
    expect(e.message).not.to.contain("hunter2");
  });

  it("refuses a secret-looking name in plain environment variables", () => {
    const e = refusal("dev", (d) => (d.app.environment.API_TOKEN = "abc123"));
    expect(e.message).to.contain("app.environment.API_TOKEN").and.to.contain("move it to app.secrets");
    expect(e.message).not.to.contain("abc123");
  });

  it("refuses a production environment running a single task", () => {
    const e = refusal("prod", (d) => {
      d.app.desiredCount = 1;
      d.app.autoscaling.min = 1;
    });
    expect(e.message).to.contain("app.desiredCount").and.to.contain("at least 2 tasks");
  });

  it("refuses a production environment whose alarms notify no one", () => {
    const e = refusal("prod", (d) => delete d.alarms.notify);
    expect(e.message).to.contain("alarms.notify").and.to.contain("notify no one");
  });

  it("refuses production without a domain, which HTTPS needs", () => {
    expect(refusal("prod", (d) => delete d.app.domain).message).to.contain("app.domain").and.to.contain("required in production");
  });

  it("refuses a missing required field", () => {
    expect(refusal("dev", (d) => delete d.app.port).message).to.contain("app.port: is required");
  });

  it("says what type a field must be when it has the wrong one", () => {
    expect(refusal("dev", (d) => (d.app.port = "eighty")).message).to.contain("app.port: must be a number");
  });

  it("refuses both build and image", () => {
    expect(refusal("dev", (d) => (d.app.image = "123456789012.dkr.ecr.us-east-1.amazonaws.com/web")).message).to.contain("app.build").and.to.contain("either `build` or `image`");
  });

  it("refuses latest as the default version", () => {
    expect(refusal("local", (d) => (d.app.version = "latest")).message).to.contain("app.version").and.to.contain("latest");
  });

  it("refuses an unquoted account id that YAML reads as a number", () => {
    expect(refusal("dev", (d) => (d.aws.accountId = 210987654321)).message).to.contain("aws.accountId");
  });

  it("refuses an app and environment name too long for AWS load balancer names", () => {
    expect(refusal("dev", (d) => (d.app.name = "payments-gateways")).message).to.contain("app.name").and.to.contain("payments-gateways-dev");
  });

  it("refuses a bad cron schedule", () => {
    expect(refusal("dev", (d) => (d.deploy.driftSchedule = "every six hours")).message).to.contain("deploy.driftSchedule");
  });

  it("refuses a file that is not YAML", () => {
    const dir = copyWith("dev", () => undefined);
    writeFileSync(path.join(dir, "dev.yaml"), "app: [unclosed\n");
    expect(() => loadEnvironment("dev", { envDir: dir })).to.throw(ConfigError, /dev\.yaml: \(file\): is not valid YAML/);
  });

  for (const bad of ["../etc", "../x", "prod/../dev", "-s", "--help", "Prod", "a".repeat(41), "dev\n", "dev\u0000", ""]) {
    it(`refuses the stack name ${JSON.stringify(bad).slice(0, 30)} without touching the file system`, () => {
      expect(() => loadEnvironment(bad, { envDir: "/nonexistent-dir-that-would-throw-if-read" })).to.throw(ConfigError, /stack: .* is not a stack name/);
    });
  }

  it("sees an edit to an environment file on the next load", () => {
    const envDir = copyWith("dev", () => undefined);
    expect(loadEnvironment("dev", { envDir }).settings.app.desiredCount).to.equal(1);
    const file = path.join(envDir, "dev.yaml");
    writeFileSync(file, readFileSync(file, "utf8").replace("desiredCount: 1", "desiredCount: 2"));
    expect(loadEnvironment("dev", { envDir }).settings.app.desiredCount).to.equal(2);
  });

  it("ignores an editor's dangling lock link (.#prod.yaml): every stack still loads", () => {
    const envDir = copyWith("dev", () => undefined);
    symlinkSync("alice@host.1234:1700000000", path.join(envDir, ".#prod.yaml"));
    expect(loadEnvironment("dev", { envDir }).name).to.equal("dev");
    expect(loadEnvironment("prod", { envDir }).name).to.equal("prod");
    expect(listEnvironments({ envDir })).to.not.include(".#prod");
  });

  it("makes a dangling stack file invalid for its own stack only", () => {
    const envDir = copyWith("dev", () => undefined);
    symlinkSync(path.join(envDir, "gone.yaml"), path.join(envDir, "qa2.yaml"));
    expect(loadEnvironment("dev", { envDir }).name).to.equal("dev");
    expect(() => loadEnvironment("qa2", { envDir })).to.throw();
  });

  it("sees a new sibling's overlapping CIDR at once", () => {
    const envDir = copyWith("dev", () => undefined);
    expect(cidrOverlaps(loadEnvironment("dev", { envDir }))).to.deep.equal([]);
    writeFileSync(path.join(envDir, "dev2.yaml"), readFileSync(path.join(envDir, "dev.yaml"), "utf8"));
    expect(cidrOverlaps(loadEnvironment("dev", { envDir })).map((o) => o.stack)).to.deep.equal(["dev2"]);
  });

  it("refuses deploy.allowUnscannedImages in production without a reason", () => {
    const e = refusal("prod", (d) => (d.deploy.allowUnscannedImages = true));
    expect(e.message).to.contain("deploy.allowUnscannedImagesReason").and.to.contain("is required in production");
    const envDir = copyWith("prod", (d) => Object.assign(d.deploy, { allowUnscannedImages: true, allowUnscannedImagesReason: "the registry's scanner does not support this base image (SEC-42)" }));
    expect(loadEnvironment("prod", { envDir }).deploy.allowUnscannedImages).to.equal(true);
    expect(loadEnvironment("dev", { envDir: copyWith("dev", (d) => (d.deploy.allowUnscannedImages = true)) }).deploy.allowUnscannedImages).to.equal(true);
  });

  it("answers not found for a well-formed stack name with no file", () => {
    expect(() => loadEnvironment("nope")).to.throw(NotFoundError, /stack "nope" has no environment file.*known: dev, local, prod, qa, staging/);
  });

  describe("program", () => {
    it("runs the named directory of the repository: its absolute path, whose Pulumi.yaml main the offline engine loads", () => {
      const envDir = copyWith("dev", (doc) => (doc.program = "test/e2e/program"));
      const env = loadEnvironment("dev", { envDir });
      expect(env.program).to.equal(path.join(REPO_ROOT, "test", "e2e", "program"));
      expect(programEntry(env.program!)).to.equal(path.join(REPO_ROOT, "test", "e2e", "program", "index.ts"));
      expect(loadEnvironment("prod").program).to.equal(undefined);
      expect(programEntry(REPO_ROOT)).to.equal(path.join(REPO_ROOT, "infra"));
    });

    for (const [value, reason] of [
      ["/etc", /must be a path relative to the repository root/],
      ["../..", /lies outside the repository/],
      ["no/such/dir", /is not a directory of the repository/],
      ["infra", /holds no Pulumi.yaml/],
      ["node_modules/@pulumi/pulumi", /outside node_modules|holds no Pulumi.yaml/],
    ] as const) {
      it(`refuses program: ${value}, naming the field`, () => {
        const err = refusal("dev", (doc) => (doc.program = value));
        expect(err.message).to.match(/dev\.yaml: program: /).and.to.match(reason);
      });
    }
  });
});
