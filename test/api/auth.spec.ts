/** The authorization seam issue 5 builds on: roles imply lesser ones, per stack, 404 without read access. */
import { expect } from "chai";
import { ANONYMOUS, hasRole, PUBLIC, requireRole, type Principal } from "../../api/auth";
import { ForbiddenError } from "../../api/errors";
import { NotFoundError } from "../../automation/errors";
import { ROUTES } from "../../api/routes/table";

const alice: Principal = { name: "alice", roles: { "*": ["viewer"], dev: ["deployer"], prod: ["approver"] } };

describe("api: auth seam", () => {
  it("lets the anonymous principal do everything until issue 5", () => {
    for (const role of ["viewer", "deployer", "admin", "approver"] as const) expect(hasRole(ANONYMOUS, role, { stack: "prod" })).to.equal(true);
  });

  it("gives public routes a principal with no role", () => {
    expect(hasRole(PUBLIC, "none")).to.equal(true);
    expect(hasRole(PUBLIC, "viewer", { stack: "dev" })).to.equal(false);
  });

  it("grants roles per stack, with deployer implying viewer and approver standing apart", () => {
    expect(hasRole(alice, "deployer", { stack: "dev" })).to.equal(true);
    expect(hasRole(alice, "viewer", { stack: "dev" })).to.equal(true);
    expect(hasRole(alice, "deployer", { stack: "prod" })).to.equal(false);
    expect(hasRole(alice, "approver", { stack: "prod" })).to.equal(true);
    expect(hasRole(alice, "admin", { stack: "dev" })).to.equal(false);
  });

  it("answers 403 for a role the principal lacks on a stack it can read, 404 where it cannot read", () => {
    expect(() => requireRole("deployer", alice, { stack: "prod" })).to.throw(ForbiddenError);
    const bob: Principal = { name: "bob", roles: { dev: ["deployer"] } };
    expect(() => requireRole("viewer", bob, { stack: "prod" })).to.throw(NotFoundError);
    expect(() => requireRole("deployer", bob, { stack: "dev" })).to.not.throw();
  });

  it("gives every /v1 route of the table a role, and the destructive ones admin", () => {
    for (const route of ROUTES) {
      expect(["none", "viewer", "deployer", "admin", "approver"], route.path).to.include(route.role);
      if (route.path.startsWith("/v1/")) expect(route.role, route.path).to.not.equal("none");
    }
    const role = (method: string, path: string) => ROUTES.find((r) => r.method === method && r.path === path)?.role;
    expect(role("post", "/v1/stacks/:stack/destroys")).to.equal("admin");
    expect(role("post", "/v1/stacks/:stack/unlock")).to.equal("admin");
    expect(role("post", "/v1/stacks/:stack/deployments")).to.equal("deployer");
    expect(role("get", "/v1/jobs/:id/events")).to.equal("viewer");
  });
});
