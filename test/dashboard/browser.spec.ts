/**
 * The dashboard in a real browser (Debian's Chromium, playwright-core) against the real service
 * in-process on the offline engine: sign in, the stacks, a deployment started from the page and
 * followed live, a rollback, an approval by a second person, what a viewer sees, the audit trail,
 * destroy's confirmation, and the live log resuming after a dropped connection.
 *
 * After every test, for every page it opened: no console or page errors (CSP violations included), no
 * request to another host, the token in no URL, nothing in localStorage or cookies. Every page gets an
 * axe-core scan (no serious or critical violation) and a screenshot under test/dashboard/artifacts/.
 */
import { expect } from "chai";
import type { Browser, Page } from "playwright-core";
import { buildDashboard } from "../../dashboard/build";
import { eventText } from "../../dashboard/src/log";
import { readJson, resourceOf, stackFiles, TYPES, writeJson } from "../automation/support/offline-files";
import { startTestServer, type TestServer } from "../api/support/server";
import { buttonNames, launch, open, requireChromium, screenshot, seriousViolations, signIn, type OpenPage } from "./support/browser";

const LIVE_TIMEOUT = 90_000;

describe("dashboard: in Chromium, on the offline engine", function () {
  this.timeout(180_000);
  let t: TestServer;
  let browser: Browser;
  let pages: OpenPage[] = [];
  let firstDeployment = "";

  before(async function () {
    requireChromium(this);
    await buildDashboard({ quiet: true });
    t = await startTestServer({
      engine: "offline",
      stacks: ["local", "gated", "bounded", "broken"],
      editEnv: (name, text) => {
        if (name === "gated") return text.replace(/^deploy:\n/m, "deploy:\n  approvals: { required: 1 }\n");
        if (name === "bounded") return text.replace(/^deploy:\n/m, "deploy:\n  bounds: { maxCreates: 5 }\n");
        if (name === "broken") return `${text}\nbogus: true\n`;
        return text;
      },
      principals: [
        { name: "dev", roles: { "*": ["deployer", "approver"] } },
        { name: "approver2", roles: { "*": ["viewer", "approver"] } },
        { name: "viewer", roles: { "*": ["viewer"] } },
      ],
    });
    browser = await launch();
  });

  after(async () => {
    await browser?.close();
    await t?.close();
  });

  async function page(as?: string, refusals: readonly number[] = []): Promise<Page> {
    const p = await open(browser, t.url);
    refusals.forEach((status) => p.expectRefusal(status));
    pages.push(p);
    if (as !== undefined) await signIn(p.page, t.token(as));
    return p.page;
  }

  afterEach(async () => {
    const tokens = ["admin", "dev", "approver2", "viewer"].map((n) => t.token(n));
    for (const p of pages) {
      expect(p.errors, "console and page errors").to.deep.equal([]);
      for (const url of p.urls) {
        expect(url.startsWith(`${t.url}/`) || url === "about:blank", `a request to another host: ${url}`).to.equal(true);
        for (const token of tokens) expect(url, "a token in a URL").to.not.include(token);
      }
      const stored = await p.page.evaluate(() => {
        const g = globalThis as any;
        return { local: JSON.stringify({ ...g.localStorage }) as string, cookie: g.document.cookie as string, href: g.location.href as string };
      });
      expect(stored.local).to.equal("{}");
      expect(stored.cookie).to.equal("");
      for (const token of tokens) expect(stored.href).to.not.include(token);
      await p.context.close();
    }
    pages = [];
  });

  async function scan(p: Page, name: string): Promise<void> {
    await screenshot(p, name);
    const violations = await seriousViolations(p);
    expect(violations, `axe-core on the ${name} page: ${JSON.stringify(violations, null, 2)}`).to.deep.equal([]);
  }

  async function jobIdOf(p: Page): Promise<string> {
    await p.waitForURL(/#\/jobs\/job_[0-9a-z]{26}$/);
    return /job_[0-9a-z]{26}$/.exec(p.url())![0];
  }

  const status = (p: Page) => p.getByTestId("job-status");

  it("signs in with the Token field, shows the service's refusal next to it, lists every stack, and signs out", async () => {
    const p = await page(undefined, [401]);
    await p.getByRole("heading", { name: "Deployer" }).waitFor();
    await scan(p, "sign-in");
    await p.getByLabel("Token").fill("not-a-valid-token");
    await p.getByRole("button", { name: "Sign in" }).click();
    const refusal = p.locator("form").getByRole("alert");
    expect(await refusal.textContent()).to.equal("the bearer token is not valid");
    expect(await p.getByLabel("Token").getAttribute("aria-invalid")).to.equal("true");

    await signIn(p, t.token("admin"));
    const rows = p.locator("tbody tr");
    await rows.first().waitFor();
    expect(await p.locator("tbody th[scope=row] a").allTextContents()).to.deep.equal(["bounded", "gated", "local"]);
    expect(await p.getByRole("row", { name: /local/ }).textContent()).to.include("never deployed");
    const invalid = p.getByRole("region", { name: "Environment files that do not load" });
    expect(await invalid.textContent()).to.match(/broken: .*bogus/);
    expect(await p.evaluate(() => (globalThis as any).sessionStorage.getItem("deployer.token"))).to.equal(t.token("admin"));
    await scan(p, "stacks");

    await p.getByRole("button", { name: "Sign out" }).click();
    await p.getByLabel("Token").waitFor();
    expect(await p.evaluate(() => (globalThis as any).sessionStorage.length)).to.equal(0);
  });

  it("deploys local from the page and follows it live to succeeded", async () => {
    const p = await page("dev", [400]);
    await p.getByRole("link", { name: "local" }).click();
    await p.getByRole("heading", { level: 1, name: "Stack local" }).waitFor();
    const deploy = p.locator("form", { has: p.getByRole("button", { name: "Deploy" }) });

    // The service's refusal is shown next to the button, and the field it names is marked.
    await deploy.getByLabel("Version").fill("latest");
    await deploy.getByRole("button", { name: "Deploy" }).click();
    const refusal = deploy.getByRole("alert");
    await refusal.waitFor();
    expect(await refusal.textContent()).to.match(/^version: /);
    expect(await deploy.getByLabel("Version").getAttribute("aria-invalid")).to.equal("true");

    await deploy.getByLabel("Version").fill("1.0.0");
    await deploy.getByLabel("Message (optional)").fill("first from the dashboard");
    await deploy.getByRole("button", { name: "Deploy" }).click();
    firstDeployment = await jobIdOf(p);
    // Followed live: the page shows the job running before it shows it succeeded, without a reload.
    await status(p).getByText("running").waitFor({ timeout: LIVE_TIMEOUT });
    await status(p).getByText("succeeded").waitFor({ timeout: LIVE_TIMEOUT });
    await p.getByText("The job has ended; the log is complete.").waitFor();
    const job = await t.done(firstDeployment);
    expect(job.status).to.equal("succeeded");
    await expectCompleteLog(p, firstDeployment);
    await screenshot(p, "job-viewport", { viewport: true });
    expect(await p.locator("ol.log").textContent()).to.match(/succeeded: \d+ created/);
    expect(await p.getByTestId("changes").textContent()).to.match(/^\d+ to create/);
    expect(await p.getByRole("table", { name: "Verification checks" }).count()).to.equal(1);
    await scan(p, "job");
  });

  /** The page's log: each event with a line, once, in order, exactly as the service stored them. */
  async function expectCompleteLog(p: Page, jobId: string): Promise<void> {
    const seqs = (await p.locator("ol.log li").evaluateAll((els) => els.map((e) => Number(e.getAttribute("data-seq"))))) as number[];
    const expected = (await t.server.store.listEvents(jobId, { afterSeq: 0 }))
      .filter((e) => eventText({ id: e.seq, type: e.type, data: e.data }) !== undefined)
      .map((e) => e.seq);
    expect(seqs).to.deep.equal(expected);
    expect(new Set(seqs).size).to.equal(seqs.length);
  }

  it("rolls back from the page to the previous deployment, and compares two deployments", async () => {
    const second = await t.as("dev").post("/v1/stacks/local/deployments").send({ version: "1.0.1" });
    expect((await t.done(second.body.id)).status).to.equal("succeeded");

    const p = await page("dev");
    await p.goto(`${t.url}/#/stacks/local`);
    await p.getByRole("heading", { level: 1, name: "Stack local" }).waitFor();
    const rollback = p.locator("form", { has: p.getByRole("button", { name: "Roll back" }) });
    await rollback.getByLabel("Roll back to").selectOption(firstDeployment);
    await rollback.getByLabel("Reason").fill("1.0.1 breaks checkout");
    await rollback.getByRole("button", { name: "Roll back" }).click();
    const id = await jobIdOf(p);
    await status(p).getByText("succeeded").waitFor({ timeout: LIVE_TIMEOUT });
    const job = await t.done(id);
    expect(job).to.include({ operation: "rollback", status: "succeeded", version: "1.0.0", reason: "1.0.1 breaks checkout" });
    expect(await p.locator("dl.facts").textContent()).to.include("Rolls back to");

    await p.getByRole("link", { name: "local" }).click();
    const history = p.getByRole("table", { name: "Successful deployments, newest first" });
    await history.waitFor();
    expect(await history.locator("tbody tr").first().textContent()).to.match(/^1\.0\.0rollback/);
    const compare = p.locator("form", { has: p.getByRole("button", { name: "Compare" }) });
    await compare.getByLabel("From").selectOption(second.body.id);
    await compare.getByLabel("To").selectOption(id);
    await compare.getByRole("button", { name: "Compare" }).click();
    const version = p.getByRole("table", { name: /Differences between the two deployments/ }).getByRole("row", { name: /^Version/ });
    await version.waitFor();
    expect(await version.getAttribute("class")).to.equal("changed");
    expect(await version.locator("td").allTextContents()).to.deep.equal(["1.0.1", "1.0.0"]);
    // The config each ran with, setting by setting: only what differs is listed.
    const diff = p.getByRole("table", { name: /Differences between the two deployments/ });
    const configVersion = diff.getByRole("row", { name: /^Config pulumi-aws-deployer:version/ });
    expect(await configVersion.locator("td").allTextContents()).to.deep.equal(["1.0.1", "1.0.0"]);
    expect(await diff.getByRole("row", { name: /^Config pulumi-aws-deployer:settings\.aws\.region/ }).count(), "an unchanged setting").to.equal(0);
    await p.getByText(/settings differ; the rest are the same/).waitFor();
    await scan(p, "stack");
  });

  it("a stack that needs an approval: the requester has no Approve button, a second person approves, and it runs", async () => {
    const requester = await page("dev");
    await requester.goto(`${t.url}/#/stacks/gated`);
    const deploy = requester.locator("form", { has: requester.getByRole("button", { name: "Deploy" }) });
    await deploy.getByLabel("Version").fill("2.0.0");
    await deploy.getByRole("button", { name: "Deploy" }).click();
    const id = await jobIdOf(requester);
    await status(requester).getByText("awaiting approval").waitFor({ timeout: LIVE_TIMEOUT });
    await requester.getByText("You requested this job: another approver decides.").waitFor();
    expect(await requester.getByRole("button", { name: "Approve" }).count()).to.equal(0);
    expect(await requester.getByRole("button", { name: "Reject" }).count()).to.equal(0);
    expect(await requester.getByRole("button", { name: "Cancel" }).count()).to.equal(1);

    const approver = await page("approver2");
    await approver.goto(`${t.url}/#/jobs/${id}`);
    await approver.getByRole("button", { name: "Approve" }).waitFor();
    expect(await approver.getByRole("button", { name: "Reject" }).count()).to.equal(1);
    expect(await approver.getByRole("button", { name: "Cancel" }).count(), "an approver without deployer cannot cancel").to.equal(0);
    await scan(approver, "approval");
    await approver.getByLabel("Comment (optional)").fill("reviewed the plan");
    await approver.getByRole("button", { name: "Approve" }).click();
    await status(approver).getByText("succeeded").waitFor({ timeout: LIVE_TIMEOUT });
    expect(await approver.getByRole("region", { name: "Approvals" }).textContent()).to.include("Approved by approver2");
    expect(await approver.getByRole("region", { name: "Approvals" }).textContent()).to.include("reviewed the plan");
    // The requester's page followed it too.
    await status(requester).getByText("succeeded").waitFor({ timeout: LIVE_TIMEOUT });
    const job = await t.done(id);
    expect(job.status).to.equal("succeeded");
  });

  it("checks drift from the page and shows the report per resource and property", async () => {
    const files = stackFiles(t.dataDir, "gated");
    const world = readJson(files.world);
    const { resource } = resourceOf(world, TYPES.vpc);
    resource.outputs.tags.Owner = "someone-in-the-console";
    writeJson(files.world, world);

    const p = await page("dev");
    await p.goto(`${t.url}/#/stacks/gated`);
    // The region says "Loading the drift report…" until the API has answered.
    await p.getByRole("region", { name: "Drift" }).getByText("No drift check has finished yet.").waitFor({ timeout: LIVE_TIMEOUT });
    await p.getByRole("button", { name: "Check drift" }).click();
    const id = await jobIdOf(p);
    await status(p).getByText("succeeded").waitFor({ timeout: LIVE_TIMEOUT });
    expect(await t.done(id)).to.include({ operation: "drift", status: "succeeded" });
    await p.getByRole("link", { name: "gated" }).click();
    const report = p.getByRole("table", { name: "Drifted resources and properties" });
    await report.waitFor();
    const row = report.getByRole("row", { name: /tags\.Owner/ });
    expect(await row.locator("td").allTextContents()).to.include.members(["tags.Owner", "update", "someone-in-the-console"]);
    expect(await p.getByRole("region", { name: "Drift" }).textContent()).to.match(/^DriftDrifted: checked /);
    await p.getByRole("link", { name: "Stacks" }).click();
    expect(await p.getByRole("row", { name: /^gated/ }).textContent()).to.include("drifted");
  });

  it("an approver rejects with a comment; a requester cancels a job waiting for approval", async () => {
    const first = await t.as("dev").post("/v1/stacks/gated/deployments").send({ version: "2.0.1" });
    const approver = await page("approver2");
    await approver.goto(`${t.url}/#/jobs/${first.body.id}`);
    await approver.getByRole("button", { name: "Reject" }).waitFor({ timeout: LIVE_TIMEOUT });
    await approver.getByLabel("Comment (optional)").fill("not during the freeze");
    await approver.getByRole("button", { name: "Reject" }).click();
    await status(approver).getByText("rejected").waitFor({ timeout: LIVE_TIMEOUT });
    expect(await approver.getByRole("region", { name: "Approvals" }).textContent()).to.include("Rejected by approver2");
    expect(await approver.getByRole("region", { name: "Approvals" }).textContent()).to.include("not during the freeze");
    expect(await buttonNames(approver)).to.deep.equal(["Sign out"]);

    const second = await t.as("dev").post("/v1/stacks/gated/deployments").send({ version: "2.0.2" });
    const requester = await page("dev");
    await requester.goto(`${t.url}/#/jobs/${second.body.id}`);
    await status(requester).getByText("awaiting approval").waitFor({ timeout: LIVE_TIMEOUT });
    expect(await requester.getByRole("button", { name: "Force cancel" }).count(), "force cancel is for admins").to.equal(0);
    await requester.getByRole("button", { name: "Cancel" }).click();
    await status(requester).getByText("canceled").waitFor({ timeout: LIVE_TIMEOUT });
    expect((await t.done(second.body.id)).status).to.equal("canceled");
  });

  it("shows the review gates' findings of a blocked deployment", async () => {
    const p = await page("dev");
    await p.goto(`${t.url}/#/stacks/bounded`);
    const deploy = p.locator("form", { has: p.getByRole("button", { name: "Deploy" }) });
    await deploy.getByLabel("Version").fill("1.0.0");
    await deploy.getByRole("button", { name: "Deploy" }).click();
    const id = await jobIdOf(p);
    await status(p).getByText("failed").waitFor({ timeout: LIVE_TIMEOUT });
    const job = await t.done(id);
    expect(job.error?.code).to.equal("blocked");
    const gates = p.getByRole("region", { name: "Checks and gates" });
    await gates.getByRole("heading", { name: "Gate findings" }).waitFor();
    expect(await gates.getByRole("listitem").allTextContents()).to.deep.equal([`${job.changes!.create} resources to create, above deploy.bounds.maxCreates = 5`]);
  });

  it("shows a blocked stack with the way out; an admin's Unlock clears it; then a refresh runs", async () => {
    // What crash recovery leaves behind when a mutation was interrupted.
    const reason = "up job job_00000000000000000000000000 was interrupted (test); recover the stack before changing it again";
    await t.server.store.setStackState("local", { blockedReason: reason, blockedAt: new Date().toISOString() });
    const p = await page("admin");
    const row = p.getByRole("row", { name: /^local/ });
    await row.getByText(reason).waitFor();
    expect(await row.textContent()).to.include("An admin recovers it with Unlock on the local page.");
    await row.getByRole("link", { name: "local" }).first().click();
    await p.getByRole("heading", { level: 1, name: "Stack local" }).waitFor();
    expect(await p.locator("dl.facts").textContent()).to.include(`Blocked${reason} Unlock below recovers it.`);
    await p.getByRole("button", { name: "Unlock" }).click();
    const unlock = p.locator("form", { has: p.getByRole("button", { name: "Unlock" }) });
    await unlock.getByRole("status").waitFor();
    expect(await unlock.getByRole("status").textContent()).to.match(/^Unblocked \(up job job_0+ was interrupted/);
    await p.waitForFunction(() => !(globalThis as any).document.querySelector("dl.facts").textContent.includes("Blocked"));
    expect((await t.server.store.getStackState("local")).blockedReason ?? null).to.equal(null);
    await p.getByRole("button", { name: "Refresh" }).click();
    const id = await jobIdOf(p);
    await status(p).getByText("succeeded").waitFor({ timeout: LIVE_TIMEOUT });
    expect(await t.done(id)).to.include({ operation: "refresh", status: "succeeded", requestedBy: "admin" });
  });

  it("works with the keyboard alone: sign in, open a stack, start a preview", async () => {
    const p = await page();
    const focused = () =>
      p.evaluate(() => {
        const el = (globalThis as any).document.activeElement;
        return el ? String(el.getAttribute("aria-label") || el.id || el.textContent || "").trim() : "";
      });
    async function tabTo(name: string | RegExp, max = 40): Promise<void> {
      for (let i = 0; i < max; i++) {
        await p.keyboard.press("Tab");
        const f = await focused();
        if (typeof name === "string" ? f === name : name.test(f)) return;
      }
      throw new Error(`Tab never reached ${name}`);
    }
    await tabTo(/^token-/);
    await p.keyboard.type(t.token("dev"));
    await p.keyboard.press("Enter");
    await p.getByRole("heading", { level: 1, name: "Stacks" }).waitFor();
    await tabTo("local");
    await p.keyboard.press("Enter");
    await p.getByRole("heading", { level: 1, name: "Stack local" }).waitFor();
    await tabTo("Preview");
    await p.keyboard.press("Enter");
    const id = await jobIdOf(p);
    await status(p).getByText("succeeded").waitFor({ timeout: LIVE_TIMEOUT });
    expect(await t.done(id)).to.include({ operation: "preview", status: "succeeded", requestedBy: "dev" });
  });

  it("a viewer sees no mutating action anywhere", async () => {
    const p = await page("viewer");
    expect(await p.getByRole("link", { name: "Audit" }).count()).to.equal(0);
    expect(await buttonNames(p)).to.deep.equal(["Sign out"]);
    await p.getByRole("link", { name: "local" }).click();
    await p.getByRole("table", { name: "Successful deployments, newest first" }).waitFor();
    await p.getByRole("heading", { name: "Outputs" }).waitFor();
    expect((await buttonNames(p)).sort()).to.deep.equal(["Compare", "Sign out"]);
    expect(await p.getByRole("heading", { name: "Actions" }).count()).to.equal(0);
    await p.goto(`${t.url}/#/jobs/${firstDeployment}`);
    await status(p).getByText("succeeded").waitFor();
    expect(await buttonNames(p)).to.deep.equal(["Sign out"]);
    await p.goto(`${t.url}/#/audit`);
    await p.getByRole("heading", { level: 1, name: "Not found" }).waitFor();
  });

  it("shows outputs with secrets as [secret]", async () => {
    const p = await page("viewer");
    // The local program has no secret output: add one to the service's answer, with a value the page
    // must not show even if a service sent it.
    await p.route("**/v1/stacks/local/outputs", async (route) => {
      const response = await route.fetch();
      const body = await response.json();
      body.outputs.dbPassword = { value: "must-not-show", secret: true };
      await route.fulfill({ response, json: body });
    });
    await p.goto(`${t.url}/#/stacks/local`);
    const outputs = p.getByRole("table", { name: "Stack outputs" });
    await outputs.waitFor();
    const api = await t.as("viewer").get("/v1/stacks/local/outputs");
    const entries = Object.entries({ ...api.body.outputs, dbPassword: { value: "must-not-show", secret: true } } as Record<string, { value: unknown; secret: boolean }>);
    expect(entries.length).to.be.greaterThan(1);
    expect(await outputs.textContent()).to.not.include("must-not-show");
    for (const [key, o] of entries) {
      const cell = outputs.getByRole("row", { name: new RegExp(`^${key}`) }).locator("td");
      const text = await cell.textContent();
      if (o.secret) expect(text).to.equal("[secret]");
      else expect(text).to.equal(typeof o.value === "string" ? o.value : JSON.stringify(o.value));
    }
  });

  it("admins page through the audit trail with its filters, and see a bad filter's error next to it", async () => {
    const p = await page("admin", [400]);
    await p.getByRole("link", { name: "Audit" }).click();
    await p.getByRole("heading", { level: 1, name: "Audit trail" }).waitFor();
    const records = p.getByRole("table", { name: "Audit records, newest first" });
    await records.waitFor();
    await scan(p, "audit");
    const form = p.locator("form", { has: p.getByRole("button", { name: "Show" }) });

    await form.getByLabel("From (ISO 8601)").fill("yesterday");
    await form.getByRole("button", { name: "Show" }).click();
    await form.getByRole("alert").waitFor();
    expect(await form.getByRole("alert").textContent()).to.match(/^query parameter from: /);
    expect(await form.getByLabel("From (ISO 8601)").getAttribute("aria-invalid")).to.equal("true");

    await form.getByLabel("From (ISO 8601)").fill("");
    await form.getByLabel("Stack").selectOption("local");
    await form.getByLabel("Per page").fill("2");
    await form.getByRole("button", { name: "Show" }).click();
    // A function, not a string: a string is eval'd in the page, which its CSP refuses.
    await p.waitForFunction(() => {
      const doc = (globalThis as any).document;
      return doc.querySelectorAll("tbody tr").length === 2 && !doc.querySelector("form [role=alert]");
    });
    const firstPage = await records.locator("tbody tr").allTextContents();
    await p.getByRole("button", { name: "Next page" }).click();
    await p.getByRole("heading", { name: "Records, page 2" }).waitFor();
    const secondPage = await records.locator("tbody tr").allTextContents();
    expect(secondPage).to.have.length.greaterThan(0);
    expect(secondPage).to.not.deep.equal(firstPage);
    const stacks = await records.locator("tbody tr td:nth-child(4)").allTextContents();
    expect(stacks.every((s) => s === "local")).to.equal(true);
    await p.getByRole("button", { name: "Previous page" }).click();
    // Exact: a role name matches as a substring by default, and "Records, page 2" would match at once.
    await p.getByRole("heading", { name: "Records", exact: true }).waitFor();
    expect(await records.locator("tbody tr").allTextContents()).to.deep.equal(firstPage);
  });

  it("destroy asks for the stack's name again", async () => {
    const p = await page("admin");
    await p.goto(`${t.url}/#/stacks/local`);
    const destroy = p.locator("form", { has: p.getByRole("button", { name: "Destroy" }) });
    const button = destroy.getByRole("button", { name: "Destroy" });
    expect(await button.isDisabled()).to.equal(true);
    await destroy.getByLabel(/Type the stack's name/).fill("gated");
    expect(await button.isDisabled()).to.equal(true);
    await destroy.getByLabel(/Type the stack's name/).fill("local");
    expect(await button.isDisabled()).to.equal(false);
    await button.click();
    const id = await jobIdOf(p);
    await status(p).getByText("succeeded").waitFor({ timeout: LIVE_TIMEOUT });
    expect(await t.done(id)).to.include({ operation: "destroy", status: "succeeded" });
  });

  it("resumes the live log after a dropped connection with Last-Event-ID, without duplicates", async () => {
    const p = await page("admin");
    const lastEventIds: (string | undefined)[] = [];
    let cutAfter = 0;
    await p.route(`**/v1/jobs/${firstDeployment}/events`, async (route) => {
      lastEventIds.push(route.request().headers()["last-event-id"]);
      if (lastEventIds.length > 1) return route.continue();
      // The first connection drops after three events (no `end`): the page must resume after the third.
      const response = await route.fetch();
      const blocks = (await response.text()).split("\n\n");
      const kept = blocks.slice(0, 3);
      cutAfter = Number(/^id: (\d+)$/m.exec(kept[2])![1]);
      await route.fulfill({ response, body: kept.join("\n\n") + "\n\n" });
    });
    await p.goto(`${t.url}/#/jobs/${firstDeployment}`);
    await p.getByText("The job has ended; the log is complete.").waitFor({ timeout: LIVE_TIMEOUT });
    expect(lastEventIds).to.deep.equal([undefined, String(cutAfter)]);
    await expectCompleteLog(p, firstDeployment);
  });
});
