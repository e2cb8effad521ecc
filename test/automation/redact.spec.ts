/** Secret values in free text: masked by substring only when long enough to be unambiguous; credential fields always. */
import { expect } from "chai";
import { Writable } from "stream";
import { createLogger } from "../../api/logging";
import { startTestServer } from "../api/support/server";
import { MIN_MASKED_LENGTH, redactDeep, redactSecrets, shortSecretVariables, shortSecretWarning } from "../../automation/redact";

/** A pino destination that keeps the lines. */
function capture(): { stream: Writable; lines: string[] } {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk, _enc, done) {
      lines.push(...chunk.toString().split("\n").filter(Boolean));
      done();
    },
  });
  return { stream, lines };
}

describe("redaction of short secret values", () => {
  it("leaves free text alone for a value shorter than 6 characters, and masks one of 6 or more", () => {
    expect(MIN_MASKED_LENGTH).to.equal(6);
    expect(redactSecrets("pulumi-aws-deployer port", { PULUMI_CONFIG_PASSPHRASE: "p" })).to.equal("pulumi-aws-deployer port");
    expect(redactSecrets("key hunt2 here", { AWS_SECRET_ACCESS_KEY: "hunt2" })).to.equal("key hunt2 here");
    expect(redactSecrets("key hunter here", { AWS_SECRET_ACCESS_KEY: "hunter" })).to.equal("key [secret] here");
    expect(redactSecrets("x abc y", {}, ["abc"])).to.equal("x abc y");
  });

  it("still censors fields that name a credential, whatever their value", () => {
    expect(redactDeep({ passphrase: "p", service: "pulumi-aws-deployer" }, { PULUMI_CONFIG_PASSPHRASE: "p" })).to.deep.equal({ passphrase: "[secret]", service: "pulumi-aws-deployer" });
  });

  it("keeps the service's log lines whole with PULUMI_CONFIG_PASSPHRASE=p, and censors credential fields", () => {
    const { stream, lines } = capture();
    const logger = createLogger({ env: { PULUMI_CONFIG_PASSPHRASE: "p" }, destination: stream });
    logger.info({ port: 8080, passphrase: "p" }, "listening");
    const line = JSON.parse(lines[0]);
    expect(line).to.deep.include({ service: "pulumi-aws-deployer", port: 8080, passphrase: "[secret]", msg: "listening" });
  });

  it("names the secret variables too short to mask, never their values", () => {
    const env = { PULUMI_CONFIG_PASSPHRASE: "q7", AWS_SECRET_ACCESS_KEY: "long-enough-secret", PULUMI_ACCESS_TOKEN: "" };
    expect(shortSecretVariables(env)).to.deep.equal(["PULUMI_CONFIG_PASSPHRASE"]);
    const warning = shortSecretWarning(shortSecretVariables(env));
    expect(warning).to.contain("PULUMI_CONFIG_PASSPHRASE").and.to.contain("too short to be masked").and.not.to.contain("q7");
  });

  it("warns once at the service's start, naming the variable and not its value", async () => {
    const { stream, lines } = capture();
    const processEnv = { PULUMI_CONFIG_PASSPHRASE: "q7" };
    const t = await startTestServer({ processEnv, logger: createLogger({ env: processEnv, destination: stream }) });
    try {
      const warnings = lines.map((l) => JSON.parse(l)).filter((l) => /too short to be masked/.test(l.msg));
      expect(warnings).to.have.length(1);
      expect(warnings[0].variables).to.deep.equal(["PULUMI_CONFIG_PASSPHRASE"]);
      expect(JSON.stringify(warnings[0])).to.not.contain("q7");
    } finally {
      await t.close();
    }
  });
});
