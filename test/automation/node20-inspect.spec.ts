/**
 * A program that throws must fail at once: Pulumi's program runner reports its uncaught error with
 * `util.inspect(err, { colors: true })`, which on Node 20 loops for 15-50 s and then throws when the
 * stack names a file directly under a scoped node_modules directory (where @pulumi/pulumi's source
 * maps point). automation/node20-inspect.js, loaded by automation/register.js (the programs'
 * nodeargs), keeps that call quick. The e2e suite runs a throwing program on the real CLI.
 */
import { expect } from "chai";
import { execFileSync } from "child_process";
import * as path from "path";
import { inspect } from "util";

const STACK = [
  "Error: the settings name no database for this stack",
  "    at Object.<anonymous> (/srv/app/infra/index.ts:2:11)",
  "    at Module._compile (node:internal/modules/cjs/loader:1521:14)",
  "    at Object.runProgram [as init] (/srv/app/node_modules/@pulumi/cmd/run/run.ts:541:33)",
  "    at Stack.initializeAndRegisterOutputs (/srv/app/node_modules/@pulumi/resource.ts:1598:22)",
].join("\n");

describe("a program's uncaught error, inspected as Pulumi's runner does", function () {
  this.timeout(10_000);

  it("is formatted at once, with its message and frames, in a process that loaded register.js", () => {
    // A process of its own: what a program run with the register hook does, on this Node.
    const script = `const util = require("util"); const e = new Error("x"); e.stack = ${JSON.stringify(STACK)};
      const t = Date.now(); const out = util.inspect(e, { colors: true }); process.stdout.write(JSON.stringify({ out, ms: Date.now() - t }));`;
    const raw = execFileSync(process.execPath, ["--require", path.join(__dirname, "..", "..", "automation", "register.js"), "-e", script], { encoding: "utf8", timeout: 8_000 });
    // Node 22 and 24 keep the colors (no bug there): compare the text without them.
    const out = (JSON.parse(raw) as { out: string }).out.replace(/\u001b\[[0-9;]*m/g, "");
    expect(out).to.contain("the settings name no database for this stack");
    expect(out).to.contain("node_modules/@pulumi/resource.ts:1598:22");
  });

  it("leaves everything else as util.inspect does: colors for other values, its options and symbol", () => {
    expect(inspect({ a: 1 }, { colors: true })).to.equal("{ a: \u001b[33m1\u001b[39m }");
    expect(typeof inspect.custom).to.equal("symbol");
    expect(inspect.defaultOptions.depth).to.equal(2);
  });
});
