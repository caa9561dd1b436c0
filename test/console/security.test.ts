/**
 * The console's doors, sent as a browser or an attacker would, without a browser:
 * no session means a redirect to the login page (pages) or 401 (anything else); a
 * wrong token is 401; the cookie is HttpOnly, SameSite=Strict and scoped to
 * /console, and opens nothing under /v1; a write without the CSRF token, or from
 * another origin, is refused; a tenant named like markup renders as text; bodies are
 * bounded (the login's before any session exists), live streams are capped and
 * refused cross-site, and failed logins are throttled. On the embedded default
 * (PGlite, in-process store).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { eventually, SECRETS, startTestStack, type TestStack } from "../helpers/stack.ts";

describe("console: authentication, CSRF and escaping", () => {
  let stack: TestStack;
  let base: string;
  let cookie: string;
  let csrf: string;

  const get = (path: string, headers: Record<string, string> = {}) =>
    fetch(`${base}${path}`, { redirect: "manual", headers: { accept: "text/html", ...headers } });
  const post = (path: string, form: Record<string, string>, headers: Record<string, string> = {}) =>
    fetch(`${base}${path}`, {
      method: "POST",
      redirect: "manual",
      headers: { "content-type": "application/x-www-form-urlencoded", ...headers },
      body: new URLSearchParams(form).toString(),
    });

  beforeAll(async () => {
    stack = await startTestStack({ backend: "embedded" });
    base = `http://127.0.0.1:${stack.adminPort}`;
    const login = await post("/console/login", { token: SECRETS.ADMIN_TOKEN });
    expect(login.status).toBe(303);
    const setCookie = login.headers.get("set-cookie") ?? "";
    expect(setCookie).toMatch(/HttpOnly/i);
    expect(setCookie).toMatch(/SameSite=Strict/i);
    expect(setCookie).toMatch(/Path=\/console/i);
    cookie = setCookie.split(";")[0]!;
    const page = await (await get("/console/tenants", { cookie })).text();
    csrf = /name="_csrf" value="([^"]+)"/.exec(page)?.[1] ?? "";
    expect(csrf.length).toBeGreaterThan(20);
  });
  afterAll(async () => {
    await stack?.close();
  });

  it("sends a browser without a session to the login page, and anything else gets 401", async () => {
    for (const path of ["/console", "/console/tenants", "/console/tenants/acme/keys", "/console/audit", "/console/live"]) {
      const res = await get(path);
      expect(res.status, path).toBe(302);
      expect(res.headers.get("location"), path).toMatch(/^\/console(\/login|\/tenants)$/);
    }
    expect((await get("/console/live/events", { accept: "text/event-stream" })).status).toBe(401);
    expect((await post("/console/tenants", { slug: "x", name: "x" })).status).toBe(401);
    const forged = `portcullis_console=9999999999.abc.${"A".repeat(43)}`;
    expect((await get("/console/tenants", { cookie: forged })).status).toBe(302);
  });

  it("refuses a wrong admin token with 401 and no cookie", async () => {
    const res = await post("/console/login", { token: "not-the-admin-token" });
    expect(res.status).toBe(401);
    expect(res.headers.get("set-cookie")).toBeNull();
    expect(await res.text()).toContain("That is not the admin token.");
  });

  it("never accepts the console cookie on the admin API", async () => {
    const res = await fetch(`${base}/v1/tenants`, { headers: { cookie } });
    expect(res.status).toBe(401);
  });

  it("refuses a write without the CSRF token, with a wrong one, or from another origin", async () => {
    const without = await post("/console/tenants", { slug: "csrf-a", name: "A" }, { cookie });
    expect(without.status).toBe(403);
    const wrong = await post("/console/tenants", { slug: "csrf-b", name: "B", _csrf: `${csrf.slice(0, -2)}xx` }, { cookie });
    expect(wrong.status).toBe(403);
    const crossSite = await post(
      "/console/tenants",
      { slug: "csrf-c", name: "C", _csrf: csrf },
      { cookie, origin: "https://evil.example", "sec-fetch-site": "cross-site" },
    );
    expect(crossSite.status).toBe(403);
    const crossLogin = await post("/console/login", { token: SECRETS.ADMIN_TOKEN }, { origin: "https://evil.example" });
    expect(crossLogin.status).toBe(403);
    for (const slug of ["csrf-a", "csrf-b", "csrf-c"]) expect((await stack.admin("GET", `/v1/tenants/${slug}`)).status).toBe(404);

    const same = await post("/console/tenants", { slug: "csrf-ok", name: "OK", _csrf: csrf }, { cookie, origin: base });
    expect(same.status).toBe(303);
    expect(same.headers.get("location")).toBe("/console/tenants/csrf-ok");
    const changes = (await stack.admin("GET", "/v1/changes?action=tenant.create")).json();
    expect(changes.changes.find((ch: any) => ch.after?.slug === "csrf-ok")?.actor).toBe("admin:console");
  });

  it("renders a tenant named like markup as text, under a CSP that allows no inline script", async () => {
    const name = `<script>alert("pwned")</script><img src=x onerror=alert(1)>`;
    expect((await stack.admin("POST", "/v1/tenants", { slug: "markup", name })).status).toBe(201);
    for (const path of ["/console/tenants", "/console/tenants/markup", "/console/tenants/markup/keys"]) {
      const res = await get(path, { cookie });
      expect(res.status, path).toBe(200);
      expect(res.headers.get("content-security-policy")).toMatch(/script-src 'self'/);
      const page = await res.text();
      expect(page, path).not.toContain("<script>alert");
      expect(page, path).not.toContain("<img src=x");
      expect(page, path).toContain("&lt;script&gt;alert(&quot;pwned&quot;)&lt;/script&gt;");
    }
  });

  it("files a key revocation under its tenant in the change log, not under the key's id", async () => {
    const tenant = (await stack.admin("POST", "/v1/tenants", { slug: "revoker", name: "Revoker" })).json();
    const key = (await stack.admin("POST", "/v1/tenants/revoker/keys", {})).json();
    expect((await stack.admin("DELETE", `/v1/tenants/revoker/keys/${key.id}`)).status).toBe(204);
    const log = (await stack.admin("GET", "/v1/tenants/revoker/changes?action=key.revoke")).json();
    expect(log.changes).toHaveLength(1);
    expect(log.changes[0]).toMatchObject({ tenantId: tenant.id, target: key.id });
  });

  it("files a context-key rotation under its tenant, with versions only (never the key)", async () => {
    const tenant = (await stack.admin("POST", "/v1/tenants", { slug: "rotator", name: "Rotator" })).json();
    const rotated = await stack.admin("POST", "/v1/tenants/rotator/context-key/rotate", { overlapSeconds: 60 });
    expect(rotated.status).toBe(200);
    const { key, previous } = rotated.json();
    const log = (await stack.admin("GET", "/v1/tenants/rotator/changes?action=context-key.rotate")).json();
    expect(log.changes).toHaveLength(1);
    expect(log.changes[0]).toMatchObject({ tenantId: tenant.id, after: { version: 2, previous: { version: 1 } } });
    const text = JSON.stringify(log.changes[0]);
    expect(text).not.toContain(key);
    expect(text).not.toContain(previous.key);
  });

  it("logs out: the cookie stops working", async () => {
    const second = await post("/console/login", { token: SECRETS.ADMIN_TOKEN });
    const c2 = (second.headers.get("set-cookie") ?? "").split(";")[0]!;
    const page = await (await get("/console/tenants", { cookie: c2 })).text();
    const token = /name="_csrf" value="([^"]+)"/.exec(page)?.[1] ?? "";
    expect((await post("/console/logout", { _csrf: token }, { cookie: c2 })).status).toBe(303);
    expect((await get("/console/tenants", { cookie: c2 })).status).toBe(302);
    expect((await get("/console/tenants", { cookie })).status).toBe(200);
  });
  it("refuses an oversized login body, declared or chunked, with 413 before reading it all", async () => {
    const declared = await post("/console/login", { token: "x".repeat(8 * 1024) });
    expect(declared.status).toBe(413);
    // No Content-Length: a stream the server must count as it reads.
    let sent = 0;
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (sent >= 64 * 1024 * 1024) return controller.close();
        sent += 64 * 1024;
        controller.enqueue(new TextEncoder().encode(`token=${"y".repeat(64 * 1024 - 6)}`));
      },
    });
    const chunked = await fetch(`${base}/console/login`, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body,
      duplex: "half",
    } as RequestInit);
    expect(chunked.status).toBe(413);
    expect(sent).toBeLessThan(64 * 1024 * 1024);
  });

  it("refuses an oversized console write with 413, and nothing is created", async () => {
    const res = await post("/console/tenants", { slug: "huge", name: "h".repeat(200 * 1024), _csrf: csrf }, { cookie });
    expect(res.status).toBe(413);
    expect((await stack.admin("GET", "/v1/tenants/huge")).status).toBe(404);
  });

  it("refuses a cross-site live stream, and caps the open ones", async () => {
    const live = (signal?: AbortSignal, headers: Record<string, string> = {}) =>
      fetch(`${base}/console/live/events`, { headers: { cookie, accept: "text/event-stream", ...headers }, signal });
    expect((await live(undefined, { "sec-fetch-site": "cross-site" })).status).toBe(403);

    const abort = new AbortController();
    const open = await Promise.all(Array.from({ length: 32 }, () => live(abort.signal)));
    expect(open.map((r) => r.status)).toEqual(Array(32).fill(200));
    const over = await live();
    expect(over.status).toBe(503);
    expect(over.headers.get("retry-after")).toBe("5");
    abort.abort();
    // The streams' slots come back once the server sees them closed.
    await eventually(async () => {
      const again = await fetch(`${base}/console/live/events`, {
        headers: { cookie, accept: "text/event-stream" },
        signal: AbortSignal.timeout(2_000),
      }).catch(() => null);
      const ok = again?.status === 200;
      await again?.body?.cancel().catch(() => {});
      return ok;
    }, 10_000);
  });

  it("throttles failed logins from one address, whatever the token", async () => {
    // Ten failures in a window are allowed (one was spent by an earlier test).
    const statuses: number[] = [];
    for (let i = 0; i < 12; i++) statuses.push((await post("/console/login", { token: `guess-${i}` })).status);
    expect(statuses.filter((s) => s === 401).length).toBeGreaterThanOrEqual(9);
    expect(statuses.filter((s) => s === 401).length).toBeLessThanOrEqual(10);
    expect(statuses.at(-1)).toBe(429);
    const blocked = await post("/console/login", { token: SECRETS.ADMIN_TOKEN });
    expect(blocked.status).toBe(429);
    expect(Number(blocked.headers.get("retry-after"))).toBeGreaterThan(0);
    expect(blocked.headers.get("set-cookie")).toBeNull();
    // An existing session is not affected.
    expect((await get("/console/tenants", { cookie })).status).toBe(200);
  });
});
