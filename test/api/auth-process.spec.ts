/**
 * Tokens in the real process (`npm start`): the first start without a tokens file prints an admin
 * token once on stderr and stores only its hash; later starts print nothing secret; a bad tokens file
 * stops the start naming the field; SIGHUP reloads the file and a bad one keeps the tokens in force.
 */
import { expect } from "chai";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "fs";
import { tmpdir } from "os";
import * as path from "path";
import request from "supertest";
import { sha256Hex } from "../../api/tokens";
import { testEnvDir } from "../automation/support/test-engine";
import { runServiceToExit, spawnService, type ServiceProcess } from "./support/process";
import { tokensFileFor } from "./support/server";

/** Resolves once the process has logged a line matching `re` (already or later). */
function logged(s: ServiceProcess, re: RegExp): Promise<string> {
  return new Promise((resolve) => {
    const check = () => {
      const line = s.lines.find((l) => re.test(l));
      if (line === undefined) return false;
      s.child.stdout!.off("data", onData);
      resolve(line);
      return true;
    };
    // The lines array is filled by a readline listener registered first, so it is up to date here.
    const onData = () => setImmediate(check);
    if (!check()) s.child.stdout!.on("data", onData);
  });
}

describe("api: tokens in the service process", function () {
  this.timeout(60_000);
  let dataDir: string;
  let envDir: string;
  const children: ServiceProcess[] = [];

  beforeEach(() => {
    dataDir = mkdtempSync(path.join(tmpdir(), "deployer-authproc-"));
    envDir = testEnvDir(["s1"]);
  });

  afterEach(async () => {
    for (const c of children.splice(0)) {
      if (c.child.exitCode === null && c.child.signalCode === null) {
        c.child.kill("SIGTERM");
        await c.exited;
      }
    }
    rmSync(dataDir, { recursive: true, force: true });
    rmSync(envDir, { recursive: true, force: true });
  });

  async function start(env: Record<string, string> = {}, tokens?: false): Promise<ServiceProcess> {
    const s = await spawnService({ DEPLOYER_DATA_DIR: dataDir, DEPLOYER_ENV_DIR: envDir, ...env }, { tokens });
    children.push(s);
    return s;
  }

  it("prints an admin token once on the first start, stores only its hash, and never starts open", async () => {
    const first = await start({}, false);
    const stderr = first.stderr();
    const tokens = stderr.match(/dpl_[A-Za-z0-9_-]{43}/g) ?? [];
    expect(new Set(tokens).size, stderr).to.equal(1);
    const token: string = tokens[0] ?? "";
    expect(stderr).to.contain(`curl -H "Authorization: Bearer ${token}" ${first.url}/v1/stacks`);
    expect(first.lines.join("\n")).to.not.contain(token);
    const file = path.join(dataDir, "tokens.yaml");
    const text = readFileSync(file, "utf8");
    expect(text).to.not.contain(token);
    expect(text).to.contain(sha256Hex(token));
    if (process.platform !== "win32") expect(statSync(file).mode & 0o777).to.equal(0o600);

    expect((await request(first.url).get("/v1/stacks")).status).to.equal(401);
    expect((await request(first.url).get("/v1/stacks").set("Authorization", `Bearer ${token}`)).status).to.equal(200);
    first.child.kill("SIGTERM");
    await first.exited;

    const second = await start({}, false);
    expect(second.stderr()).to.not.match(/dpl_/);
    expect((await request(second.url).get("/v1/stacks").set("Authorization", `Bearer ${token}`)).status).to.equal(200);
  });

  it("refuses to start with a bad tokens file, naming the file and the field (exit 2)", async () => {
    const file = path.join(dataDir, "tokens.yaml");
    writeFileSync(file, "tokens:\n  - name: ci\n    sha256: not-a-hash\n    roles: { dev: [deployer] }\n");
    for (const [tokensFile, reason] of [
      [file, /tokens\.0\.sha256: must be the SHA-256/],
      [path.join(dataDir, "missing.yaml"), /does not exist/],
    ] as const) {
      const { code, stdout, stderr } = await runServiceToExit({ DEPLOYER_DATA_DIR: dataDir, DEPLOYER_ENV_DIR: envDir, DEPLOYER_TOKENS_FILE: tokensFile, PORT: "0" });
      expect(code, stderr).to.equal(2);
      const lines = stderr.trim().split("\n");
      expect(lines, stderr).to.have.length(1);
      expect(lines[0]).to.contain(`deployer: invalid configuration: DEPLOYER_TOKENS_FILE: ${tokensFile}: `);
      expect(lines[0]).to.match(reason);
      expect(stdout).to.not.contain('"msg":"listening"');
    }
  });

  it("reloads the tokens file on SIGHUP, and keeps the tokens in force when the new file is bad", async () => {
    const file = path.join(dataDir, "my-tokens.yaml");
    const a = tokensFileFor([{ name: "a", roles: { "*": ["viewer"] } }]);
    writeFileSync(file, a.text);
    const s = await start({ DEPLOYER_TOKENS_FILE: file });
    const as = (token: string) => request(s.url).get("/v1/stacks").set("Authorization", `Bearer ${token}`);
    expect((await as(a.tokens.get("a")!)).status).to.equal(200);

    const b = tokensFileFor([{ name: "b", roles: { "*": ["viewer"] } }]);
    writeFileSync(file, b.text);
    s.child.kill("SIGHUP");
    await logged(s, /"msg":"tokens reloaded"/);
    expect((await as(b.tokens.get("b")!)).status).to.equal(200);
    expect((await as(a.tokens.get("a")!)).status).to.equal(401);

    writeFileSync(file, "tokens: [{ name: c }]\n");
    s.child.kill("SIGHUP");
    const line = JSON.parse(await logged(s, /tokens file not reloaded/));
    expect(line.reason).to.match(/tokens\.0\.sha256: is required/);
    expect((await as(b.tokens.get("b")!)).status).to.equal(200);
    expect(s.child.exitCode).to.equal(null);
  });
});
