/**
 * The authorization matrix, generated from the route table (a new route is in it the moment it is in
 * the table): every route × every role × a stack where the role is granted (s1) and one where it is
 * not (s2), plus no token at all.
 *
 * Each principal holds one role on s1 only. Expected, from the design's role order (viewer < deployer
 * < admin, approver beside them), written out here rather than asked of the code under test:
 *
 *   - no token: 401 on every route with a role; public routes answer without one;
 *   - s2 (no role there): 404, worded like a stack or job that does not exist;
 *   - s1, the role implies the route's: allowed (neither 401 nor 403 nor that 404; the handler may
 *     still refuse the empty body with a 400 or a finished job with a 409);
 *   - s1, it does not but the principal can read s1: 403; it cannot even read s1 (approver): 404;
 *   - routes without a stack (the lists, the audit trail): allowed when the role implies the route's
 *     on some stack, else 403.
 */
import { expect } from "chai";
import type { Role, RouteRole } from "../../api/auth";
import type { AnyRoute } from "../../api/routes/route";
import { ROUTES } from "../../api/routes/table";
import { DriftScheduler } from "../../automation/jobs/schedule";
import { errorOf, startTestServer, type TestServer } from "./support/server";

const ROLES: readonly Role[] = ["viewer", "deployer", "approver", "admin", "metrics"];
/** What each role may do, by the design (not by the code under test). */
const IMPLIES: Readonly<Record<Role, readonly RouteRole[]>> = {
  viewer: ["viewer"],
  deployer: ["viewer", "deployer"],
  admin: ["viewer", "deployer", "admin", "metrics"],
  approver: ["approver"],
  metrics: ["metrics"],
};
const principalOf = (role: Role) => `${role}-s1`;

type Expectation = "allowed" | "forbidden" | "hidden" | "unauthenticated";

function expectation(route: AnyRoute, role: Role | undefined, stack: "s1" | "s2" | undefined): Expectation {
  if (route.role === "none") return "allowed";
  if (role === undefined) return "unauthenticated";
  // The metrics name every stack: the role counts only when granted on "*", and the matrix grants on s1.
  if (route.role === "metrics") return "forbidden";
  if (stack === "s2") return "hidden";
  if (IMPLIES[role].includes(route.role)) return "allowed";
  if (stack === undefined) return "forbidden";
  return IMPLIES[role].includes("viewer") ? "forbidden" : "hidden";
}

/** The path parameters the matrix knows how to fill; a route with another one fails the matrix until it is taught. */
const KNOWN_PARAMS = new Set(["stack", "id"]);

