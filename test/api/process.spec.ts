/**
 * The service as a real process: kill -9 during a running job, then a restart; SIGTERM during a
 * running job; a bad configuration. The running job hangs for real: the offline engine runs a program
 * that never finishes (DEPLOYER_OFFLINE_PROGRAM, test only).
 */
import { expect } from "chai";
import { mkdtempSync, rmSync } from "fs";
import { tmpdir } from "os";
import * as path from "path";
import request from "supertest";
import { openStore } from "../../automation/store";
import { testEnvDir } from "../automation/support/test-engine";
import { HANGING_PROGRAM, runServiceToExit, spawnService, type ServiceProcess } from "./support/process";
import { openSse } from "./support/sse";

describe("api: the service as a process", function () {
  this.timeout(90_000);
  let dataDir: string;
  let envDir: string;
  const children: ServiceProcess[] = [];

  beforeEach(() => {
    dataDir = mkdtempSync(path.join(tmpdir(), "deployer-proc-"));
    envDir = testEnvDir(["s1", "s2"]);
  });

  afterEach(async () => {
    for (const s of children.splice(0)) {
      if (s.child.exitCode === null && s.child.signalCode === null) {
        s.child.kill("SIGKILL");
        await s.exited;
      }
    }
    rmSync(dataDir, { recursive: true, force: true });
    rmSync(envDir, { recursive: true, force: true });
  });

  async function start(env: Record<string, string> = {}): Promise<ServiceProcess> {
    const s = await spawnService({ DEPLOYER_DATA_DIR: dataDir, DEPLOYER_ENV_DIR: envDir, ...env });
    children.push(s);
    return s;
  }

  /** Posts a deployment to s1 and resolves once its (hanging) program is running. */
  async function hangingDeployment(s: ServiceProcess): Promise<string> {
    const res = await s.http().post("/v1/stacks/s1/deployments").send({ version: "1.0.0" });
    expect(res.status).to.equal(202);
    const stream = await openSse(`${s.url}/v1/jobs/${res.body.id}/events`, s.auth());
    await stream.next((e) => e.event === "diagnostic" && /fixture: hanging/.test(e.data.diagnostic.message));
    stream.close();
    return res.body.id;
  }

  /** Resolves with the job once its event stream ends. */
  async function ended(s: ServiceProcess, jobId: string): Promise<any> {
    const stream = await openSse(`${s.url}/v1/jobs/${jobId}/events`, s.auth());
    return (await stream.next((e) => e.event === "end")).data;
  }

  it("after kill -9 during a job and a restart: the job is interrupted, the stack waits for unlock, queued jobs survive and run", async () => {
    const first = await start({ DEPLOYER_OFFLINE_PROGRAM: HANGING_PROGRAM, DEPLOYER_MAX_CONCURRENT: "1" });
    const running = await hangingDeployment(first);
    const queuedSameStack = (await first.http().post("/v1/stacks/s1/refreshes").send({})).body.id;
    const queuedOtherStack = (await first.http().post("/v1/stacks/s2/drift-checks").send({})).body.id;
    expect((await first.http().get(`/v1/jobs/${queuedOtherStack}`)).body.status).to.equal("queued");

    first.child.kill("SIGKILL");
    expect((await first.exited).signal).to.equal("SIGKILL");

    const second = await start();
    const http = () => second.http();
    const interrupted = (await http().get(`/v1/jobs/${running}`)).body;
    expect(interrupted.status).to.equal("interrupted");
    expect(interrupted.error.code).to.equal("interrupted");
    expect(interrupted.error.message).to.match(/stopped while this job was running/);

    // The other stack's queued job runs at once.
    expect((await ended(second, queuedOtherStack)).status).to.equal("succeeded");

    // The interrupted stack refuses mutations, naming the recovery, and keeps its queued job waiting.
    const stack = (await http().get("/v1/stacks/s1")).body;
    expect(stack.blockedReason).to.be.a("string");
    const refused = await http().post("/v1/stacks/s1/deployments").send({ version: "1.0.1" });
    expect(refused.status).to.equal(409);
    expect(refused.body.error.code).to.equal("conflict");
    expect(refused.body.error.message).to.contain("/v1/stacks/s1/unlock");
    expect((await http().get(`/v1/jobs/${queuedSameStack}`)).body.status).to.equal("queued");

    const unlocked = await http().post("/v1/stacks/s1/unlock").send({});
    expect(unlocked.status).to.equal(200);
    expect(unlocked.body.wasBlocked).to.equal(true);
    const after = await ended(second, queuedSameStack);
    expect(after.status, JSON.stringify(after.error)).to.equal("succeeded");
    expect((await http().get("/v1/stacks/s1")).body.blockedReason).to.equal(null);
  });

  it("on SIGTERM during a job: the job is interrupted and the process exits within the grace period", async () => {
    const graceSeconds = 6;
    const s = await start({ DEPLOYER_OFFLINE_PROGRAM: HANGING_PROGRAM, DEPLOYER_SHUTDOWN_GRACE_SECONDS: String(graceSeconds) });
    const jobId = await hangingDeployment(s);
    const signaled = Date.now();
    s.child.kill("SIGTERM");
    const { code } = await s.exited;
    const tookMs = Date.now() - signaled;
    expect(code).to.equal(0);
    expect(tookMs).to.be.lessThan(graceSeconds * 1000);
    expect(s.lines.some((l) => /"msg":"shutting down"/.test(l))).to.equal(true);
    const store = openStore(dataDir);
    try {
      const job = (await store.getJob(jobId))!;
      expect(job.status).to.be.oneOf(["interrupted", "canceled"]);
      expect(await store.getLease("s1")).to.equal(undefined);
    } finally {
      await store.close();
    }
  });

  it("logs where it listens as a JSON line, and stops cleanly on SIGTERM", async () => {
    const s = await start();
    const line = JSON.parse(s.lines.find((l) => l.includes('"msg":"listening"'))!);
    expect(line.url).to.match(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(line.port).to.be.a("number");
    expect(line.startupMs).to.be.a("number"); // the budget itself is measured by the benchmarks (issue 6)
    expect((await request(s.url).get("/readyz")).status).to.equal(200);
    s.child.kill("SIGTERM");
    expect((await s.exited).code).to.equal(0);
  });

  it("stops with one line naming the variable when the configuration is bad", async () => {
    for (const [name, value] of [
      ["PORT", "eighty"],
      ["DEPLOYER_MAX_CONCURRENT", "0"],
      ["DEPLOYER_SHUTDOWN_GRACE_SECONDS", "-1"],
      ["DEPLOYER_WEBHOOK_URL", "ftp://example"],
    ]) {
      const { code, stdout, stderr } = await runServiceToExit({ [name]: value, DEPLOYER_DATA_DIR: dataDir });
      expect(code, name).to.equal(2);
      expect(stdout).to.equal("");
      const lines = stderr.trim().split("\n");
      expect(lines, stderr).to.have.length(1);
      expect(lines[0]).to.match(new RegExp(`^deployer: invalid configuration: ${name}: `));
    }
  });
});
