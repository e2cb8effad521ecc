/**
 * Cancel and force cancel from the job page, in Chromium, against the service on the controllable test
 * engine: an offline job ends too soon to be caught running, and force cancel needs an engine that
 * ignores the graceful interrupt (`ignoreAbort`).
 */
import { expect } from "chai";
import type { Browser } from "playwright-core";
import { buildDashboard } from "../../dashboard/build";
import { startTestServer, type TestServer } from "../api/support/server";
import { buttonNames, launch, open, requireChromium, signIn, type OpenPage } from "./support/browser";

describe("dashboard: in Chromium, cancel and force cancel", function () {
  this.timeout(120_000);
  let t: TestServer;
  let browser: Browser;
  let opened: OpenPage | undefined;

  before(async function () {
    requireChromium(this);
    await buildDashboard({ quiet: true });
    t = await startTestServer({ principals: [{ name: "dev", roles: { "*": ["deployer"] } }] });
    browser = await launch();
  });

  after(async () => {
    await browser?.close();
    await t?.close();
  });

  afterEach(async () => {
    t.engine.ignoreAbort = false;
    t.engine.unhold();
    if (opened) {
      expect(opened.errors, "console and page errors").to.deep.equal([]);
      await opened.context.close();
      opened = undefined;
    }
  });

  async function runningJob(): Promise<string> {
    t.engine.hold();
    t.engine.ignoreAbort = true;
    const res = await t.http().post("/v1/stacks/s1/deployments").send({ version: "1.0.0" });
    expect(res.status).to.equal(202);
    await t.engine.nextCall({ stack: "s1" });
    return res.body.id;
  }

  it("an admin's force cancel is refused before a graceful cancel (message next to it), then kills the job", async () => {
    const id = await runningJob();
    opened = await open(browser, t.url);
    opened.expectRefusal(409);
    const p = opened.page;
    await signIn(p, t.token("admin"));
    await p.goto(`${t.url}/#/jobs/${id}`);
    await p.getByTestId("job-status").getByText("running").waitFor();

    const force = p.locator("form", { has: p.getByRole("button", { name: "Force cancel" }) });
    await force.getByRole("button", { name: "Force cancel" }).click();
    await force.getByRole("alert").waitFor();
    expect(await force.getByRole("alert").textContent()).to.match(/graceful cancel/i);

    const graceful = p.waitForResponse((r) => r.url().endsWith(`/v1/jobs/${id}/cancel`) && r.request().method() === "POST");
    await p.getByRole("button", { name: "Cancel", exact: true }).click();
    expect((await graceful).status()).to.equal(202);
    expect((await t.server.store.getJob(id))!.status, "the engine ignores the graceful interrupt").to.equal("running");
    await force.getByRole("button", { name: "Force cancel" }).click();
    await p.getByTestId("job-status").getByText("canceled").waitFor();
    expect((await t.done(id)).status).to.equal("canceled");
    expect(t.engine.kills).to.deep.equal(["s1"]);
  });

  it("a deployer may cancel but is not offered force cancel", async () => {
    const id = await runningJob();
    opened = await open(browser, t.url);
    const p = opened.page;
    await signIn(p, t.token("dev"));
    await p.goto(`${t.url}/#/jobs/${id}`);
    await p.getByTestId("job-status").getByText("running").waitFor();
    expect((await buttonNames(p)).sort()).to.deep.equal(["Cancel", "Sign out"]);
  });
});
