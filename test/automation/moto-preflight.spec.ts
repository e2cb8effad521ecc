/**
 * The account preflight against a real STS API (moto), reached through the caller's environment
 * (`AWS_ENDPOINT_URL` and credentials in the env given to `runCli`/`createDeps`, not this process's).
 * moto answers GetCallerIdentity for account 123456789012 with any credentials it did not issue, and
 * for the role's account with the credentials of an AssumeRole: that plays "credentials for another account".
 */
import { expect } from "chai";
import { AssumeRoleCommand, STSClient } from "@aws-sdk/client-sts";
import { awsClientConfig } from "../../automation/checks/aws-config";
import { checkAccount } from "../../automation/checks/preflight";
import { createDeps } from "../../automation/deps";
import { OperationFailedError } from "../../automation/errors";
import { requireMotoOrSkip, startMoto, type Moto } from "../support/moto";
import { cli } from "./support/cli";
import { copyEnvironments, environment } from "./support/environments";
import { tempDirs } from "./support/temp";
import { TestEngine } from "./support/test-engine";

describe("preflight against moto's STS", function () {
  this.timeout(60_000);
  const temp = tempDirs();
  let moto: Moto | undefined;
  let envDir: string;

  before(async function () {
    requireMotoOrSkip(this);
    moto = await startMoto();
    // prod deploys to 123456789012 (moto's account), dev to 210987654321.
    envDir = copyEnvironments(temp.make("moto-envs-"));
  });
  after(async () => {
    await moto?.stop();
    temp.cleanup();
  });

  /** The CLI as `npm run` builds it, with the real preflight and a pulumi-kind engine that records its calls. */
  function runWith(argv: string[], awsEnv: Readonly<Record<string, string>>) {
    const engine = new TestEngine({ kind: "pulumi" });
    const dataDir = temp.make("moto-data-");
    const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: process.env.HOME, DEPLOYER_DATA_DIR: dataDir, ...awsEnv };
    const run = cli([...argv, "--env-dir", envDir], { env, deps: (store) => createDeps({ store, dataDir, env, engines: { pulumi: engine } }) });
    return { engine, run };
  }

  it("confirms moto's account for the environment that deploys to it, through the endpoint in the caller's env", async () => {
    const identity = await checkAccount(environment("prod", envDir), { awsEnv: moto!.env });
    expect(identity).to.deep.equal({ accountId: moto!.accountId, arn: `arn:aws:sts::${moto!.accountId}:user/moto` });
  });

  it("asks the endpoint the caller's env names, not this process's: a closed port fails the check", async () => {
    const closed = { ...moto!.env, AWS_ENDPOINT_URL: "http://127.0.0.1:9" };
    const err = await checkAccount(environment("prod", envDir), { awsEnv: closed }).then(
      () => undefined,
      (e: Error) => e,
    );
    expect(err).to.be.instanceOf(OperationFailedError);
    expect(err!.message).to.contain("could not confirm the AWS account for prod");
  });

  it("a per-service AWS_ENDPOINT_URL_STS wins over AWS_ENDPOINT_URL", async () => {
    const env = { ...moto!.env, AWS_ENDPOINT_URL: "http://127.0.0.1:9", AWS_ENDPOINT_URL_STS: moto!.endpoint };
    const identity = await checkAccount(environment("prod", envDir), { awsEnv: env });
    expect(identity.accountId).to.equal(moto!.accountId);
  });

  it("drift --stack prod passes the preflight and reaches the engine", async () => {
    const { engine, run } = runWith(["drift", "--stack", "prod"], moto!.env);
    const result = await run;
    expect(result.code, result.stderr).to.equal(0);
    expect(engine.calls.map((c) => `${c.op} ${c.stack}`)).to.deep.equal(["drift prod"]);
  });

  it("drift --stack dev with moto's account refuses before any engine call, naming both accounts", async () => {
    const { engine, run } = runWith(["drift", "--stack", "dev"], moto!.env);
    const result = await run;
    expect(result.code).to.equal(1);
    expect(result.stderr).to.contain(`in account ${moto!.accountId}, but dev deploys to account 210987654321`);
    expect(engine.calls).to.deep.equal([]);
  });

  it("up --stack qa with moto's account refuses before any engine call", async () => {
    const { engine, run } = runWith(["up", "--stack", "qa", "--version", "1.2.3", "--yes"], moto!.env);
    const result = await run;
    expect(result.code).to.equal(1);
    expect(result.stderr).to.contain(`in account ${moto!.accountId}, but qa deploys to account 210987654321`);
    expect(engine.calls).to.deep.equal([]);
  });

  describe("with a role assumed in dev's account (210987654321)", () => {
    let roleEnv: Record<string, string>;
    before(async () => {
      const sts = new STSClient(awsClientConfig(moto!.env, "STS", "us-east-1"));
      const res = await sts.send(new AssumeRoleCommand({ RoleArn: "arn:aws:iam::210987654321:role/deployer", RoleSessionName: "ci" }));
      const c = res.Credentials!;
      roleEnv = { ...moto!.env, AWS_ACCESS_KEY_ID: c.AccessKeyId!, AWS_SECRET_ACCESS_KEY: c.SecretAccessKey!, AWS_SESSION_TOKEN: c.SessionToken! };
    });

    it("drift --stack prod refuses before any engine call, naming the assumed role", async () => {
      const { engine, run } = runWith(["drift", "--stack", "prod"], roleEnv);
      const result = await run;
      expect(result.code).to.equal(1);
      expect(result.stderr).to.contain("caller is arn:aws:sts::210987654321:assumed-role/deployer/ci in account 210987654321, but prod deploys to account 123456789012");
      expect(result.stderr).not.to.contain(roleEnv.AWS_SECRET_ACCESS_KEY);
      expect(engine.calls).to.deep.equal([]);
    });

    it("drift --stack dev passes with the same credentials", async () => {
      const { engine, run } = runWith(["drift", "--stack", "dev"], roleEnv);
      const result = await run;
      expect(result.code, result.stderr).to.equal(0);
      expect(engine.calls.map((c) => `${c.op} ${c.stack}`)).to.deep.equal(["drift dev"]);
    });
  });
});
