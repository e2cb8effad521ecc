/**
 * Debian's Chromium (`/usr/bin/chromium`, from apt) driven by playwright-core; `npx playwright install`
 * cannot work here. Without Chromium the browser tests skip with one line, except under CI=true,
 * where they fail.
 *
 * Each `open()` is a fresh browser context (its own sessionStorage) that records what a test asserts
 * on afterwards: console errors and page errors, every request URL, and every request to another host.
 */
import { existsSync, mkdirSync, readFileSync } from "fs";
import * as path from "path";
import { chromium, type Browser, type BrowserContext, type Page } from "playwright-core";

export const CHROMIUM = "/usr/bin/chromium";
export const ARTIFACTS = path.join(__dirname, "..", "artifacts");
export const CHROMIUM_ARGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
  "--disable-quic",
];

/** Skips the suite (one line) without Chromium; throws under CI=true. Call from a `before` hook. */
export function requireChromium(ctx: Pick<Mocha.Context, "skip">, executable: string = CHROMIUM, env: NodeJS.ProcessEnv = process.env, log: (line: string) => void = console.log): void {
  if (existsSync(executable)) return;
  if (env.CI === "true") throw new Error(`${executable} is missing: the browser tests cannot run (apt-get install -y chromium; .ci/run does)`);
  log(`      (browser tests skipped: ${executable} is missing; apt-get install -y chromium)`);
  ctx.skip();
}

export function launch(): Promise<Browser> {
  return chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true });
}

export interface OpenPage {
  readonly context: BrowserContext;
  readonly page: Page;
  /** Console errors and uncaught page errors, in order. */
  readonly errors: string[];
  /** Every URL the page requested or navigated to. */
  readonly urls: string[];
  /**
   * A refusal the test provokes on purpose (a wrong token, a bad version): Chromium logs every 4xx
   * answer to fetch as a console error, and these are not counted in `errors`.
   */
  expectRefusal(status: number): void;
}

const FAILED_RESOURCE = /^Failed to load resource: the server responded with a status of (\d{3})\b/;

export async function open(browser: Browser, baseUrl: string): Promise<OpenPage> {
  const context = await browser.newContext({ viewport: { width: 1366, height: 900 } });
  const page = await context.newPage();
  const errors: string[] = [];
  const urls: string[] = [];
  const expected = new Set<number>();
  page.on("console", (m) => {
    if (m.type() !== "error") return;
    const refused = FAILED_RESOURCE.exec(m.text());
    if (refused && expected.has(Number(refused[1]))) return;
    errors.push(`console: ${m.text()}`);
  });
  page.on("pageerror", (e) => errors.push(`page: ${e.message}`));
  page.on("request", (r) => urls.push(r.url()));
  page.on("framenavigated", (f) => urls.push(f.url()));
  await page.goto(baseUrl + "/");
  return { context, page, errors, urls, expectRefusal: (status) => expected.add(status) };
}

/** Signs in through the Token field and waits for the stacks page. */
export async function signIn(page: Page, token: string): Promise<void> {
  await page.getByLabel("Token").fill(token);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("heading", { level: 1, name: "Stacks" }).waitFor();
}

const AXE = readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");

export interface AxeViolation {
  readonly id: string;
  readonly impact: string | null;
  readonly help: string;
  readonly nodes: string[];
}

/**
 * axe-core's violations of impact serious or critical on the page as it is. axe is evaluated through
 * the DevTools protocol, which the page's CSP does not govern, so the page keeps its real policy.
 */
export async function seriousViolations(page: Page): Promise<AxeViolation[]> {
  await page.evaluate(AXE);
  const violations = await page.evaluate(async () => {
    const g = globalThis as any;
    const result = await g.axe.run(g.document, { resultTypes: ["violations"] });
    return result.violations.map((v: any) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map((n: any) => n.target.join(" ")) }));
  });
  return (violations as AxeViolation[]).filter((v) => v.impact === "serious" || v.impact === "critical");
}

/** A full-page screenshot under test/dashboard/artifacts/ (git-ignored); `viewport` keeps the laptop-sized view only. */
export async function screenshot(page: Page, name: string, options: { viewport?: boolean } = {}): Promise<string> {
  mkdirSync(ARTIFACTS, { recursive: true });
  const file = path.join(ARTIFACTS, `${name}.png`);
  await page.screenshot({ path: file, fullPage: options.viewport !== true });
  return file;
}

/** The accessible names of the page's enabled and disabled buttons. */
export async function buttonNames(page: Page): Promise<string[]> {
  return page.getByRole("button").evaluateAll((els) => els.map((e) => (e.textContent ?? "").trim()));
}
