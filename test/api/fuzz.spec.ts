/**
 * Property-based tests of the service's input validation (fast-check): stack names, job ids, versions,
 * targets, rollback targets, bodies, query strings and headers drawn from hostile strings (`--help`,
 * `-s`, `..`, `../x`, NUL, newlines, 10 kB strings, unicode, `%2e%2e%2f`, shell syntax) are always
 * answered with a 4xx in the error shape, never reach the engine, never create a job, and never write a
 * file outside the data directory.
 */
import { expect } from "chai";
import fc from "fast-check";
import { mkdirSync, mkdtempSync, readdirSync, rmSync } from "fs";
import { tmpdir } from "os";
import * as path from "path";
import type { AnyRoute } from "../../api/routes/route";
import { ROUTES } from "../../api/routes/table";
import { idempotencyKeyHeader, lastEventIdHeader } from "../../api/schemas";
import type { z } from "zod";
import { REPO_ROOT } from "../../automation/environment";
import { versionSchema } from "../../infra/config";
import { tree } from "../automation/support/temp";
import { startTestServer, type TestServer } from "./support/server";

const HOSTILE = [
  "--help", "-s", "-", "--", "-h", "--stack=prod", "..", "../x", "../../etc/passwd", "..\\x", "./", ".", "/",
  "%2e%2e%2f", "%2e%2e%2fx", "..%2f..%2f", "%2F", "%00", "%zz", "%", "\0", "s1\0", "\0s1", "a\nb", "\r\n", "s1\n",
  "x".repeat(10_240), "latest", "LATEST", "$(id)", "`id`", "; rm -rf /", "|cat /etc/passwd", "&&", "\u202e\u2066",
  "😀", "é", "ｓ１", "İ", "C:\\Windows", "/etc/passwd", "s1/../s2", " s1", "s1 ", "S1", "__proto__", "constructor",
  "prototype", "job_", "job_../../../../../../etc", "job_0000000000000000000000000", "JOB_00000000000000000000000000",
  "urn:pulumi:s1::x::y::../z", "urn:pulumi:s2::p::aws:s3/bucket:Bucket::b", "{}", "[]", "null", "true", "0", "-1",
  "1e309", "NaN", "*", "'", "\"", "<script>", "${jndi:ldap://x}",
];

/** A hostile string: the list above, random text (ASCII and full unicode), or a hostile prefix with a tail. */
const hostile: fc.Arbitrary<string> = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom(...HOSTILE) },
  { weight: 1, arbitrary: fc.string({ maxLength: 40 }) },
  { weight: 1, arbitrary: fc.string({ unit: "binary", maxLength: 40 }) },
  { weight: 1, arbitrary: fc.tuple(fc.constantFrom(...HOSTILE), fc.string({ maxLength: 8 })).map(([a, b]) => a + b) },
);

