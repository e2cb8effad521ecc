/**
 * Secrets never leave: canary values are placed in every source a secret can come from — the bearer
 * token (and a wrong one), PULUMI_CONFIG_PASSPHRASE, the AWS credentials, the webhook secret, a
 * program's secret input and secret output, a program that prints the secret variables on stdout,
 * stderr and pulumi.log and throws an error carrying the AWS secret key — and the service runs as a real
 * process through a deploy, a second deploy, a drift check on a hand-edited world, a rollback, a failed
 * deploy and a preview, over HTTP. Then no canary may appear in any log line (stdout, stderr), SSE
 * event, job log, API response (bodies and headers, audit trail included), nor in any byte of the data
 * directory (the store and its WAL, the offline engine's files) or the tokens file.
 */
import { expect } from "chai";
import { readdirSync, readFileSync, rmSync, statSync, mkdtempSync } from "fs";
import { tmpdir } from "os";
import * as path from "path";
import { REPO_ROOT } from "../../automation/environment";
import { readJson, resourceOf, stackFiles, writeJson } from "../automation/support/offline-files";
import { testEnvDir } from "../automation/support/test-engine";
import { spawnService, type ServiceProcess } from "./support/process";
import { openSse } from "./support/sse";

const PROGRAM = path.join(REPO_ROOT, "test", "api", "fixtures", "canary-program.ts");

/** Distinctive values, each in one source. */
const ENV_CANARIES = {
  PULUMI_CONFIG_PASSPHRASE: "canary-passphrase-3f9d1c0e",
  AWS_SECRET_ACCESS_KEY: "canary-aws-secret-key-8b2e77a1",
  AWS_SESSION_TOKEN: "canary-aws-session-token-5c4a10f3",
  AWS_ACCESS_KEY_ID: "AKIACANARYKEYID9Q2XZ",
  DEPLOYER_WEBHOOK_SECRET: "canary-webhook-secret-61d0aa94",
  CANARY_SECRET_INPUT: "canary-secret-input-9e7f4211",
  CANARY_SECRET_OUTPUT: "canary-secret-output-2a6b8d55",
};
const WRONG_TOKEN = "dpl_canary-wrong-token-77c1b9e0";

function filesUnder(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const full = path.join(dir, name);
    if (statSync(full).isDirectory()) out.push(...filesUnder(full));
    else out.push(full);
  }
  return out;
}

