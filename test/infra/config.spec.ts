import { expect } from "chai";
import { settingsSchema, type SettingsInput } from "../../infra/config";
import { devInput, prodInput, variant } from "./fixtures";

/** The first issue the schema reports for `input`, as `path: message`; undefined when it parses. */
function refusal(input: SettingsInput): string | undefined {
  const r = settingsSchema.safeParse(input);
  if (r.success) return undefined;
  const issue = r.error.issues[0];
  return `${issue.path.join(".")}: ${issue.message}`;
}

describe("infra/config: what AWS would refuse is refused at load", () => {
  it("accepts the fixtures", () => {
    expect(refusal(devInput)).to.equal(undefined);
    expect(refusal(prodInput)).to.equal(undefined);
  });

  describe("certificate and domain", () => {
    it("refuses a certificate ARN whose id is not a UUID, as ACM's are", () => {
      expect(refusal(variant(prodInput, (s) => (s.app.certificateArn = "arn:aws:acm:us-east-1:123456789012:certificate/6f1d2b8a-prod-web")))).to.match(/^app\.certificateArn: must be an ACM certificate ARN.*UUIDs/);
    });

    it("refuses a certificate without a domain, since none can cover the load balancer's name", () => {
      expect(refusal(variant(prodInput, (s) => delete s.app.domain))).to.match(/^app\.certificateArn: needs app\.domain/);
    });

    it("refuses a certificate from another region or account", () => {
      expect(refusal(variant(prodInput, (s) => (s.app.certificateArn = s.app.certificateArn!.replace("us-east-1", "eu-west-1"))))).to.match(/^app\.certificateArn: is in eu-west-1/);
      expect(refusal(variant(prodInput, (s) => (s.app.certificateArn = s.app.certificateArn!.replace("123456789012", "210987654321"))))).to.match(/^app\.certificateArn: belongs to account 210987654321/);
    });

    it("refuses a domain that is not a DNS name, or a hosted zone id of the wrong shape", () => {
      expect(refusal(variant(prodInput, (s) => (s.app.domain = { name: "Web Prod", hostedZoneId: "Z0123456789ABCDEFGHIJ" })))).to.match(/^app\.domain\.name: /);
      expect(refusal(variant(prodInput, (s) => (s.app.domain = { name: "web.example.com", hostedZoneId: "example.com" })))).to.match(/^app\.domain\.hostedZoneId: /);
    });
  });

  describe("alarm subscriptions", () => {
    it("refuses an alarm target that is none of email, https or topicArn", () => {
      expect(refusal(variant(prodInput, (s) => (s.alarms = { notify: [{ slack: "#ops" } as never] })))).to.match(/^alarms\.notify\.0: must be \{ email/);
    });

    it("refuses an http:// endpoint", () => {
      expect(refusal(variant(prodInput, (s) => (s.alarms = { notify: [{ https: "http://hooks.example.com" }] })))).to.match(/^alarms\.notify\.0/);
    });
  });

  describe("log retention", () => {
    it("refuses an application log retention CloudWatch Logs does not accept", () => {
      expect(refusal(variant(devInput, (s) => (s.app.logRetentionDays = 45)))).to.match(/^app\.logRetentionDays: must be one of the retention periods CloudWatch Logs accepts: 1, 3, 5, 7, 14, 30/);
    });

    it("refuses a flow-log retention CloudWatch Logs does not accept", () => {
      expect(refusal(variant(devInput, (s) => (s.network.flowLogRetentionDays = 10)))).to.match(/^network\.flowLogRetentionDays: must be one of/);
    });

    it("accepts every value CloudWatch Logs lists", () => {
      for (const days of [1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653]) {
        expect(refusal(variant(devInput, (s) => (s.app.logRetentionDays = days))), String(days)).to.equal(undefined);
      }
    });
  });

  describe("secret references", () => {
    const arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/web/stripe-AbCdEf";
    const withSecret = (ref: string) => variant(devInput, (s) => (s.app.secrets = { STRIPE_KEY: { secretsManager: ref } }));

    it("accepts a complete ARN, a partial one and a JSON-key reference", () => {
      for (const ref of [arn, "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/web/stripe", `${arn}:apiKey::`, `${arn}::AWSPREVIOUS:`]) {
        expect(refusal(withSecret(ref)), ref).to.equal(undefined);
      }
    });

    it("refuses a JSON key without its version fields, which ECS would read as part of the name", () => {
      expect(refusal(withSecret(`${arn}:apiKey`))).to.match(/^app\.secrets\.STRIPE_KEY\.secretsManager: "apiKey" after the secret name must be/);
    });

    it("refuses a reference naming both a version stage and a version id", () => {
      expect(refusal(withSecret(`${arn}:k:AWSCURRENT:0d1e2f`))).to.match(/both a version stage and a version id/);
    });

    it("refuses something that is not a secret ARN", () => {
      expect(refusal(withSecret("arn:aws:ssm:us-east-1:123456789012:parameter/x"))).to.match(/must be a Secrets Manager secret ARN/);
    });
  });

  describe("container health check", () => {
    it("refuses a container health command on localhost", () => {
      expect(refusal(variant(devInput, (s) => (s.app.healthCheck = { path: "/health", containerCommand: ["CMD-SHELL", "wget -qO- http://localhost:8080/health"] })))).to.match(/^app\.healthCheck\.containerCommand: must not use localhost/);
    });

    it("refuses a command that is neither CMD nor CMD-SHELL", () => {
      expect(refusal(variant(devInput, (s) => (s.app.healthCheck = { path: "/health", containerCommand: ["wget", "http://127.0.0.1:8080/health"] })))).to.match(/^app\.healthCheck\.containerCommand/);
    });
  });

  describe("database", () => {
    it("refuses a database without a pinned engine version", () => {
      expect(refusal(variant(prodInput, (s) => delete (s.database as { engineVersion?: string }).engineVersion))).to.match(/^database\.engineVersion: /);
    });

    it("refuses a one-part MySQL version", () => {
      expect(refusal(variant(prodInput, (s) => (s.database = { engine: "mysql", engineVersion: "8", instanceClass: "db.t4g.medium", multiAz: true })))).to.match(/^database\.engineVersion: "8" is not a MySQL version/);
    });

    it("refuses a hand-made DATABASE_URL secret when the environment has a database, naming what the task gets instead", () => {
      expect(refusal(variant(prodInput, (s) => (s.app.secrets = { DATABASE_URL: { ssm: "/prod/web/database-url" } })))).to.match(/^app\.secrets\.DATABASE_URL: cannot track this environment's database: .*rotates the password every 7 days.*DATABASE_PASSWORD/);
    });

    it("refuses setting a database variable the deployer sets itself", () => {
      expect(refusal(variant(prodInput, (s) => (s.app.environment = { DATABASE_HOST: "db.internal" })))).to.match(/^app\.environment\.DATABASE_HOST: is set by the deployer from the environment's database/);
    });

    it("refuses a storage autoscaling ceiling at or below the allocated size", () => {
      expect(refusal(variant(prodInput, (s) => (s.database = { ...s.database!, allocatedStorageGb: 100, maxAllocatedStorageGb: 100 })))).to.match(/^database\.maxAllocatedStorageGb: 100 must be above allocatedStorageGb/);
    });
  });
});