/** A hostile value as a path segment: percent-encoded, or as-is where it is URL-safe (`..`, `%2e%2e%2f`). */
const segment: fc.Arbitrary<{ text: string; raw: boolean }> = fc.tuple(hostile, fc.boolean()).map(([text, raw]) => ({
  text: text.slice(0, 2_000),
  raw: raw && /^[A-Za-z0-9._~%!$&'()*+,;=:@-]*$/.test(text.slice(0, 2_000)),
}));

function encodeSegment(s: { text: string; raw: boolean }): string {
  return s.raw ? s.text : encodeURIComponent(s.text);
}

/** What the server will see as the parameter (undefined when it does not decode). */
function decoded(s: { text: string; raw: boolean }): string | undefined {
  if (!s.raw) return s.text;
  try {
    return decodeURIComponent(s.text);
  } catch {
    return undefined;
  }
}

const URN_OF_S1 = /^urn:pulumi:s1::[A-Za-z0-9._-]+::(?:[A-Za-z0-9/$._-]|:(?!:))+::[A-Za-z0-9._:/-]+$/;
const ROLLBACK_TO = /^(job_[0-9a-z]{26}|[A-Za-z0-9][A-Za-z0-9._-]{0,127})$/;
const RUNS = { numRuns: 200 };

/**
 * Long hostile strings (20–60 k characters): every pair of a prefix that gets a pattern going and a
 * short unit repeated (the shapes that make a backtracking pattern quadratic: `::::`, `a:a:`, `,,,`),
 * with a tail that makes it fail at the very end.
 */
const PREFIXES = ["", "urn:pulumi:s1::p::", "urn:pulumi:s1::p::a", "job_", "a", "1.0.", "queued,", "s1"];
const UNITS = [":", "::", "a:", ":a", "a::", "-", ".", "_", ",", "a,", "$", "/", " ", "0", "a", "%2"];
const longHostile: fc.Arbitrary<string[]> = fc
  .tuple(fc.integer({ min: 20_000, max: 60_000 }), fc.constantFrom("", "!", "\n", ":", "::!", " "))
  .map(([length, tail]) => PREFIXES.flatMap((prefix) => UNITS.map((unit) => prefix + unit.repeat(Math.ceil(length / unit.length)) + tail)));

/** Every schema a request's input passes through, with the fields it reads. */
function inputSchemas(): { label: string; schema: z.ZodType; fields: string[] }[] {
  const out: { label: string; schema: z.ZodType; fields: string[] }[] = [];
  for (const route of ROUTES) {
    for (const part of ["params", "query", "body"] as const) {
      const schema = route[part] as (z.ZodType & { shape?: Record<string, unknown> }) | undefined;
      if (!schema) continue;
      out.push({ label: `${route.method.toUpperCase()} ${route.path} ${part}`, schema, fields: Object.keys(schema.shape ?? {}) });
    }
  }
  out.push({ label: "Idempotency-Key", schema: idempotencyKeyHeader, fields: [] });
  out.push({ label: "Last-Event-ID", schema: lastEventIdHeader, fields: [] });
  out.push({ label: "version", schema: versionSchema, fields: [] });
  return out;
}

/** Generous: a linear pattern takes well under a millisecond on 60 k characters; a quadratic one, seconds. */
const SCHEMA_BUDGET_MS = 250;

describe("api: every input schema's time is bounded on long hostile strings (fast-check)", () => {
  const schemas = inputSchemas();

  it("parses each field of each schema, as a string and as a list of strings, within the budget", () => {
    fc.assert(
      fc.property(longHostile, (values) => {
        for (const { label, schema, fields } of schemas) {
          for (const value of values) {
            for (const asList of [false, true]) {
              const input = fields.length === 0 ? value : Object.fromEntries(fields.map((f) => [f, asList ? [value, value] : value]));
              const started = process.hrtime.bigint();
              schema.safeParse(input);
              const ms = Number(process.hrtime.bigint() - started) / 1e6;
              expect(ms, `${label} on ${JSON.stringify(value.slice(0, 40))}… (${value.length} characters)`).to.be.below(SCHEMA_BUDGET_MS);
            }
          }
        }
      }),
      { numRuns: 2 },
    );
  });

  it("answers the quadratic-URN request of the review quickly with 400 naming the target", () => {
    const target = "urn:pulumi:dev::p::" + ":".repeat(50_000) + "!";
    const body = ROUTES.find((r) => r.method === "post" && r.path === "/v1/stacks/:stack/deployments")!.body!;
    const started = process.hrtime.bigint();
    const result = body.safeParse({ version: "1.0.0", target: [target] });
    const ms = Number(process.hrtime.bigint() - started) / 1e6;
    expect(result.success).to.equal(false);
    expect(result.error!.issues[0].path).to.deep.equal(["target", 0]);
    expect(ms).to.be.below(SCHEMA_BUDGET_MS);
  });
});

describe("api: fuzzing the input (fast-check)", function () {
  this.timeout(180_000);
  let t: TestServer;
  let root: string;
  let dataDir: string;
  let knownJob: string;
  let baseline: { root: string[]; envs: string[]; repo: string[]; environments: string[] };
  let engineCalls: number;
  let jobs: number;

  const snapshot = () => ({
    root: tree(root, new Set([dataDir])),
    envs: tree(t.envDir),
    repo: readdirSync(REPO_ROOT).sort(),
    environments: readdirSync(path.join(REPO_ROOT, "environments")).sort(),
  });

  before(async () => {
    root = mkdtempSync(path.join(tmpdir(), "deployer-fuzz-"));
    dataDir = path.join(root, "data");
    mkdirSync(dataDir);
    t = await startTestServer({ dataDir });
    const res = await t.http().post("/v1/stacks/s1/previews").send({});
    knownJob = res.body.id;
    await t.done(knownJob);
    engineCalls = t.engine.calls.length;
    jobs = await t.jobCount();
    baseline = snapshot();
  });

  after(async () => {
    await t?.close();
    rmSync(root, { recursive: true, force: true });
  });

  /** The answer is a 4xx in the error shape, and nothing ran or was recorded as a job. */
  async function refused(res: { status: number; body: any; text: string; headers: Record<string, string> }, label: string): Promise<void> {
    expect(res.status, `${label} → ${res.status} ${res.text.slice(0, 200)}`).to.be.within(400, 499);
    const error = res.body?.error;
    expect(error, `${label}: ${res.text.slice(0, 200)}`).to.be.an("object");
    expect(error.code).to.be.a("string");
    expect(error.message).to.be.a("string");
    expect(error.requestId).to.be.a("string");
    expect(res.text).to.not.match(/\n\s+at\s|\.ts:\d+/);
    expect(res.text.length, label).to.be.below(4_000);
    expect(t.engine.calls.length, `${label}: an engine call`).to.equal(engineCalls);
    expect(await t.jobCount(), `${label}: a job`).to.equal(jobs);
  }

  const stackRoutes = ROUTES.filter((r) => r.path.includes(":stack"));
  const jobRoutes = ROUTES.filter((r) => r.path.includes(":id"));
  const validBody: Record<string, unknown> = {
    "/v1/stacks/:stack/deployments": { version: "1.0.0" },
    "/v1/stacks/:stack/rollbacks": { reason: "fuzz" },
    "/v1/stacks/:stack/destroys": { confirm: "s1" },
  };

  const send = (route: AnyRoute, url: string, body?: unknown) => {
    const req = t.http()[route.method](url);
    return route.method === "get" ? req : req.send((body ?? validBody[route.path] ?? {}) as object);
  };

  it("refuses hostile stack names in every stack route's path", async () => {
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...stackRoutes), segment, async (route, stack) => {
        const name = decoded(stack);
        fc.pre(name !== "s1" && name !== "s2");
        const url = route.path.replace(":stack", encodeSegment(stack));
        await refused(await send(route, url), `${route.method} ${url.slice(0, 120)}`);
      }),
      RUNS,
    );
  });

  it("refuses hostile job ids in every job route's path", async () => {
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...jobRoutes), segment, async (route, id) => {
        const url = route.path.replace(":id", encodeSegment(id));
        await refused(await send(route, url, {}), `${route.method} ${url.slice(0, 120)}`);
      }),
      RUNS,
    );
  });

  it("refuses hostile versions of deployments and previews", async () => {
    await fc.assert(
      fc.asyncProperty(fc.constantFrom("deployments", "previews"), fc.oneof(hostile, fc.jsonValue()), async (what, version) => {
        fc.pre(!versionSchema.safeParse(version).success);
        await refused(await t.http().post(`/v1/stacks/s1/${what}`).send({ version }), `${what} version ${JSON.stringify(version)?.slice(0, 80)}`);
      }),
      RUNS,
    );
  });

  it("refuses hostile targets", async () => {
    const target = fc.oneof(
      fc.array(hostile, { minLength: 1, maxLength: 3 }),
      hostile,
      fc.jsonValue(),
      hostile.map((h) => [`urn:pulumi:s2::pulumi-aws-deployer::aws:s3/bucket:Bucket::${h}`]),
      hostile.map((h) => [`urn:pulumi:s1::pulumi-aws-deployer::aws:s3/bucket:Bucket::${h}`]),
    );
    await fc.assert(
      fc.asyncProperty(target, async (tg) => {
        fc.pre(!(Array.isArray(tg) && tg.length > 0 && tg.length <= 100 && tg.every((x) => typeof x === "string" && x.length <= 1024 && URN_OF_S1.test(x))));
        await refused(await t.http().post("/v1/stacks/s1/deployments").send({ version: "1.0.0", target: tg }), `target ${JSON.stringify(tg)?.slice(0, 80)}`);
      }),
      RUNS,
    );
  });

  it("refuses hostile rollback targets and reasons", async () => {
    await fc.assert(
      fc.asyncProperty(fc.oneof(hostile, fc.jsonValue()), fc.oneof(fc.constant("r"), hostile, fc.jsonValue()), async (to, reason) => {
        const validTo = typeof to === "string" && ROLLBACK_TO.test(to);
        const validReason = typeof reason === "string" && reason.trim().length >= 1 && reason.trim().length <= 1000;
        fc.pre(!(validTo && validReason));
        await refused(await t.http().post("/v1/stacks/s1/rollbacks").send({ to, reason }), `rollback to ${JSON.stringify(to)?.slice(0, 60)}`);
      }),
      RUNS,
    );
  });

  it("refuses hostile bodies on every POST route (JSON values, unknown fields, hostile known fields, malformed JSON)", async () => {
    const posts = ROUTES.filter((r) => r.method === "post" && r.body);
    const knownFields = ["version", "message", "target", "to", "reason", "confirm", "force", "comment"];
    const body = fc.oneof(
      fc.jsonValue(),
      fc.dictionary(hostile.map((k) => k.slice(0, 100)), fc.jsonValue(), { minKeys: 1, maxKeys: 4 }),
      fc.dictionary(fc.constantFrom(...knownFields), fc.oneof(hostile, fc.jsonValue()), { minKeys: 1, maxKeys: 4 }),
    );
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...posts), body, fc.boolean(), async (route, b, malformed) => {
        const url = route.path.replace(":stack", "s1").replace(":id", knownJob);
        if (malformed) {
          const text = `${JSON.stringify(b) ?? ""}`.slice(0, -1) || "{";
          fc.pre(!(() => { try { JSON.parse(text); return true; } catch { return false; } })());
          await refused(await t.http().post(url).set("Content-Type", "application/json").send(text), `${url} malformed`);
          return;
        }
        fc.pre(!route.body!.safeParse(b).success);
        await refused(await t.http().post(url).set("Content-Type", "application/json").send(JSON.stringify(b)), `${url} ${JSON.stringify(b)?.slice(0, 80)}`);
      }),
      RUNS,
    );
  });

  it("answers hostile query strings of every read with 200 or a 4xx in the error shape, never running anything", async () => {
    const reads = ROUTES.filter((r) => r.method === "get" && r.role !== "none" && !r.path.endsWith("/outputs") && !r.path.endsWith("/events"));
    const key = fc.oneof(fc.constantFrom("stack", "status", "operation", "limit", "before", "from", "to", "lastEventId"), hostile);
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...reads), fc.array(fc.tuple(key, hostile), { minLength: 1, maxLength: 3 }), async (route, pairs) => {
        const query = pairs.map(([k, v]) => `${encodeURIComponent(k.slice(0, 200))}=${encodeURIComponent(v.slice(0, 2_000))}`).join("&");
        const url = `${route.path.replace(":stack", "s1").replace(":id", knownJob)}?${query}`;
        const res = await t.http().get(url);
        if (res.status === 200) {
          expect(t.engine.calls.length).to.equal(engineCalls);
          return;
        }
        await refused(res, `GET ${url.slice(0, 120)}`);
      }),
      RUNS,
    );
  });

  it("refuses hostile Idempotency-Key and Last-Event-ID headers", async () => {
    const printable = hostile.filter((h) => /^[\t\x20-\x7e\x80-\xff]*$/.test(h) && h.length <= 8_000 && h.trim() === h && h !== "");
    await fc.assert(
      fc.asyncProperty(printable, async (value) => {
        if (!/^[\x20-\x7e]{1,200}$/.test(value)) {
          await refused(await t.http().post("/v1/stacks/s1/drift-checks").set("Idempotency-Key", value).send({}), `Idempotency-Key ${value.slice(0, 60)}`);
        }
        if (!/^\d+$/.test(value.trim())) {
          await refused(await t.http().get(`/v1/jobs/${knownJob}/events`).set("Last-Event-ID", value), `Last-Event-ID ${value.slice(0, 60)}`);
        }
      }),
      RUNS,
    );
  });

  it("wrote no file outside the data directory, and in it only the store", () => {
    expect(snapshot()).to.deep.equal(baseline);
    expect(tree(dataDir).filter((f) => !/^deployer\.db(-wal|-shm)?$/.test(f))).to.deep.equal([]);
  });
});
