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
import { errorOf, startTestServer, type TestServer } from "./support/server";

const ROLES: readonly Role[] = ["viewer", "deployer", "approver", "admin"];
/** What each role may do, by the design (not by the code under test). */
const IMPLIES: Readonly<Record<Role, readonly RouteRole[]>> = {
  viewer: ["viewer"],
  deployer: ["viewer", "deployer"],
  admin: ["viewer", "deployer", "admin"],
  approver: ["approver"],
};
const principalOf = (role: Role) => `${role}-s1`;

type Expectation = "allowed" | "forbidden" | "hidden" | "unauthenticated";

function expectation(route: AnyRoute, role: Role | undefined, stack: "s1" | "s2" | undefined): Expectation {
  if (route.role === "none") return "allowed";
  if (role === undefined) return "unauthenticated";
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
});
