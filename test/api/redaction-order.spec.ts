/**
 * Redaction happens on values, before they are serialized and before they are cut: a secret with a
 * quote or a backslash survives JSON escaping otherwise, and half a secret survives a cut.
 */
import { expect } from "chai";
import pino from "pino";
import { AuditTrail } from "../../api/audit";
import { classify } from "../../api/errors";
import { ROUTES } from "../../api/routes/table";
import { ConflictError } from "../../automation/errors";
import { asyncStore, SqliteStore } from "../../automation/store";

describe("api: redaction before serializing and before truncating", () => {
  const saved = process.env.PULUMI_CONFIG_PASSPHRASE;
  afterEach(() => {
    if (saved === undefined) delete process.env.PULUMI_CONFIG_PASSPHRASE;
    else process.env.PULUMI_CONFIG_PASSPHRASE = saved;
  });

  it('redacts an error\'s details holding a secret with " and \\ in it', () => {
    process.env.PULUMI_CONFIG_PASSPHRASE = 'pa"ss\\wd';
    const c = classify(new ConflictError("refused", { details: { holder: 'engine said pa"ss\\wd here', nested: ['pa"ss\\wd'] } }));
    const text = JSON.stringify(c.details);
    expect(text).to.not.contain("pa");
    expect(c.details).to.deep.equal({ holder: "engine said [secret] here", nested: ["[secret]"] });
  });

  it("redacts an audit record's strings before cutting them to length, so no part of a secret survives the cut", async () => {
    const secret = "s3cr3t-passphrase-value-0123456789";
    process.env.PULUMI_CONFIG_PASSPHRASE = secret;
    const store = asyncStore(SqliteStore.open(":memory:"));
    const trail = new AuditTrail(store, pino({ level: "silent" }));
    const route = ROUTES.find((r) => r.method === "post" && r.path === "/v1/stacks/:stack/deployments")!;
    // The cut is at 300 characters: the secret starts 10 characters before it.
    const message = `${"x".repeat(290)}${secret}`;
    const entry = (await trail.record({ route, status: 202, requestId: "r1", address: "127.0.0.1", actor: "alice", body: { version: "1.0.0", message } }))!;
    const stored = JSON.stringify((await store.listAudit({}))[0].details);
    expect(stored).to.not.contain(secret.slice(0, 10));
    expect(JSON.stringify(entry.details)).to.contain("[secret]");
    await store.close();
  });
});