describe("api: authorization matrix (generated from the route table)", function () {
  this.timeout(60_000);
  let t: TestServer;
  const jobs: Record<"s1" | "s2", string> = { s1: "", s2: "" };

  before(async () => {
    t = await startTestServer({ principals: ROLES.map((role) => ({ name: principalOf(role), roles: { s1: [role] } })) });
    for (const stack of ["s1", "s2"] as const) {
      const res = await t.http().post(`/v1/stacks/${stack}/previews`).send({});
      expect(res.status).to.equal(202);
      jobs[stack] = res.body.id;
      await t.done(res.body.id);
    }
  });

  after(async () => {
    await t?.close();
  });

  function pathFor(route: AnyRoute, stack: "s1" | "s2"): string {
    return route.path.replace(/:([A-Za-z_]+)/g, (_m, name: string) => {
      if (!KNOWN_PARAMS.has(name)) throw new Error(`the authorization matrix does not know how to fill :${name} of ${route.path}: teach it`);
      return name === "stack" ? stack : jobs[stack];
    });
  }

  async function send(route: AnyRoute, path: string, as: Role | undefined) {
    const agent = as === undefined ? t.anonymous() : t.as(principalOf(as));
    const req = agent[route.method](path);
    return route.method === "get" ? req : req.send({});
  }

  function check(res: { status: number; body: any; text: string }, expected: Expectation, label: string): void {
    const hiddenMessage = /^(stack "[a-z0-9-]+"|job job_[0-9a-z]{26}) not found$/;
    switch (expected) {
      case "unauthenticated":
        expect(res.status, label).to.equal(401);
        expect(errorOf(res).code).to.equal("unauthenticated");
        break;
      case "hidden":
        expect(res.status, `${label}: ${res.text}`).to.equal(404);
        expect(errorOf(res).message, label).to.match(hiddenMessage);
        break;
      case "forbidden":
        expect(res.status, `${label}: ${res.text}`).to.equal(403);
        expect(errorOf(res).code).to.equal("forbidden");
        break;
      case "allowed":
        expect(res.status, `${label}: ${res.text}`).to.not.be.oneOf([401, 403]);
        if (res.status === 404) expect(errorOf(res).message, label).to.not.match(hiddenMessage);
        expect(res.status, `${label}: ${res.text}`).to.be.below(500);
        break;
    }
  }

  it("covers every route of the table", () => {
    expect(ROUTES.length).to.be.greaterThan(20);
    for (const route of ROUTES) for (const [, name] of route.path.matchAll(/:([A-Za-z_]+)/g)) expect(KNOWN_PARAMS.has(name), `${route.path}: :${name}`).to.equal(true);
  });

  for (const route of ROUTES) {
    const label = `${route.method.toUpperCase()} ${route.path} (${route.role})`;
    const scoped = /:(stack|id)\b/.test(route.path);
    describe(label, () => {
      if (route.role === "none") {
        it("answers without a token", async () => {
          check(await send(route, pathFor(route, "s1"), undefined), "allowed", label);
        });
        return;
      }
      it("answers 401 without a token", async () => {
        const res = await send(route, pathFor(route, "s1"), undefined);
        check(res, "unauthenticated", label);
        expect(res.headers["www-authenticate"]).to.match(/^Bearer /);
      });
      for (const role of ROLES) {
        for (const stack of scoped ? (["s1", "s2"] as const) : ([undefined] as const)) {
          const expected = expectation(route, role, stack);
          it(`${role}${stack ? ` on ${stack === "s1" ? "its stack" : "another stack"}` : ""}: ${expected}`, async () => {
            check(await send(route, pathFor(route, stack ?? "s1"), role), expected, `${label} as ${role}${stack ? ` on ${stack}` : ""}`);
          });
        }
      }
    });
  }

  it("lets only an admin force a cancel (deployer: 403, admin: past authorization)", async () => {
    const byDeployer = await t.as(principalOf("deployer")).post(`/v1/jobs/${jobs.s1}/cancel`).send({ force: true });
    expect(byDeployer.status).to.equal(403);
    expect(errorOf(byDeployer).message).to.contain("admin");
    const byAdmin = await t.as(principalOf("admin")).post(`/v1/jobs/${jobs.s1}/cancel`).send({ force: true });
    expect(byAdmin.status).to.not.be.oneOf([401, 403, 404]);
  });

  it("answers a hidden stack exactly like one that does not exist, and a hidden job like an unknown one", async () => {
    const as = t.as(principalOf("deployer"));
    const hidden = errorOf(await as.get("/v1/stacks/s2"));
    const missing = errorOf(await as.get("/v1/stacks/nope"));
    expect(hidden.message.replace("s2", "X")).to.equal(missing.message.replace("nope", "X"));
    expect(hidden.details).to.deep.equal(missing.details);
    const hiddenJob = errorOf(await as.get(`/v1/jobs/${jobs.s2}`));
    const unknownJob = errorOf(await as.get("/v1/jobs/job_00000000000000000000000000"));
    expect(hiddenJob.message.replace(jobs.s2, "X")).to.equal(unknownJob.message.replace("job_00000000000000000000000000", "X"));
    expect(hiddenJob.details).to.deep.equal(unknownJob.details);
  });

  it("serves /metrics only to a token with the metrics role (or admin) on every stack", async () => {
    const scrape = await startTestServer({ principals: [{ name: "prom", roles: { "*": ["metrics"] } }, { name: "all-viewer", roles: { "*": ["viewer"] } }] });
    try {
      const ok = await scrape.as("prom").get("/metrics");
      expect(ok.status).to.equal(200);
      expect(ok.text).to.match(/deployer_/);
      expect((await scrape.http().get("/metrics")).status).to.equal(200);
      expect((await scrape.as("all-viewer").get("/metrics")).status).to.equal(403);
      expect((await scrape.anonymous().get("/metrics")).status).to.equal(401);
      // A metrics token reads nothing else.
      expect((await scrape.as("prom").get("/v1/stacks/s1")).status).to.equal(404);
    } finally {
      await scrape.close();
    }
  });

  it("shows a viewer an environment's load error only when it names no stack the viewer may not read", async () => {
    // A load error concerns its own file; one whose reason happens to name another stack (here a key
    // spelled like it) is shown whole to an admin and masked for a viewer who may not read that stack.
    const broken = await startTestServer({
      principals: [{ name: "s1-viewer", roles: { s1: ["viewer"] } }],
      editEnv: (name, text) => (name === "s1" ? `${text}\nbogus_s2: 1\n` : text),
    });
    try {
      const admin = await broken.http().get("/v1/stacks/s1");
      expect(admin.body.invalid.reason, admin.text).to.match(/bogus_s2/);
      const viewer = await broken.as("s1-viewer").get("/v1/stacks/s1");
      expect(viewer.status).to.equal(200);
      expect(viewer.body.invalid.reason).to.be.a("string").and.not.match(/s2/);
      const listed = await broken.as("s1-viewer").get("/v1/stacks");
      expect(JSON.stringify(listed.body)).to.not.match(/s2/);
    } finally {
      await broken.close();
    }
  });

  it("never shows a viewer another stack's overlapping VPC range: overlaps are review findings, not load errors", async () => {
    const overlap = await startTestServer({
      principals: [{ name: "s1-viewer", roles: { s1: ["viewer"] } }],
      editEnv: (_name, text) => text.replace(/cidr: [0-9./]+/, "cidr: 10.99.0.0/16"),
    });
    try {
      const viewer = await overlap.as("s1-viewer").get("/v1/stacks/s1");
      expect(viewer.status).to.equal(200);
      expect(viewer.body.invalid).to.equal(undefined);
      const listed = await overlap.as("s1-viewer").get("/v1/stacks");
      expect(JSON.stringify(listed.body)).to.not.match(/s2|10\.99/);
    } finally {
      await overlap.close();
    }
  });

  describe("Idempotency-Key is scoped by principal and stack", () => {
    const drift = (as: Role | "admin-token", stackPath: string, key: string) =>
      (as === "admin-token" ? t.http() : t.as(principalOf(as))).post(`/v1/stacks/${stackPath}/drift-checks`).set("Idempotency-Key", key).send({});

    it("gives another principal's same key a job of its own, never the other's job id", async () => {
      const mine = await drift("admin-token", "s1", "release-7");
      const theirs = await drift("deployer", "s1", "release-7");
      expect(theirs.status, theirs.text).to.equal(202);
      expect(theirs.body.id).to.not.equal(mine.body.id);
      expect(theirs.headers["idempotent-replayed"]).to.equal(undefined);
      const again = await drift("deployer", "s1", "release-7");
      expect(again.body.id).to.equal(theirs.body.id);
      expect(again.headers["idempotent-replayed"]).to.equal("true");
    });

    it("lets a pipeline reuse one release key on another stack", async () => {
      const s1 = await drift("admin-token", "s1", "release-8");
      const s2 = await drift("admin-token", "s2", "release-8");
      expect(s2.status, s2.text).to.equal(202);
      expect(s2.body.id).to.not.equal(s1.body.id);
      expect(s2.body.stack).to.equal("s2");
    });

    it("treats a percent-encoded stack name as the same stack (same key, same job)", async () => {
      const encoded = await drift("deployer", "%731", "release-9");
      const plain = await drift("deployer", "s1", "release-9");
      expect(encoded.status, encoded.text).to.equal(202);
      expect(plain.status, plain.text).to.equal(202);
      expect(plain.body.id).to.equal(encoded.body.id);
    });

    it("keeps the scheduler's keys out of reach: a deployer of s1 sending s2's next scheduled key does not take s2's drift check", async () => {
      const at = Date.parse("2026-01-01T00:30:00.000Z");
      const due = "2026-01-01T01:00:00.000Z";
      for (const key of [`drift-schedule:s2:${due}`, `schedule:drift:s2:${due}`]) {
        const res = await drift("deployer", "s1", key);
        expect(res.status, res.text).to.equal(202);
      }
      const env = t.server.ctx.environments.load("s2");
      let clock = at;
      const scheduler = new DriftScheduler({
        queue: t.server.queue,
        store: t.server.store,
        environments: () => [{ ...env, deploy: { ...env.deploy, driftSchedule: "0 * * * *" } }],
        now: () => clock,
        timers: { set: () => 0, clear: () => undefined },
      });
      scheduler.start();
      clock = Date.parse(due) + 1;
      const created = await scheduler.tick(clock);
      scheduler.stop();
      expect(created.map((j) => [j.stack, j.source])).to.deep.equal([["s2", "schedule"]]);
    });
  });
});
