/**
 * The first start's admin token when several processes start together on one data directory: one
 * of them creates the tokens file; the others load that file and create no token of their own.
 */
import { expect } from "chai";
import { spawn } from "child_process";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "fs";
import { tmpdir } from "os";
import * as path from "path";
import { bootstrapTokens, createTokensFile, DEFAULT_TOKENS_FILE, sha256Hex } from "../../api/tokens";

const ROOT = path.resolve(__dirname, "../..");

describe("api: the first admin token, created once", function () {
  this.timeout(60_000);
  let dir: string;

  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), "deployer-tokens-race-"));
  });

  afterEach(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it("loses to a file another process published after the existence check: loads it, creates no token, leaves no temporary file", () => {
    // The race, in order: this process saw no file, then another published its own.
    const winner = bootstrapTokens({ dataDir: dir });
    const published = readFileSync(path.join(dir, DEFAULT_TOKENS_FILE), "utf8");
    expect(winner.createdToken).to.be.a("string");

    const loser = createTokensFile(path.join(dir, DEFAULT_TOKENS_FILE));
    expect(loser.createdToken).to.equal(undefined);
    expect(readFileSync(path.join(dir, DEFAULT_TOKENS_FILE), "utf8")).to.equal(published);
    expect(loser.tokens.find(winner.createdToken as string)?.name).to.equal("admin");
    expect(readdirSync(dir)).to.deep.equal([DEFAULT_TOKENS_FILE]);
  });

  it("of processes starting at once on one data directory, exactly one creates the token, and all load its hash", async () => {
    const script = `
      const { bootstrapTokens } = require(${JSON.stringify(path.join(ROOT, "api/tokens"))});
      const fs = require("fs");
      // Start together: say so once loaded, wait for the go file, then bootstrap.
      process.stdout.write("ready\\n");
      while (!fs.existsSync(${JSON.stringify(path.join(dir, "go"))})) {}
      const boot = bootstrapTokens({ dataDir: ${JSON.stringify(path.join(dir, "data"))} });
      process.stdout.write(JSON.stringify({ created: boot.createdToken ?? null, file: fs.readFileSync(boot.file, "utf8") }));
    `;
    mkdirSync(path.join(dir, "data"));
    const ready: Promise<void>[] = [];
    const runs = Array.from({ length: 6 }, () => {
      const child = spawn(process.execPath, ["-r", path.join(ROOT, "automation/register.js"), "-e", script], { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
      let out = "";
      let err = "";
      ready.push(new Promise((resolve) => child.stdout.once("data", () => resolve())));
      child.stdout.on("data", (c: Buffer) => (out += c.toString()));
      child.stderr.on("data", (c: Buffer) => (err += c.toString()));
      return new Promise<{ created: string | null; file: string }>((resolve, reject) =>
        child.on("close", (code) => (code === 0 ? resolve(JSON.parse(out.slice(out.indexOf("\n") + 1))) : reject(new Error(`exit ${code}: ${err}`)))),
      );
    });
    await Promise.all(ready);
    writeFileSync(path.join(dir, "go"), "");
    const results = await Promise.all(runs);

    const created = results.filter((r) => r.created !== null);
    expect(created).to.have.length(1);
    const file = readFileSync(path.join(dir, "data", DEFAULT_TOKENS_FILE), "utf8");
    expect(results.every((r) => r.file === file)).to.equal(true);
    expect(file).to.include(sha256Hex(created[0].created as string));
    expect(readdirSync(path.join(dir, "data"))).to.deep.equal([DEFAULT_TOKENS_FILE]);
  });
});
