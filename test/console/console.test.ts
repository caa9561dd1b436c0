/**
 * The operator's console in a real browser (Chromium through playwright-core, the
 * Debian build at /usr/bin/chromium: scripts/ensure-chromium.sh), against a real
 * control plane and router: log in, create a tenant and bind it, add a hostname and
 * read its TXT record, verify it against a test DNS server, create and revoke a key,
 * watch a decision arrive live, search the trail, explain, read usage, suspend with
 * confirmation. Once on Postgres + Redis and once on the embedded default (PGlite,
 * in-process store). Each page is saved as a screenshot under test/output/console/.
 *
 * No Chromium is a failure, never a skip: the console is only tested here.
 */
import { existsSync, mkdirSync } from "node:fs";
import { type Browser, chromium, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startDnsServer, type TestDnsServer } from "../helpers/dns-server.ts";
import { type Backend, SECRETS, startTestStack, type TestStack } from "../helpers/stack.ts";

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const OUTPUT = new URL("../output/console/", import.meta.url);

describe.each<Backend>(["real", "embedded"])("the console in Chromium (%s backend)", (backend) => {
  let stack: TestStack;
  let dns: TestDnsServer;
  let browser: Browser;
  let page: Page;
  let base: string;
  const dialogs: string[] = [];

  const shot = (name: string) => page.screenshot({ path: new URL(`${backend}-${name}.png`, OUTPUT).pathname, fullPage: true });

  beforeAll(async () => {
    if (!existsSync(CHROMIUM)) {
      throw new Error(`no Chromium at ${CHROMIUM}: run scripts/ensure-chromium.sh (apt-get install chromium)`);
    }
    mkdirSync(OUTPUT, { recursive: true });
    dns = await startDnsServer();
    stack = await startTestStack({
      backend,
      audit: "stream",
      env: { DNS_SERVERS: dns.address, DOMAIN_RECHECK_INTERVAL_MS: "0" },
    });
    base = `http://127.0.0.1:${stack.adminPort}`;
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: base });
    page = await context.newPage();
    page.setDefaultTimeout(15_000);
    // Every dialog is recorded: only the console's own confirmations may appear.
    page.on("dialog", (d) => {
      dialogs.push(d.message());
      void d.accept();
    });
  }, 120_000);
  afterAll(async () => {
    await browser?.close();
    await stack?.close();
    await dns?.close();
  });

  it("logs in with the admin token only", async () => {
    await page.goto(`${base}/console/tenants`);
    expect(new URL(page.url()).pathname).toBe("/console/login");
    await shot("login");
    await page.fill("input[name=token]", "not-the-token");
    await page.click("#login button");
    await expect.poll(() => page.textContent("#login-error")).toContain("not the admin token");
    await page.fill("input[name=token]", SECRETS.ADMIN_TOKEN);
    await page.click("#login button");
    await page.waitForURL(/\/console\/tenants$/);
    expect(await page.evaluate("document.cookie")).toBe(""); // HttpOnly: invisible to scripts
    expect(await page.evaluate("JSON.stringify(window.localStorage)")).toBe("{}");
  });

  it("creates a tenant, binds it, and shows its page with branding", async () => {
    await page.fill("#create-tenant input[name=slug]", "initech");
    await page.fill("#create-tenant input[name=name]", "Initech");
    await page.selectOption("#create-tenant select[name=plan]", "pro");
    await page.click("#create-tenant button");
    await page.waitForURL(/\/console\/tenants\/initech$/);
    const upstream = await stack.upstream("initech-app");
    await page.fill("#database input[name=server]", "pg-initech.internal:5432");
    await page.fill("#database input[name=database]", "initech");
    await page.click("#database button");
    await page.waitForURL(/\/console\/tenants\/initech$/);
    await page.fill("#upstreams input[name=urls]", upstream.url);
    await page.click("#upstreams button");
    await page.waitForURL(/\/console\/tenants\/initech$/);
    await stack.admin("PATCH", "/v1/tenants/initech", {
      settings: { branding: { displayName: "Initech HQ", primaryColor: "#0b7a75" } },
    });
    await page.reload();
    expect(await page.textContent("#database")).toContain("pg-initech.internal:5432/initech");
    expect(await page.textContent("#upstreams")).toContain(upstream.url);
    expect(await page.getAttribute("#branding svg rect", "fill")).toBe("#0b7a75");
    expect(await page.textContent("#branding svg text")).toBe("Initech HQ");
    await shot("tenant");
    await page.goto(`${base}/console/tenants?q=nitec&status=active`);
    expect(await page.textContent("#tenants")).toContain("initech");
    await shot("tenants");
  });

  it("adds a hostname, shows its exact TXT record, and verifies it against DNS", async () => {
    await page.goto(`${base}/console/tenants/initech/hostnames`);
    await page.fill("#add-hostname input[name=hostname]", "WWW.Initech.test");
    await page.click("#add-hostname button");
    const row = page.locator('tr[data-hostname="www.initech.test"]');
    expect(await row.locator(".badge").textContent()).toBe("pending");
    const name = (await row.locator(".txt-name").textContent()) ?? "";
    const value = ((await row.locator(".txt-value").textContent()) ?? "").replace(/^"|"$/g, "");
    expect(name).toBe("_portcullis-verify.www.initech.test");
    const claim = (await stack.admin("GET", "/v1/tenants/initech/hostnames")).json();
    expect(claim.hostnames.find((h: any) => h.hostname === "www.initech.test").verification.value).toBe(value);
    await row.locator("button.copy").click();
    await expect.poll(() => page.evaluate("navigator.clipboard.readText()")).toBe(`${name} TXT "${value}"`);
    await shot("hostname-pending");

    await row.locator("button.verify").click();
    expect(await page.textContent("#error-code")).toBe("verification_failed");
    await page.goBack();
    dns.setTxt(name, [value]);
    await page.goto(`${base}/console/tenants/initech/hostnames`);
    await page.locator('tr[data-hostname="www.initech.test"] button.verify').click();
    await page.waitForSelector("#verified");
    expect(await page.locator('tr[data-hostname="www.initech.test"] .badge').textContent()).toBe("verified");
    await shot("hostnames");
    await expect.poll(async () => (await stack.request("www.initech.test", "/hello")).status, { timeout: 5_000 }).toBe(200);
  });

  it("creates a key, shown once, and revokes it", async () => {
    await page.goto(`${base}/console/tenants/initech/keys`);
    await page.fill("#create-key input[name=name]", "ci");
    await page.click("#create-key button");
    const secret = (await page.textContent("#secret")) ?? "";
    expect(secret.length).toBeGreaterThan(20);
    await shot("key-created");
    await page.goto(`${base}/console/tenants/initech/keys`);
    expect(await page.content()).not.toContain(secret);
    const row = page.locator("#keys tr[data-key]", { hasText: "ci" });
    expect(await row.locator(".badge").textContent()).toBe("active");
    await row.locator("button.revoke").click();
    await expect.poll(() => row.locator(".badge").textContent()).toBe("revoked");
    expect(dialogs.some((d) => d.startsWith("Revoke"))).toBe(true);
    await shot("keys");
  });

  it("shows a decision live, then finds it in the audit trail, and explains it", async () => {
    await page.goto(`${base}/console/live?tenant=initech&decision=allow`);
    await expect.poll(() => page.textContent("#live-state")).toBe("connected");
    // Only initech's allowed requests belong here; the unknown host is refused and filtered out.
    await stack.request("nobody.localhost", "/");
    const answer = await stack.request("initech.localhost", "/live-check");
    expect(answer.status).toBe(200);
    const requestId = answer.headers["x-request-id"] as string;
    const live = page.locator("#live tbody tr", { hasText: requestId });
    await live.waitFor({ timeout: 20_000 });
    expect(await live.textContent()).toContain("/live-check");
    expect(await page.locator("#live tbody tr", { hasText: "nobody.localhost" }).count()).toBe(0);
    await shot("live");

    await page.goto(`${base}/console/audit?tenant=initech&requestId=${encodeURIComponent(requestId)}`);
    expect(await page.locator("#events tr.event").count()).toBe(1);
    expect(await page.textContent("#events")).toContain("initech.localhost/live-check");
    await page.goto(`${base}/console/audit?decision=refuse&reason=unknown_host`);
    expect(await page.textContent("#events")).toContain("nobody.localhost");
    await shot("audit");
    await page.goto(`${base}/console/changes?tenant=initech`);
    expect(await page.textContent("#changes")).toContain("key.revoke");
    await shot("changes");
    await page.goto(`${base}/console/explain`);
    await page.fill("#explain-form input[name=host]", "nobody.localhost");
    await page.click("#explain-form button");
    expect(await page.textContent("#explanation")).toContain("unknown_host");
    await shot("explain");
    await page.goto(`${base}/console/tenants/initech/usage`);
    expect(await page.locator("#hourly svg rect").count()).toBeGreaterThan(0);
    expect(await page.textContent("#hourly")).toMatch(/[1-9]\d* decisions/);
    await shot("usage");
  });

  it("suspends and resumes after a confirmation page", async () => {
    await page.goto(`${base}/console/tenants/initech`);
    await page.click("#status-action");
    await page.waitForURL(/\/suspend$/);
    await shot("suspend-confirm");
    await page.click("#confirm button");
    await page.waitForURL(/\/console\/tenants\/initech$/);
    expect(await page.textContent("h1")).toContain("suspended");
    await expect.poll(async () => (await stack.request("initech.localhost", "/")).status, { timeout: 5_000 }).toBe(403);
    await page.click("#status-action");
    await page.click("#confirm button");
    await page.waitForURL(/\/console\/tenants\/initech$/);
    expect(await page.textContent("h1")).toContain("active");
  });

  it("renders a tenant named like a script as inert text", async () => {
    const before = dialogs.length;
    const name = `<script>alert("xss")</script><img src=x onerror="alert(2)">`;
    expect((await stack.admin("POST", "/v1/tenants", { slug: "evil", name })).status).toBe(201);
    for (const path of ["/console/tenants?q=evil", "/console/tenants/evil", "/console/tenants/evil/hostnames"]) {
      await page.goto(`${base}${path}`);
      expect(await page.textContent("main")).toContain(name);
      expect(await page.locator("main script, main img").count()).toBe(0);
    }
    await shot("escaped");
    expect(dialogs.length).toBe(before);
  });
});
