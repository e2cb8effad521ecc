/**
 * The code the benchmarks measure is what `npm start` runs: the service compiled to JavaScript under
 * dist/ by automation/compile.js (SWC, no type-check), run by plain `node`. `prepareCompiled()` runs
 * that same step, then compiles the bench's own child processes (bench/children, bench/lib) with the
 * same options to dist/bench/, so they load the compiled service (`../../api/server` from
 * dist/bench/children is dist/api/server.js) and no TypeScript loader runs in any measured process.
 */
import { transformFileSync, type Options } from "@swc/core";
import { spawnSync } from "child_process";
import { mkdirSync, readdirSync, writeFileSync } from "fs";
import * as path from "path";
import { REPO_ROOT } from "./root";

export const DIST = path.join(REPO_ROOT, "dist");
const BENCH_SOURCES = ["children", "lib"];

/** automation/compile.js's options. */
const OPTIONS: Options = {
  jsc: { parser: { syntax: "typescript" }, target: "es2022", keepClassNames: true },
  module: { type: "commonjs", strictMode: true },
  sourceMaps: "inline",
};

/** The compiled entry point of a bench child: dist/bench/children/<name>.js. */
export function compiledChild(name: string): string {
  return path.join(DIST, "bench", "children", `${name}.js`);
}

/** dist/api/main.js: what `npm start` runs. */
export const COMPILED_SERVICE = path.join(DIST, "api", "main.js");

export function prepareCompiled(): void {
  const r = spawnSync(process.execPath, [path.join(REPO_ROOT, "automation", "compile.js")], {
    cwd: REPO_ROOT,
    env: { ...process.env, DEPLOYER_COMPILE_QUIET: "1" },
    encoding: "utf8",
    timeout: 120_000,
  });
  if (r.status !== 0) throw new Error(`automation/compile.js failed: ${(r.stderr || r.error?.message || "").trim().split("\n").slice(-2).join(" ")}`);
  const benchDir = path.join(REPO_ROOT, "bench");
  for (const sub of BENCH_SOURCES) {
    for (const entry of readdirSync(path.join(benchDir, sub), { withFileTypes: true })) {
      if (!entry.isFile() || !entry.name.endsWith(".ts") || entry.name.endsWith(".d.ts")) continue;
      const file = path.join(benchDir, sub, entry.name);
      const out = path.join(DIST, "bench", sub, entry.name.replace(/\.ts$/, ".js"));
      mkdirSync(path.dirname(out), { recursive: true });
      writeFileSync(out, transformFileSync(file, { ...OPTIONS, filename: file }).code);
    }
  }
}
