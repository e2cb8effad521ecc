/**
 * End to end on the real offline engine (the repository's program under Pulumi's mock runtime), over
 * HTTP: deploy `local` with its events streaming, its outputs and deployments; a hand change to the
 * offline world found by a drift check and shown by /metrics; a rollback.
 */
import { expect } from "chai";
import { cpSync, mkdtempSync, rmSync } from "fs";
import { tmpdir } from "os";
import * as path from "path";
import { DEFAULT_ENV_DIR } from "../../automation/environment";
import { readJson, resourceOf, stackFiles, TYPES, writeJson } from "../automation/support/offline-files";
import { startTestServer, type TestServer } from "./support/server";
import { openSse } from "./support/sse";

describe("api: end to end on the offline engine", function () {
  this.timeout(120_000);
  let t: TestServer;
  let envDir: string;
  let firstDeployment: string;

  before(async () => {
    envDir = mkdtempSync(path.join(tmpdir(), "deployer-envs-"));
    cpSync(path.join(DEFAULT_ENV_DIR, "local.yaml"), path.join(envDir, "local.yaml"));
    t = await startTestServer({ engine: "offline", envDir, sseHeartbeatMs: 1_000 });
  });

  after(async () => {
    await t.close();
    rmSync(envDir, { recursive: true, force: true });
  });

  it("deploys local over HTTP, streaming its events while it runs, to succeeded", async () => {
    const res = await t.http().post("/v1/stacks/local/deployments").send({ version: "1.0.0", message: "first over HTTP" });
    expect(res.status).to.equal(202);
    firstDeployment = res.body.id;
    const stream = await openSse(`${t.url}${res.headers.location}/events`, t.auth());
    const step = await stream.next((e) => e.event === "step");
    expect(step.data.step.urn).to.match(/^urn:pulumi:local::/);
    const end = await stream.next((e) => e.event === "end");
    expect(end.data, JSON.stringify(end.data.error)).to.include({ id: firstDeployment, status: "succeeded", engine: "offline", version: "1.0.0" });
    expect(end.data.changes.create).to.be.greaterThan(10);
    expect(stream.events.some((e) => e.event === "check")).to.equal(true);
  });

  it("lists it among the stack's deployments and serves the stack's outputs", async () => {
    const deployments = await t.http().get("/v1/stacks/local/deployments");
    expect(deployments.body.deployments.map((d: { id: string }) => d.id)).to.deep.equal([firstDeployment]);
    // With the program config it ran with: what a rollback to it restores, and what the dashboard compares.
    const config = deployments.body.deployments[0].config;
    expect(config).to.include({ "pulumi-aws-deployer:version": "1.0.0", "aws:region": "us-east-1" });
    expect(JSON.parse(config["pulumi-aws-deployer:settings"]).aws.region).to.equal("us-east-1");
    const outputs = await t.http().get("/v1/stacks/local/outputs");
    expect(outputs.status).to.equal(200);
    expect(outputs.body.engine).to.equal("offline");
    expect(outputs.body.outputs).to.include.keys("vpcId", "url", "serviceName", "imageRef");
    for (const o of Object.values(outputs.body.outputs) as { value: unknown; secret: boolean }[]) if (o.secret) expect(o.value).to.equal("[secret]");
  });

  it("reports a hand change to the offline world in a drift check, and /metrics shows the stack drifted", async () => {
    const files = stackFiles(t.dataDir, "local");
    const world = readJson(files.world);
    const { urn, resource } = resourceOf(world, TYPES.vpc);
    resource.outputs.tags.Owner = "someone-in-the-console";
    writeJson(files.world, world);

    const res = await t.http().post("/v1/stacks/local/drift-checks").send({});
    expect(res.status).to.equal(202);
    expect((await t.done(res.body.id)).status).to.equal("succeeded");

    const report = await t.http().get("/v1/stacks/local/drift");
    expect(report.status).to.equal(200);
    expect(report.body).to.deep.include({ stack: "local", jobId: res.body.id, drifted: true });
    expect(report.body.resources).to.deep.equal([
      { urn, type: TYPES.vpc, kind: "update", properties: [{ path: "tags.Owner", kind: "update", state: "platform", live: "someone-in-the-console" }] },
    ]);
    const metrics = await t.http().get("/metrics");
    expect(metrics.text).to.contain('deployer_stack_drifted{stack="local"} 1');
  });

  it("rolls back to the previous deployment after a second one", async () => {
    const second = await t.http().post("/v1/stacks/local/deployments").send({ version: "2.0.0" });
    expect((await t.done(second.body.id)).status).to.equal("succeeded");
    const res = await t.http().post("/v1/stacks/local/rollbacks").send({ reason: "2.0.0 misbehaves" });
    expect(res.status).to.equal(202);
    const done = await t.done(res.body.id);
    expect(done.status, done.error?.message).to.equal("succeeded");
    const job = (await t.http().get(`/v1/jobs/${res.body.id}`)).body;
    expect(job).to.include({ version: "1.0.0", rollbackOf: second.body.id, rollbackTo: firstDeployment });
  });
});
