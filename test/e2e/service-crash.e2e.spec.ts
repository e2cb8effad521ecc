/**
 * kill -9 of the service in the middle of a real update, then a restart and the admin's recovery.
 * The update's pulumi process runs in a process group of its own, so the kill does not take it down
 * mid-step: it ends its update itself (checkpoint written, lock released); unlock refuses to clear
 * the lock while that update still runs, and recovers the stack once it has ended.
 */
import { expect } from "chai";
import { existsSync, mkdirSync, readdirSync, readFileSync, watch, writeFileSync } from "fs";
import * as path from "path";
import { spawnService, type ServiceProcess } from "../api/support/process";
import { openSse } from "../api/support/sse";
import { tempDirs } from "../automation/support/temp";
import { requireMotoOrSkip, startMoto, MOTO_ACCOUNT_ID, type Moto } from "../support/moto";
import { engineEnv, isRunning, lockFiles, PROJECT, removeStackFiles, requirePulumi, standInYaml, uniqueStack } from "./support";

/** Resolves once `check` holds, re-checking whenever something changes in `dir` (no polling). */
function whenDir(dir: string, check: () => boolean): Promise<void> {
  mkdirSync(dir, { recursive: true });
  return new Promise((resolve) => {
    const watcher = watch(dir, () => {
      if (check()) {
        watcher.close();
        resolve();
      }
    });
    if (check()) {
      watcher.close();
      resolve();
    }
  });
}

describe("service killed in the middle of a real update (e2e)", function () {
  this.timeout(10 * 60_000);
  const temp = tempDirs();
  const stacks: string[] = [];
  let moto: Moto;
  const services: ServiceProcess[] = [];

  before(async function () {
    requirePulumi(this);
    requireMotoOrSkip(this);
    moto = await startMoto();
  });

  after(async () => {
    for (const s of services) if (s.child.exitCode === null && s.child.signalCode === null) s.child.kill("SIGKILL");
    await moto?.stop();
    removeStackFiles(stacks);
    temp.cleanup();
  });

  it("marks the job interrupted at the restart, keeps the stack blocked, and unlock recovers it once the orphaned update has ended", async () => {
    const work = temp.make("deployer-crash-");
    const envDir = path.join(work, "environments");
    mkdirSync(envDir);
    const name = uniqueStack("crash");
    stacks.push(name);
    const output = path.join(work, "world", "output.txt");
    const state = path.join(work, "state");
    writeFileSync(
      path.join(envDir, `${name}.yaml`),
      standInYaml({ backend: `file://${state}`, output, accountId: MOTO_ACCOUNT_ID, tags: { E2EMarkers: "3", E2EDelayMs: "2500" } }).replace(/image: .*/, "build: { context: examples/app }"),
    );
    const env: Record<string, string> = {};
    for (const [k, v] of Object.entries(engineEnv(work, moto.env))) if (v !== undefined && (k.startsWith("PULUMI_") || k.startsWith("AWS_") || k === "DEPLOYER_TOOLS_DIR" || k === "XDG_CACHE_HOME")) env[k] = v;
    Object.assign(env, { DEPLOYER_ENV_DIR: envDir, DEPLOYER_DATA_DIR: path.join(work, "data") });

    const first = await spawnService(env);
    services.push(first);
    const posted = await first.http().post(`/v1/stacks/${name}/deployments`).send({ version: "1.0.0" });
    expect(posted.status, posted.text).to.equal(202);
    // The update is under way once its first resource exists.
    await whenDir(path.dirname(output), () => existsSync(output));
    const lockDir = path.join(state, ".pulumi", "locks", "organization", PROJECT, name);
    const lock = JSON.parse(readFileSync(path.join(lockDir, readdirSync(lockDir)[0]), "utf8")) as { pid: number };
    first.child.kill("SIGKILL");
    expect((await first.exited).signal).to.equal("SIGKILL");

    const second = await spawnService(env);
    services.push(second);
    const job = (await second.http().get(`/v1/jobs/${posted.body.id}`)).body;
    expect(job.status).to.equal("interrupted");
    const refused = await second.http().post(`/v1/stacks/${name}/deployments`).send({ version: "1.0.1" });
    expect(refused.status).to.equal(409);
    expect(refused.body.error.message).to.contain("unlock");

    // While the orphaned update runs, unlock clears nothing at the engine, and says why.
    if (isRunning(lock.pid)) {
      const early = await second.http().post(`/v1/stacks/${name}/unlock`).send({});
      expect(early.status, early.text).to.equal(200);
      if (isRunning(lock.pid)) {
        expect(early.body.engine.lockCleared).to.equal(false);
        expect(early.body.engine.notes.join(" ")).to.contain(`pid ${lock.pid} on this host) is still running`);
      }
    }
    // The orphan ends on its own (its output pipes are gone with the service): it finishes or stops
    // its update, and may or may not release its lock. No event tells when a process that is not
    // our child exits, so /proc is looked at every 100 ms, for at most 5 minutes.
    for (let i = 0; isRunning(lock.pid) && i < 3000; i++) await new Promise((resolve) => setTimeout(resolve, 100));
    expect(isRunning(lock.pid)).to.equal(false);

    // What the update left in flight is reported, and cleared on request.
    const unlocked = await second.http().post(`/v1/stacks/${name}/unlock`).send({ clearPendingCreates: true });
    expect(unlocked.status, unlocked.text).to.equal(200);
    for (const op of unlocked.body.engine.pendingOperations) expect(op.kind).to.equal("creating");
    expect(lockFiles(state, name)).to.deep.equal([]);
    const after = await second.http().post(`/v1/stacks/${name}/unlock`).send({});
    expect(after.body.engine.pendingOperations).to.deep.equal([]);
    expect(after.body.engine.lockCleared).to.equal(false);
    expect((await second.http().get(`/v1/stacks/${name}`)).body.blockedReason).to.equal(null);
    const again = await second.http().post(`/v1/stacks/${name}/deployments`).send({ version: "1.0.1" });
    expect(again.status, again.text).to.equal(202);
    const stream = await openSse(`${second.url}/v1/jobs/${again.body.id}/events`, second.auth());
    const end = (await stream.next((e) => e.event === "end")).data;
    expect(end.status, JSON.stringify(end.error)).to.equal("succeeded");
    expect(readFileSync(`${output}.marker-2`, "utf8")).to.equal("1.0.1\n");
    second.child.kill("SIGTERM");
    await second.exited;
  });
});
