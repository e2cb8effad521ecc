/**
 * Authentication and authorization as units: roles per stack, the tokens file's validation, the
 * constant-time lookup, the first start's admin token, and the reload that keeps the old tokens when
 * the new file is bad.
 */
import { expect } from "chai";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "fs";
import { tmpdir } from "os";
import * as path from "path";
import { parse as parseYaml } from "yaml";
import { hasRole, hasRoleEverywhere, PUBLIC, stacksWithRole, readableStacks, readsEveryStack, requireRole, UnreadableStackError, type Principal } from "../../api/auth";
import { ForbiddenError } from "../../api/errors";
import { ROUTES } from "../../api/routes/table";
import { bootstrapTokens, generateToken, loadTokensFile, sha256Hex, TokenRegistry, TokensFileError, TokenSet, TOKEN_PREFIX } from "../../api/tokens";
import { NotFoundError } from "../../automation/errors";

const alice: Principal = { name: "alice", roles: { "*": ["viewer"], dev: ["deployer"], prod: ["approver"] } };

describe("api: auth", () => {
  describe("roles", () => {
    it("gives public routes a principal with no role", () => {
      expect(hasRole(PUBLIC, "none")).to.equal(true);
      expect(hasRole(PUBLIC, "viewer", { stack: "dev" })).to.equal(false);
    });

    it("grants roles per stack, with deployer implying viewer and approver standing apart", () => {
      expect(hasRole(alice, "deployer", { stack: "dev" })).to.equal(true);
      expect(hasRole(alice, "viewer", { stack: "dev" })).to.equal(true);
      expect(hasRole(alice, "deployer", { stack: "prod" })).to.equal(false);
      expect(hasRole(alice, "approver", { stack: "prod" })).to.equal(true);
      expect(hasRole(alice, "approver", { stack: "dev" })).to.equal(false);
      expect(hasRole(alice, "admin", { stack: "dev" })).to.equal(false);
    });

    it("lets admin imply deployer and viewer but not approver", () => {
      const root: Principal = { name: "root", roles: { "*": ["admin"] } };
      expect(hasRole(root, "deployer", { stack: "prod" })).to.equal(true);
      expect(hasRole(root, "viewer")).to.equal(true);
      expect(hasRole(root, "approver", { stack: "prod" })).to.equal(false);
    });

    it("does not treat a stack named like an Object property as granted", () => {
      const bob: Principal = { name: "bob", roles: { dev: ["viewer"] } };
      expect(hasRole(bob, "viewer", { stack: "constructor" })).to.equal(false);
      expect(hasRole(bob, "viewer", { stack: "__proto__" })).to.equal(false);
    });

    it("answers 403 for a role the principal lacks on a stack it can read, 404 where it cannot read", () => {
      expect(() => requireRole("deployer", alice, { stack: "prod" })).to.throw(ForbiddenError);
      const bob: Principal = { name: "bob", roles: { dev: ["deployer"] } };
      expect(() => requireRole("viewer", bob, { stack: "prod" })).to.throw(NotFoundError).and.to.be.instanceOf(UnreadableStackError);
      expect(() => requireRole("deployer", bob, { stack: "dev" })).to.not.throw();
      expect(() => requireRole("admin", bob)).to.throw(ForbiddenError);
    });

    it("needs a list route's role (no stack) on at least one stack, and knows who holds it everywhere", () => {
      const bob: Principal = { name: "bob", roles: { dev: ["deployer"] } };
      expect(hasRole(bob, "viewer")).to.equal(true);
      expect(hasRole(bob, "admin")).to.equal(false);
      expect(() => requireRole("admin", bob)).to.throw(ForbiddenError);
      expect(hasRoleEverywhere(bob, "viewer")).to.equal(false);
      expect(hasRoleEverywhere({ name: "root", roles: { "*": ["admin"] } }, "viewer")).to.equal(true);
      expect(stacksWithRole(bob, "deployer", ["dev", "prod"])).to.deep.equal(["dev"]);
    });

    it("lists only the stacks a principal may read", () => {
      const bob: Principal = { name: "bob", roles: { dev: ["deployer"], qa: ["approver"] } };
      expect(readableStacks(bob, ["dev", "qa", "prod"])).to.deep.equal(["dev"]);
      expect(readsEveryStack(bob)).to.equal(false);
      expect(readsEveryStack(alice)).to.equal(true);
    });

    it("gives every /v1 route of the table a role, and the destructive ones admin", () => {
      for (const route of ROUTES) {
        expect(["none", "viewer", "deployer", "admin", "approver", "metrics"], route.path).to.include(route.role);
        if (route.path.startsWith("/v1/")) expect(route.role, route.path).to.not.equal("none");
      }
      const role = (method: string, p: string) => ROUTES.find((r) => r.method === method && r.path === p)?.role;
      expect(role("post", "/v1/stacks/:stack/destroys")).to.equal("admin");
      expect(role("post", "/v1/stacks/:stack/unlock")).to.equal("admin");
      expect(role("get", "/v1/audit")).to.equal("admin");
      expect(role("post", "/v1/stacks/:stack/deployments")).to.equal("deployer");
      expect(role("post", "/v1/jobs/:id/cancel")).to.equal("deployer");
      expect(role("get", "/v1/jobs/:id/events")).to.equal("viewer");
    });
  });

  describe("tokens file", () => {
    let dir: string;
    beforeEach(() => {
      dir = mkdtempSync(path.join(tmpdir(), "deployer-tokens-unit-"));
    });
    afterEach(() => rmSync(dir, { recursive: true, force: true }));

    const write = (text: string) => {
      const file = path.join(dir, "tokens.yaml");
      writeFileSync(file, text);
      return file;
    };
    const hash = sha256Hex("alice-token");

    it("loads names, hashes and roles per stack, and finds a principal by its token", () => {
      const file = write(`tokens:\n  - name: alice\n    sha256: ${hash.toUpperCase()}\n    roles: { "*": [viewer], dev: [deployer], prod: [approver] }\n`);
      const set = loadTokensFile(file);
      expect(set.names).to.deep.equal(["alice"]);
      expect(set.find("alice-token")).to.deep.equal({ name: "alice", roles: { "*": ["viewer"], dev: ["deployer"], prod: ["approver"] } });
      expect(set.find("alice-token ")).to.equal(undefined);
      expect(set.find("")).to.equal(undefined);
      expect(set.find(hash)).to.equal(undefined); // the hash is not the token
    });

    const bad: [string, string, RegExp][] = [
      ["a hash that is not 64 hex characters", `tokens:\n  - name: a\n    sha256: abc\n    roles: { "*": [viewer] }\n`, /tokens\.0\.sha256: must be the SHA-256/],
      ["an unknown role", `tokens:\n  - name: a\n    sha256: ${hash}\n    roles: { dev: [root] }\n`, /tokens\.0\.roles\.dev\.0: must be one of viewer, deployer, admin, approver/],
      ["a stack key that is not a stack name", `tokens:\n  - name: a\n    sha256: ${hash}\n    roles: { "../x": [viewer] }\n`, /tokens\.0\.roles\.\.\.\/x: must be "\*" or a stack name/],
      ["no roles at all", `tokens:\n  - name: a\n    sha256: ${hash}\n    roles: {}\n`, /tokens\.0\.roles: must grant at least one role/],
      ["an unknown field", `tokens:\n  - name: a\n    token: plain-text\n    sha256: ${hash}\n    roles: { "*": [viewer] }\n`, /tokens\.0\.token: unknown field/],
      ["a missing name", `tokens:\n  - sha256: ${hash}\n    roles: { "*": [viewer] }\n`, /tokens\.0\.name: is required/],
      ["a name that is a number", `tokens:\n  - name: 5\n    sha256: ${hash}\n    roles: { "*": [viewer] }\n`, /tokens\.0\.name: must be a string/],
      ["two tokens with one name", `tokens:\n  - { name: a, sha256: ${hash}, roles: { "*": [viewer] } }\n  - { name: a, sha256: ${sha256Hex("b")}, roles: { "*": [viewer] } }\n`, /tokens\.1\.name: "a" is already/],
      ["two names with one hash", `tokens:\n  - { name: a, sha256: ${hash}, roles: { "*": [viewer] } }\n  - { name: b, sha256: ${hash}, roles: { "*": [viewer] } }\n`, /tokens\.1\.sha256: is the same hash/],
      ["no tokens key", `users: []\n`, /tokens: is required|users: unknown field/],
      ["YAML that does not parse", `tokens: [\n  - name: "dpl_SECRET_LOOKING\n`, /is not valid YAML/],
    ];
    for (const [name, text, expected] of bad) {
      it(`refuses ${name}, naming the file and the field`, () => {
        const file = write(text);
        let error: unknown;
        try {
          loadTokensFile(file);
        } catch (err) {
          error = err;
        }
        expect(error).to.be.instanceOf(TokensFileError);
        expect((error as Error).message).to.contain(file);
        expect((error as Error).message).to.match(expected);
        expect((error as Error).message).to.not.contain("dpl_SECRET_LOOKING");
      });
    }

    it("refuses a file that does not exist", () => {
      expect(() => loadTokensFile(path.join(dir, "nope.yaml"))).to.throw(TokensFileError, /does not exist/);
    });

    it("compares against every stored hash, whichever matches (no early exit)", () => {
      const tokens = Array.from({ length: 5 }, () => generateToken());
      const set = new TokenSet({ tokens: tokens.map((t, i) => ({ name: `p${i}`, sha256: sha256Hex(t), roles: { "*": ["viewer"] } })) });
      const crypto = require("crypto") as typeof import("crypto");
      const original = crypto.timingSafeEqual;
      let calls = 0;
      crypto.timingSafeEqual = ((a: NodeJS.ArrayBufferView, b: NodeJS.ArrayBufferView) => {
        calls++;
        return original(a, b);
      }) as typeof original;
      try {
        for (const [i, t] of tokens.entries()) {
          calls = 0;
          expect(set.find(t)?.name).to.equal(`p${i}`);
          expect(calls).to.equal(tokens.length);
        }
        calls = 0;
        expect(set.find("nope")).to.equal(undefined);
        expect(calls).to.equal(tokens.length);
      } finally {
        crypto.timingSafeEqual = original;
      }
    });

    it("generates tokens of 32 random bytes with a recognisable prefix", () => {
      const a = generateToken();
      expect(a.startsWith(TOKEN_PREFIX)).to.equal(true);
      expect(Buffer.from(a.slice(TOKEN_PREFIX.length), "base64url")).to.have.length(32);
      expect(generateToken()).to.not.equal(a);
    });
  });

  describe("first start", () => {
    let dir: string;
    beforeEach(() => {
      dir = mkdtempSync(path.join(tmpdir(), "deployer-boot-"));
    });
    afterEach(() => rmSync(dir, { recursive: true, force: true }));

    it("creates one admin token, stores only its hash (mode 0600), and hands the token out once", () => {
      const first = bootstrapTokens({ dataDir: dir });
      expect(first.createdToken).to.match(/^dpl_[A-Za-z0-9_-]{43}$/);
      expect(first.file).to.equal(path.join(dir, "tokens.yaml"));
      const text = readFileSync(first.file, "utf8");
      expect(text).to.not.contain(first.createdToken!);
      expect(parseYaml(text)).to.deep.equal({ tokens: [{ name: "admin", sha256: sha256Hex(first.createdToken!), roles: { "*": ["admin"] } }] });
      if (process.platform !== "win32") expect(statSync(first.file).mode & 0o777).to.equal(0o600);
      expect(first.tokens.find(first.createdToken!)?.name).to.equal("admin");

      const second = bootstrapTokens({ dataDir: dir });
      expect(second.createdToken).to.equal(undefined);
      expect(second.tokens.find(first.createdToken!)?.name).to.equal("admin");
    });

    it("uses the configured file instead, and never creates one", () => {
      const file = path.join(dir, "mine.yaml");
      writeFileSync(file, `tokens:\n  - { name: ci, sha256: ${sha256Hex("ci-token")}, roles: { dev: [deployer] } }\n`);
      const boot = bootstrapTokens({ configuredFile: file, dataDir: dir });
      expect(boot.createdToken).to.equal(undefined);
      expect(boot.tokens.find("ci-token")?.name).to.equal("ci");
      expect(existsSync(path.join(dir, "tokens.yaml"))).to.equal(false);
      expect(() => bootstrapTokens({ configuredFile: path.join(dir, "missing.yaml"), dataDir: dir })).to.throw(TokensFileError, /does not exist/);
    });
  });

  describe("reload", () => {
    it("replaces the tokens with a good file and keeps them with a bad one", () => {
      const dir = mkdtempSync(path.join(tmpdir(), "deployer-reload-"));
      try {
        const file = path.join(dir, "tokens.yaml");
        writeFileSync(file, `tokens:\n  - { name: a, sha256: ${sha256Hex("token-a")}, roles: { "*": [viewer] } }\n`);
        const registry = new TokenRegistry(file, loadTokensFile(file));
        writeFileSync(file, `tokens:\n  - { name: b, sha256: ${sha256Hex("token-b")}, roles: { "*": [viewer] } }\n`);
        expect(registry.reload()).to.deep.equal({ ok: true, count: 1 });
        expect(registry.tokens.find("token-a")).to.equal(undefined);
        expect(registry.tokens.find("token-b")?.name).to.equal("b");
        writeFileSync(file, `tokens:\n  - { name: c, sha256: nothex, roles: { "*": [viewer] } }\n`);
        const result = registry.reload();
        expect(result.ok).to.equal(false);
        expect(!result.ok && result.error.message).to.match(/tokens\.0\.sha256/);
        expect(registry.tokens.find("token-b")?.name).to.equal("b");
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  });
});
