import { expect } from "chai";
import type { EvaluatedResource, Evaluation } from "../../automation/program/evaluate";
import { Security, databasePort, executionRolePolicy, type SecurityArgs } from "../../infra/security";
import { ACCOUNT, REGION, STRIPE_SECRET_ARN, devInput, evaluateDev, evaluateProd, evaluateSerially, input, list, named, ofType, programConfig, statements, variant } from "./fixtures";

const SG = "aws:ec2/securityGroup:SecurityGroup";
const INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule";
const EGRESS = "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule";
const ROLE = "aws:iam/role:Role";
const ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy";

const rulesOf = (ev: Evaluation, type: string, sg: EvaluatedResource) => ofType(ev, type).filter((r) => input(r, "securityGroupId") === sg.id);
const port = (r: EvaluatedResource) => `${input(r, "ipProtocol")}/${input(r, "fromPort")}-${input(r, "toPort")}`;

describe("infra/security", () => {
  let dev: Evaluation;
  let prod: Evaluation;

  before(async () => {
    dev = await evaluateDev();
    prod = await evaluateProd();
  });

  describe("security groups", () => {
    it("opens the load balancer on 80 and 443 to every IPv4 and IPv6 address, and nothing else", () => {
      const lb = named(prod, SG, "web-prod-lb-sg");
      const ingress = rulesOf(prod, INGRESS, lb).map((r) => `${port(r)} ${input(r, "cidrIpv4") ?? input(r, "cidrIpv6")}`);
      expect(ingress.sort()).to.deep.equal(["tcp/443-443 0.0.0.0/0", "tcp/443-443 ::/0", "tcp/80-80 0.0.0.0/0", "tcp/80-80 ::/0"]);
    });

    it("allows internet ingress on no group but the load balancer's", () => {
      const lb = named(prod, SG, "web-prod-lb-sg");
      const open = ofType(prod, INGRESS).filter((r) => input(r, "cidrIpv4") !== undefined || input(r, "cidrIpv6") !== undefined);
      expect(open.map((r) => input(r, "securityGroupId"))).to.satisfy((ids: unknown[]) => ids.every((id) => id === lb.id));
    });

    it("lets the service group be reached only from the load balancer group, on the app port", () => {
      const service = named(prod, SG, "web-prod-service-sg");
      const ingress = rulesOf(prod, INGRESS, service);
      expect(ingress).to.have.length(1);
      expect(ingress[0].inputs).to.include({ referencedSecurityGroupId: named(prod, SG, "web-prod-lb-sg").id, fromPort: 8080, toPort: 8080, ipProtocol: "tcp" });
    });

    it("lets the load balancer send only to the service group, on the app port", () => {
      const egress = rulesOf(prod, EGRESS, named(prod, SG, "web-prod-lb-sg"));
      expect(egress).to.have.length(1);
      expect(egress[0].inputs).to.include({ referencedSecurityGroupId: named(prod, SG, "web-prod-service-sg").id, fromPort: 8080 });
    });

    it("opens the database's port 5432 to the service group only", () => {
      const db = named(prod, SG, "web-prod-db-sg");
      const ingress = rulesOf(prod, INGRESS, db);
      expect(ingress).to.have.length(1);
      expect(ingress[0].inputs).to.include({ referencedSecurityGroupId: named(prod, SG, "web-prod-service-sg").id, fromPort: 5432, toPort: 5432 });
      expect(rulesOf(prod, EGRESS, named(prod, SG, "web-prod-service-sg")).map(port).sort()).to.deep.equal(["tcp/443-443", "tcp/5432-5432"]);
    });

    it("creates no database group, and no egress to one, without a database", () => {
      expect(ofType(dev, SG).map((g) => g.name).sort()).to.deep.equal(["web-dev-lb-sg", "web-dev-service-sg"]);
      expect(rulesOf(dev, EGRESS, named(dev, SG, "web-dev-service-sg")).map(port)).to.deep.equal(["tcp/443-443"]);
    });

    it("uses separate rule resources, never inline rules", () => {
      for (const sg of ofType(prod, SG)) {
        expect(input(sg, "ingress"), sg.name).to.equal(undefined);
        expect(input(sg, "egress"), sg.name).to.equal(undefined);
      }
    });
  });

  describe("task execution role", () => {
    const policy = (ev: Evaluation, env: string) => statements(named(ev, ROLE_POLICY, `web-${env}-execution`), "policy");
    const statement = (ev: Evaluation, env: string, sid: string) => policy(ev, env).find((s) => s.Sid === sid);

    it("is trusted by ECS tasks of this account and region only", () => {
      const [trust] = statements(named(prod, ROLE, "web-prod-execution"), "assumeRolePolicy");
      expect(trust.Principal).to.deep.equal({ Service: "ecs-tasks.amazonaws.com" });
      expect(trust.Condition).to.deep.equal({ StringEquals: { "aws:SourceAccount": ACCOUNT }, ArnLike: { "aws:SourceArn": `arn:aws:ecs:${REGION}:${ACCOUNT}:*` } });
    });

    it("pulls images only from this deployment's repository", () => {
      const repoArn = named(prod, "aws:ecr/repository:Repository", "web-prod-repo").outputs.arn;
      expect(statement(prod, "prod", "EcrPull")).to.deep.include({ Resource: repoArn });
      expect(list(statement(prod, "prod", "EcrPull")?.Action)).to.have.members(["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"]);
    });

    it("writes logs only to the application's log group", () => {
      const groupArn = named(prod, "aws:cloudwatch/logGroup:LogGroup", "web-prod-logs").outputs.arn;
      expect(statement(prod, "prod", "WriteLogs")).to.deep.include({ Resource: `${groupArn}:*`, Action: ["logs:CreateLogStream", "logs:PutLogEvents"] });
    });

    it("reads only the SSM parameters the environment names", () => {
      expect(statement(prod, "prod", "ReadParameters")).to.deep.include({ Action: "ssm:GetParameters", Resource: [`arn:aws:ssm:${REGION}:${ACCOUNT}:parameter/prod/web/session-secret`] });
      expect(statement(dev, "dev", "ReadParameters")?.Resource).to.deep.equal([`arn:aws:ssm:${REGION}:${ACCOUNT}:parameter/dev/web/api-token`]);
    });

    it("reads only the Secrets Manager secrets the environment names, and none when it names none", () => {
      expect(statement(prod, "prod", "ReadSecrets")?.Action).to.equal("secretsmanager:GetSecretValue");
      expect(list(statement(prod, "prod", "ReadSecrets")?.Resource)).to.include.members([STRIPE_SECRET_ARN, `${STRIPE_SECRET_ARN}-??????`]);
      expect(statement(dev, "dev", "ReadSecrets")).to.equal(undefined);
    });

    it("grants a JSON-key or partial-ARN reference on the secret's ARN with its suffix wildcard, and passes the reference to ECS as written", async () => {
      const partial = `arn:aws:secretsmanager:${REGION}:${ACCOUNT}:secret:dev/web/stripe`;
      const ev = await evaluateSerially(
        programConfig(variant(devInput, (s) => (s.app.secrets = { STRIPE_KEY: { secretsManager: `${STRIPE_SECRET_ARN}:apiKey::` }, STRIPE_WEBHOOK: { secretsManager: partial } }))),
      );
      const grant = statement(ev, "dev", "ReadSecrets");
      // Each granted resource is a secret ARN (no JSON key, no version), and covers the real, suffixed ARN.
      expect(list(grant?.Resource)).to.have.members([STRIPE_SECRET_ARN, `${STRIPE_SECRET_ARN}-??????`, partial, `${partial}-??????`]);
      const glob = (pattern: string) => new RegExp(`^${pattern.replace(/[.*+^${}()|[\]\\/]/g, "\\$&").replace(/\?/g, ".")}$`);
      expect(list(grant?.Resource).some((p) => glob(p).test(`${partial}-Xy12Zw`))).to.equal(true);
      const container = JSON.parse(input(named(ev, "aws:ecs/taskDefinition:TaskDefinition", "web-dev-task"), "containerDefinitions"))[0];
      expect(container.secrets).to.deep.include({ name: "STRIPE_KEY", valueFrom: `${STRIPE_SECRET_ARN}:apiKey::` });
    });

    it("uses * as a resource only for ecr:GetAuthorizationToken, which has no resource scope", () => {
      const starred = policy(prod, "prod").filter((s) => list(s.Resource).includes("*"));
      expect(starred.map((s) => s.Action)).to.deep.equal(["ecr:GetAuthorizationToken"]);
    });
  });

  describe("task role", () => {
    it("grants the application nothing by default", () => {
      const role = named(prod, ROLE, "web-prod-task");
      expect(statements(role, "assumeRolePolicy")[0].Principal).to.deep.equal({ Service: "ecs-tasks.amazonaws.com" });
      const attached = ofType(prod, ROLE_POLICY).filter((p) => input(p, "role") === role.id);
      expect(attached).to.be.empty;
      expect(ofType(prod, "aws:iam/rolePolicyAttachment:RolePolicyAttachment")).to.be.empty;
    });
  });

  it("has no Allow statement with a wildcard action in any policy the program writes", () => {
    for (const ev of [dev, prod]) {
      for (const r of [...ofType(ev, ROLE_POLICY), ...ofType(ev, "aws:s3/bucketPolicy:BucketPolicy")]) {
        for (const s of statements(r, "policy").filter((st) => st.Effect === "Allow")) {
          expect(list(s.Action), r.name).to.not.include("*");
        }
      }
    }
  });

  describe("policy helpers", () => {
    const scope = { logGroupArn: "arn:aws:logs:us-east-1:123456789012:log-group:/ecs/x", ssmParameterArns: [], secretArns: [] };

    it("leaves out ECR permissions when the image is not in ECR", () => {
      const actions = executionRolePolicy(scope).Statement.flatMap((s) => list(s.Action as string | string[]));
      expect(actions).to.deep.equal(["logs:CreateLogStream", "logs:PutLogEvents"]);
    });

    it("knows each engine's port", () => {
      expect(databasePort("postgres")).to.equal(5432);
      expect(databasePort("mysql")).to.equal(3306);
    });
  });

  describe("argument checks", () => {
    const args: SecurityArgs = { vpcId: "vpc-1", appPort: 8080, logGroupArn: "arn", aws: { region: REGION, accountId: ACCOUNT } };

    it("refuses a port outside 1-65535, naming appPort", () => {
      expect(() => new Security("web-dev", { ...args, appPort: 70000 })).to.throw(/`appPort` is 70000/);
    });

    it("refuses a secret given as a value rather than a reference, naming the secret", () => {
      expect(() => new Security("web-dev", { ...args, secrets: { TOKEN: { ssm: "hunter2 plain" } } })).to.throw(/`secrets.TOKEN`/);
    });

    it("refuses a component name that cannot prefix its children's names", () => {
      expect(() => new Security("Web_Dev", args)).to.throw(/`name`/);
    });

    it("refuses a Secrets Manager reference with a half-written JSON-key suffix, naming the secret", () => {
      expect(() => new Security("web-dev", { ...args, secrets: { KEY: { secretsManager: `${STRIPE_SECRET_ARN}:apiKey` } } })).to.throw(/`secrets.KEY.secretsManager` "apiKey" after the secret name must be <json-key>:<version-stage>:<version-id>/);
    });
  });
});
