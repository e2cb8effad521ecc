/**
 * The image gate when there is no scan result (the scan failed, timed out, or the image is not in
 * ECR): production fails closed unless the environment opts out with a reason; the job, the audit
 * trail and the approvers see which happened.
 */
import { expect } from "chai";
import type { ImageScanner } from "../../automation/checks/image-scan";
import { GateError } from "../../automation/errors";
import { approvalRequestFor } from "../../automation/jobs/approvals";
import type { OperationEvent } from "../../automation/jobs/types";
import { openStore, type Job, type Store } from "../../automation/store";
import { copyEnvironments, environment, type EnvDoc } from "./support/environments";
import { runJob } from "./support/jobs";
import { startTestServer } from "../api/support/server";
import { tempDirs } from "./support/temp";
import { TestEngine, testDeps } from "./support/test-engine";

const REGISTRY = "123456789012.dkr.ecr.us-east-1.amazonaws.com/web";
const unscanned: ImageScanner = { findings: async () => ({ status: "unsupported", findings: [], reason: "ECR scan status FAILED: UnsupportedImageError" }) };

/** The environment with a prebuilt image (so the gate scans `<image>:<version>`) and `deploy` edited. */
function withImage(stack: string, deploy: Record<string, unknown> = {}, dir: string) {
  const edit = (doc: EnvDoc) => {
    delete doc.app.build;
    doc.app.image = REGISTRY;
    Object.assign(doc.deploy, deploy);
    doc.deploy.approvals = { required: 0 };
  };
  return environment(stack, copyEnvironments(dir, { [stack]: edit }));
}

function checks(events: readonly OperationEvent[]): { name: string; ok: boolean; skipped?: boolean; detail: string }[] {
  return events.flatMap((e) => (e.type === "check" ? [e as unknown as { name: string; ok: boolean; skipped?: boolean; detail: string }] : []));
}

describe("the image gate without a scan result", function () {
  this.timeout(30_000);
  const temp = tempDirs();
  let store: Store;
  let engine: TestEngine;

  beforeEach(() => {
    store = openStore(temp.make("image-gate-"));
    engine = new TestEngine();
  });

  afterEach(() => store.close());
  after(() => temp.cleanup());

  it("stops a production deployment before anything changes, saying why, in the job and the audit trail", async () => {
    const prod = withImage("prod", {}, temp.make("envs-"));

    const ran = await runJob(testDeps(store, engine, { scannerFor: () => unscanned }), prod, { operation: "up", params: { version: "1.0.0" } });

    expect(ran.job.status).to.equal("failed");
    expect(ran.error).to.be.instanceOf(GateError);
    expect(ran.job.error?.code).to.equal("blocked");
    expect(ran.job.error?.message).to.contain(`image scan unavailable for ${REGISTRY}:1.0.0`).and.to.contain("UnsupportedImageError").and.to.contain("deploy.allowUnscannedImages");
    expect(engine.calls.map((c) => c.op)).to.deep.equal(["preview"]);
    expect(checks(ran.events)).to.deep.include({ type: "check", name: "image-scan", ok: false, detail: "not scanned: ECR scan status FAILED: UnsupportedImageError" } as never);
    const [entry] = await store.listAudit({ stack: "prod" });
    expect(entry).to.deep.include({ action: "image-scan unavailable", result: "denied", jobId: ran.job.id, actor: "tester" });
    expect(entry.details).to.deep.include({ imageRef: `${REGISTRY}:1.0.0`, allowUnscannedImages: false });
  });

  it("deploys in production when the environment opts out with a reason, and says so to the job and the audit trail", async () => {
    const reason = "the base image's OS is not supported by ECR basic scanning; scanned by Trivy in CI (SEC-42)";
    const prod = withImage("prod", { allowUnscannedImages: true, allowUnscannedImagesReason: reason }, temp.make("envs-"));

    const ran = await runJob(testDeps(store, engine, { scannerFor: () => unscanned }), prod, { operation: "up", params: { version: "1.0.0" } });

    expect(ran.job.status).to.equal("succeeded");
    const check = checks(ran.events).find((c) => c.name === "image-scan");
    expect(check).to.deep.include({ ok: true, skipped: true });
    expect(check?.detail).to.contain("deploy.allowUnscannedImages").and.to.contain(reason);
    const [entry] = await store.listAudit({ stack: "prod" });
    expect(entry).to.deep.include({ action: "image-scan unavailable", result: "allowed", jobId: ran.job.id });
    expect(entry.details).to.deep.include({ allowUnscannedImages: true, reason });
  });

  it("deploys outside production with a warning, as before", async () => {
    const dev = withImage("dev", {}, temp.make("envs-"));

    const ran = await runJob(testDeps(store, engine, { scannerFor: () => unscanned }), dev, { operation: "up", params: { version: "1.0.0" } });

    expect(ran.job.status).to.equal("succeeded");
    expect(checks(ran.events).find((c) => c.name === "image-scan")).to.deep.include({ ok: true, skipped: true });
  });

  it("shows approvers that the environment lets unscanned images deploy, and why", () => {
    const reason = "scanned by Trivy in CI (SEC-42)";
    const prod = withImage("prod", { allowUnscannedImages: true, allowUnscannedImagesReason: reason }, temp.make("envs-"));
    const preview = { changes: { create: 0, update: 1, delete: 0, replace: 0, same: 0 }, steps: [] };

    expect(approvalRequestFor(preview, 0, 24, undefined, prod.deploy).unscannedImagesAllowed).to.deep.equal({ reason });
    expect(approvalRequestFor(preview, 0, 24, undefined, environment("prod").deploy)).to.not.have.property("unscannedImagesAllowed");
  });

  it("shows approvers on GET /v1/jobs/:id, while the job awaits them, that an unscanned image would deploy, and why", async () => {
    const reason = "scanned by Trivy in CI (SEC-42)";
    const t = await startTestServer({
      stacks: ["s1"],
      editEnv: (_name, text) => text.replace(/^deploy:\n/m, `deploy:\n  approvals: { required: 1 }\n  allowUnscannedImages: true\n  allowUnscannedImagesReason: "${reason}"\n`),
      principals: [{ name: "appr", roles: { "*": ["viewer", "approver"] } }],
    });
    try {
      const waiting = new Promise<Job>((resolve) => t.server.queue.on("job:awaiting_approval", resolve));
      const posted = await t.http().post("/v1/stacks/s1/deployments").send({ version: "1.0.0" });
      expect((await waiting).id).to.equal(posted.body.id);

      const seen = await t.as("appr").get(`/v1/jobs/${posted.body.id}`);

      expect(seen.body).to.deep.include({ status: "awaiting_approval", unscannedImagesAllowed: { reason } });
      const log = await t.as("appr").get(`/v1/jobs/${posted.body.id}/log`);
      expect(log.text).to.contain(`an image with no scan result will deploy anyway (deploy.allowUnscannedImages: ${reason})`);
    } finally {
      await t.close();
    }
  });
});
