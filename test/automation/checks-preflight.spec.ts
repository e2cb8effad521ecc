import { ExpiredTokenException, GetCallerIdentityCommand, STSClient, STSServiceException } from "@aws-sdk/client-sts";
import { mockClient } from "aws-sdk-client-mock";
import { expect } from "chai";
import { checkAccount } from "../../automation/checks/preflight";
import { loadEnvironment } from "../../automation/environment";
import { CanceledError, OperationFailedError } from "../../automation/errors";

const prod = loadEnvironment("prod"); // account 123456789012

async function rejection(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (err) {
    return err as Error;
  }
  throw new Error("expected a rejection");
}

describe("checks: preflight account check", () => {
  // The instance, not the class, is mocked: other suites' STS clients stay untouched.
  const client = new STSClient({ region: "us-east-1" });
  const sts = mockClient(client);
  afterEach(() => sts.reset());
  after(() => sts.restore());

  it("returns the caller when the account matches the environment's", async () => {
    sts.on(GetCallerIdentityCommand).resolves({ Account: "123456789012", Arn: "arn:aws:iam::123456789012:role/deployer", UserId: "AROAEXAMPLE" });
    const identity = await checkAccount(prod, { sts: client });
    expect(identity).to.deep.equal({ accountId: "123456789012", arn: "arn:aws:iam::123456789012:role/deployer" });
    expect(sts.commandCalls(GetCallerIdentityCommand)).to.have.length(1);
  });

  it("refuses another account, naming both accounts and the caller, and nothing after it runs", async () => {
    sts.on(GetCallerIdentityCommand).resolves({ Account: "210987654321", Arn: "arn:aws:sts::210987654321:assumed-role/dev-admin/alice" });
    let nextStepRan = false;
    const preflightThenDeploy = async () => {
      await checkAccount(prod, { sts: client });
      nextStepRan = true;
    };
    const err = await rejection(preflightThenDeploy());
    expect(err).to.be.instanceOf(OperationFailedError);
    expect(err.message)
      .to.contain("caller is arn:aws:sts::210987654321:assumed-role/dev-admin/alice in account 210987654321")
      .and.to.contain("prod deploys to account 123456789012 (aws.accountId in ")
      .and.to.contain("prod.yaml")
      .and.to.contain("AWS_PROFILE");
    expect((err as OperationFailedError).details).to.deep.include({ field: "aws.accountId" });
    expect((err as OperationFailedError).details).to.deep.include({ callerAccount: "210987654321", expectedAccount: "123456789012" });
    expect(nextStepRan).to.equal(false);
    expect(sts.calls()).to.have.length(1);
  });

  it("says the credentials are missing when no provider found any, and how to provide them", async () => {
    const missing = Object.assign(new Error("Could not load credentials from any providers"), { name: "CredentialsProviderError" });
    sts.on(GetCallerIdentityCommand).rejects(missing);
    const err = await rejection(checkAccount(prod, { sts: client }));
    expect(err).to.be.instanceOf(OperationFailedError);
    expect(err.message).to.contain("AWS credentials are missing or expired").and.to.contain("AWS_PROFILE").and.to.contain("aws sts get-caller-identity");
  });

  it("says the credentials are expired for an expired session token, without echoing credential values", async () => {
    sts.on(GetCallerIdentityCommand).rejects(new ExpiredTokenException({ message: "The security token included in the request is expired: ASIAEXAMPLEKEY1234567", $metadata: {} }));
    const err = await rejection(checkAccount(prod, { sts: client }));
    expect(err).to.be.instanceOf(OperationFailedError);
    expect(err.message).to.contain("missing or expired (ExpiredTokenException)").and.not.to.contain("ASIA");
    expect(err.cause).to.equal(undefined);
  });

  it("treats an invalid access key as a credential problem", async () => {
    sts.on(GetCallerIdentityCommand).rejects(new STSServiceException({ name: "InvalidClientTokenId", $fault: "client", message: "The security token included in the request is invalid.", $metadata: { httpStatusCode: 403 } }));
    const err = await rejection(checkAccount(prod, { sts: client }));
    expect(err.message).to.contain("missing or expired (InvalidClientTokenId)");
  });

  it("reports any other STS failure as an account that could not be confirmed", async () => {
    sts.on(GetCallerIdentityCommand).rejects(Object.assign(new Error("getaddrinfo ENOTFOUND sts.us-east-1.amazonaws.com"), { name: "ENOTFOUND" }));
    const err = await rejection(checkAccount(prod, { sts: client }));
    expect(err).to.be.instanceOf(OperationFailedError);
    expect(err.message).to.contain("could not confirm the AWS account for prod").and.to.contain("ENOTFOUND");
  });

  it("does not call STS once the signal has aborted", async () => {
    const controller = new AbortController();
    controller.abort();
    const err = await rejection(checkAccount(prod, { sts: client, signal: controller.signal }));
    expect(err).to.be.instanceOf(CanceledError);
    expect(sts.calls()).to.have.length(0);
  });
});
