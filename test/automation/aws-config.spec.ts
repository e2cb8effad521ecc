import { STSClient } from "@aws-sdk/client-sts";
import { expect } from "chai";
import { mkdtempSync, rmSync } from "fs";
import { tmpdir } from "os";
import * as path from "path";
import { awsClientConfig, awsEndpointEnv, awsEndpointFor, serviceEndpointVariable } from "../../automation/checks/aws-config";
import { requireMotoOrSkip } from "../support/moto";

describe("AWS client configuration from the caller's env", () => {
  it("names the per-service variables as the SDKs do", () => {
    expect(serviceEndpointVariable("STS")).to.equal("AWS_ENDPOINT_URL_STS");
    expect(serviceEndpointVariable("ECR")).to.equal("AWS_ENDPOINT_URL_ECR");
    expect(serviceEndpointVariable("ECS")).to.equal("AWS_ENDPOINT_URL_ECS");
    expect(serviceEndpointVariable("Elastic Load Balancing v2")).to.equal("AWS_ENDPOINT_URL_ELASTIC_LOAD_BALANCING_V2");
    expect(serviceEndpointVariable("CloudWatch")).to.equal("AWS_ENDPOINT_URL_CLOUDWATCH");
  });

  it("takes the service's own endpoint first, then AWS_ENDPOINT_URL, then none", () => {
    const env = { AWS_ENDPOINT_URL: "http://all:1", AWS_ENDPOINT_URL_ECR: "http://ecr:2" };
    expect(awsEndpointFor(env, "ECR")).to.equal("http://ecr:2");
    expect(awsEndpointFor(env, "ECS")).to.equal("http://all:1");
    expect(awsEndpointFor({}, "ECS")).to.equal(undefined);
    expect(awsEndpointFor({ AWS_ENDPOINT_URL: "" }, "ECS")).to.equal(undefined);
  });

  it("ignores configured endpoints when AWS_IGNORE_CONFIGURED_ENDPOINT_URLS is true", () => {
    expect(awsEndpointFor({ AWS_ENDPOINT_URL: "http://all:1", AWS_ENDPOINT_URL_STS: "http://sts:2", AWS_IGNORE_CONFIGURED_ENDPOINT_URLS: "true" }, "STS")).to.equal(undefined);
  });

  it("uses the env's static credentials, with the session token when there is one, and the given region", () => {
    const config = awsClientConfig({ AWS_ACCESS_KEY_ID: "AKIDEXAMPLE", AWS_SECRET_ACCESS_KEY: "s3cr3t", AWS_SESSION_TOKEN: "tok", AWS_REGION: "eu-west-1", AWS_PROFILE: "prod" }, "STS", "us-east-1");
    expect(config).to.deep.equal({ region: "us-east-1", credentials: { accessKeyId: "AKIDEXAMPLE", secretAccessKey: "s3cr3t", sessionToken: "tok" } });
  });

  it("uses the env's profile when it has no static credentials, and leaves the rest to the SDK's defaults", () => {
    expect(awsClientConfig({ AWS_PROFILE: "prod-deployer" }, "ECS", "us-east-1")).to.deep.equal({ region: "us-east-1", profile: "prod-deployer" });
    expect(awsClientConfig({ AWS_ACCESS_KEY_ID: "AKIDEXAMPLE" }, "ECS", "us-east-1")).to.deep.equal({ region: "us-east-1" });
  });

  it("gives a client built from it the endpoint of the caller's env, not of this process", async () => {
    const client = new STSClient(awsClientConfig({ AWS_ENDPOINT_URL_STS: "http://127.0.0.1:4566", AWS_ACCESS_KEY_ID: "a", AWS_SECRET_ACCESS_KEY: "b" }, "STS", "us-east-1"));
    const endpoint = await client.config.endpoint!();
    expect(`${endpoint.protocol}//${endpoint.hostname}:${endpoint.port}`).to.equal("http://127.0.0.1:4566");
    client.destroy();
  });

  it("passes on to the engine's processes every endpoint variable, the credentials, the profile and the region, nothing else", () => {
    const env = {
      AWS_ENDPOINT_URL: "http://127.0.0.1:5000",
      AWS_ENDPOINT_URL_S3: "http://127.0.0.1:5001",
      AWS_ENDPOINT_URL_KMS: "http://127.0.0.1:5002",
      AWS_ACCESS_KEY_ID: "testing",
      AWS_SECRET_ACCESS_KEY: "testing",
      AWS_SESSION_TOKEN: "tok",
      AWS_REGION: "us-east-1",
      AWS_DEFAULT_REGION: "us-east-1",
      AWS_PROFILE: "p",
      AWS_SOMETHING_ELSE: "x",
      AWS_ENDPOINT_URLX: "not a setting",
      PULUMI_CONFIG_PASSPHRASE: "never",
      PATH: "/usr/bin",
      AWS_CA_BUNDLE: "",
    };
    expect(awsEndpointEnv(env)).to.deep.equal({
      AWS_ENDPOINT_URL: "http://127.0.0.1:5000",
      AWS_ENDPOINT_URL_S3: "http://127.0.0.1:5001",
      AWS_ENDPOINT_URL_KMS: "http://127.0.0.1:5002",
      AWS_ACCESS_KEY_ID: "testing",
      AWS_SECRET_ACCESS_KEY: "testing",
      AWS_SESSION_TOKEN: "tok",
      AWS_REGION: "us-east-1",
      AWS_DEFAULT_REGION: "us-east-1",
      AWS_PROFILE: "p",
    });
  });
});

describe("requireMotoOrSkip", () => {
  const saved = { tools: process.env.DEPLOYER_TOOLS_DIR, ci: process.env.CI };
  let empty: string;
  beforeEach(() => {
    empty = mkdtempSync(path.join(tmpdir(), "no-moto-"));
    process.env.DEPLOYER_TOOLS_DIR = empty;
  });
  afterEach(() => {
    for (const [name, value] of [["DEPLOYER_TOOLS_DIR", saved.tools], ["CI", saved.ci]] as const) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
    rmSync(empty, { recursive: true, force: true });
  });

  /** A stand-in for mocha's context: records a skip instead of ending the test. */
  const context = () => {
    const ctx = { skipped: false, skip: () => void (ctx.skipped = true) };
    return ctx;
  };

  it("skips the suite when moto is not installed on a developer machine", () => {
    delete process.env.CI;
    const ctx = context();
    const log = console.log;
    const lines: string[] = [];
    console.log = (line: string) => void lines.push(line);
    try {
      requireMotoOrSkip(ctx as unknown as Mocha.Context);
    } finally {
      console.log = log;
    }
    expect(ctx.skipped).to.equal(true);
    expect(lines).to.have.length(1);
    expect(lines[0]).to.contain("npm run moto:install");
  });

  it("fails instead when CI=true", () => {
    process.env.CI = "true";
    const ctx = context();
    expect(() => requireMotoOrSkip(ctx as unknown as Mocha.Context)).to.throw(/moto is not installed at .*npm run moto:install.*CI runs every moto suite/);
    expect(ctx.skipped).to.equal(false);
  });
});