describe("api: no secret leaves the service (canaries in every source)", function () {
  this.timeout(180_000);
  let dataDir: string;
  let envDir: string;
  let s: ServiceProcess;
  /** Every HTTP answer: where it came from, and its status line, headers and body. */
  const seen: { where: string; text: string }[] = [];
  const jobIds: string[] = [];

  before(async () => {
    dataDir = mkdtempSync(path.join(tmpdir(), "deployer-canary-"));
    envDir = testEnvDir(["s1"]);
    s = await spawnService({
      ...ENV_CANARIES,
      DEPLOYER_DATA_DIR: dataDir,
      DEPLOYER_ENV_DIR: envDir,
      DEPLOYER_OFFLINE_PROGRAM: PROGRAM,
      DEPLOYER_LOG_LEVEL: "debug",
      DEPLOYER_WEBHOOK_URL: "http://127.0.0.1:9/drift",
    });
  });

  after(async () => {
    if (s && s.child.exitCode === null && s.child.signalCode === null) {
      s.child.kill("SIGKILL");
      await s.exited;
    }
    rmSync(dataDir, { recursive: true, force: true });
    rmSync(envDir, { recursive: true, force: true });
  });

  const record = <R extends { status: number; headers: Record<string, unknown>; text: string }>(where: string, res: R): R => {
    seen.push({ where, text: `${res.status} ${JSON.stringify(res.headers)}\n${res.text}` });
    return res;
  };
  const get = async (url: string) => record(`GET ${url}`, await s.http().get(url));
  const post = async (url: string, body: object) => record(`POST ${url}`, await s.http().post(url).send(body));

  /** Follows the job's events to its end, keeping the raw stream; resolves with the final job. */
  async function follow(jobId: string): Promise<any> {
    jobIds.push(jobId);
    const stream = await openSse(`${s.url}/v1/jobs/${jobId}/events`, s.auth());
    const end = await stream.next((e) => e.event === "end");
    seen.push({ where: `SSE ${jobId}`, text: JSON.stringify(stream.events) });
    return end.data;
  }

  it("runs deploy, deploy, drift check, rollback, a failing deploy and a preview over HTTP", async () => {
    const denied = record("wrong token", await s.http().get("/v1/stacks").set("Authorization", `Bearer ${WRONG_TOKEN}`));
    expect(denied.status).to.equal(401);

    const first = await post("/v1/stacks/s1/deployments", { version: "1.0.0", message: "canary run" });
    expect(first.status).to.equal(202);
    const firstDone = await follow(first.body.id);
    expect(firstDone.status, JSON.stringify(firstDone.error)).to.equal("succeeded");
    expect(firstDone.outputs.apiKey).to.deep.equal({ value: "[secret]", secret: true });

    const second = await post("/v1/stacks/s1/deployments", { version: "2.0.0" });
    expect((await follow(second.body.id)).status).to.equal("succeeded");

    const files = stackFiles(dataDir, "s1");
    const world = readJson(files.world);
    resourceOf(world, "aws:s3/bucket:Bucket").resource.outputs.tags.Owner = "someone-in-the-console";
    writeJson(files.world, world);
    const drift = await post("/v1/stacks/s1/drift-checks", {});
    const driftDone = await follow(drift.body.id);
    expect(driftDone.status).to.equal("succeeded");
    expect(driftDone.drift).to.have.length(1);

    const rollback = await post("/v1/stacks/s1/rollbacks", { reason: "canary says so" });
    const rollbackDone = await follow(rollback.body.id);
    expect(rollbackDone.status, JSON.stringify(rollbackDone.error)).to.equal("succeeded");

    const failing = await post("/v1/stacks/s1/deployments", { version: "6.6.6-fail" });
    const failed = await follow(failing.body.id);
    expect(failed.status).to.equal("failed");
    expect(failed.error.message).to.contain("[secret]");

    const preview = await post("/v1/stacks/s1/previews", {});
    expect((await follow(preview.body.id)).status).to.equal("succeeded");
  });

  it("reads everything back: stacks, outputs, deployments, drift, jobs, each job, its events and log, the audit trail, metrics", async () => {
    for (const url of ["/v1/stacks", "/v1/stacks/s1", "/v1/stacks/s1/outputs", "/v1/stacks/s1/deployments", "/v1/stacks/s1/drift", "/v1/jobs", "/v1/audit", "/metrics", "/readyz", "/openapi.json"]) {
      expect((await get(url)).status, url).to.be.oneOf([200, 503]);
    }
    for (const id of jobIds) {
      expect((await get(`/v1/jobs/${id}`)).status).to.equal(200);
      const log = await get(`/v1/jobs/${id}/log`);
      expect(log.status).to.equal(200);
      const replay = await openSse(`${s.url}/v1/jobs/${id}/events`, s.auth());
      await replay.ended;
      seen.push({ where: `SSE replay ${id}`, text: JSON.stringify(replay.events) });
    }
    const outputs = (await get("/v1/stacks/s1/outputs")).body;
    expect(outputs.outputs.apiKey).to.deep.equal({ value: "[secret]", secret: true });
    const audit = (await get("/v1/audit?limit=500")).body.entries;
    // The refused anonymous requests are aggregated per address and window: written at shutdown (below).
    expect(audit.some((e: { status: number }) => e.status === 401)).to.equal(false);
    expect(audit.filter((e: { action: string }) => e.action.startsWith("POST ")).length).to.equal(6);
    // The program did print the secrets: what arrives is the mask.
    const failedLog = seen.find((x) => x.where === `GET /v1/jobs/${jobIds[4]}/log`)!.text;
    expect(failedLog).to.match(/AWS_SECRET_ACCESS_KEY=\[secret\]/);
  });

  it("finds no canary in any log line, event, response, audit record, store byte or offline file", async () => {
    s.child.kill("SIGTERM");
    expect((await s.exited).code).to.equal(0);
    const sources: { where: string; text: string }[] = [
      ...s.lines.map((line, i) => ({ where: `stdout line ${i + 1}`, text: line })),
      { where: "stderr", text: s.stderr() },
      ...seen,
    ];
    const dataFiles = filesUnder(dataDir);
    expect(dataFiles.some((f) => f.endsWith("deployer.db"))).to.equal(true);
    expect(dataFiles.some((f) => f.endsWith("world.json"))).to.equal(true);
    for (const file of dataFiles) {
      const bytes = readFileSync(file);
      sources.push({ where: file, text: bytes.toString("utf8") }, { where: `${file} (latin1)`, text: bytes.toString("latin1") });
    }
    const canaries: [string, string][] = [...Object.entries(ENV_CANARIES), ["bearer token", s.token!], ["wrong token", WRONG_TOKEN]];
    const leaks: string[] = [];
    for (const [name, value] of canaries) {
      for (const source of sources) if (source.text.includes(value)) leaks.push(`${name} in ${source.where}`);
    }
    expect(leaks).to.deep.equal([]);
    // The capture saw real traffic: log lines for every request and job, and the program's masked prints.
    expect(s.lines.filter((l) => l.includes('"msg":"request"')).length).to.be.greaterThan(20);
    expect(s.lines.filter((l) => l.includes('"msg":"audit"')).length).to.be.at.least(7);
    const aggregated = s.lines.filter((l) => l.includes('"msg":"audit"') && l.includes('"aggregated":true'));
    expect(aggregated.length, "the refused anonymous requests' record, written at shutdown").to.equal(1);
    expect(seen.some((x) => x.text.includes("PULUMI_CONFIG_PASSPHRASE=[secret]"))).to.equal(true);
  });
});
