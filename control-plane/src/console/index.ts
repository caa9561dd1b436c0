/**
 * The operator's console at `/console` on the admin port (docs/console.md): HTML
 * rendered here, one small script, no CDN. It is a client of the admin API — every
 * page and action is an admin call made in process through the admin app's own
 * `fetch` with the admin token and the actor `console` — so it adds no second path to
 * the data: the same validation, the same change log. What it adds is the browser's
 * side: a login that exchanges the admin token for a session cookie, and CSRF checks
 * (console/session.ts).
 */
import { getConnInfo } from "@hono/node-server/conninfo";
import { Hono } from "hono";
import { bodyLimit } from "hono/body-limit";
import { html } from "hono/html";
import { createAdminClient } from "../admin/client.ts";
import { CSS, JS } from "./assets.ts";
import { page, secureHeaders } from "./layout.ts";
import type { LiveFeed } from "./live.ts";
import { mountAuditPages } from "./pages/audit.ts";
import { mountCredentialPages } from "./pages/credentials.ts";
import { mountLivePages } from "./pages/live.ts";
import { mountTenantPages } from "./pages/tenants.ts";
import { type ConsoleEnv, consoleSessions, crossSite, requireSession } from "./session.ts";

export { LiveFeed } from "./live.ts";

export interface ConsoleDeps {
  adminToken: string;
  /** The admin app's fetch: the console's API calls go through it, in process. */
  adminFetch: (request: Request) => Response | Promise<Response>;
  feed: LiveFeed;
}

/** The largest body a console form sends (a tenant's settings, a key's scopes). */
const MAX_BODY = 64 * 1024;
/** The login form holds one token. */
const MAX_LOGIN_BODY = 4 * 1024;
/** Failed logins allowed per client address in a window, before 429. */
const LOGIN_FAILURES = 10;
const LOGIN_WINDOW_MS = 5 * 60_000;

const tooLarge = (c: Parameters<typeof page>[0]) => {
  secureHeaders(c);
  return c.text("Request body too large for the console.", 413);
};

/**
 * Failed logins per client address, in fixed windows, kept in this process. The admin
 * token is a long random secret, so this is not what keeps it safe; it keeps a
 * guessing loop from costing the control plane anything.
 */
function loginThrottle(now: () => number = Date.now) {
  const failures = new Map<string, { count: number; until: number }>();
  return {
    blocked(address: string): number | null {
      const entry = failures.get(address);
      if (!entry || entry.until <= now()) return null;
      return entry.count >= LOGIN_FAILURES ? Math.ceil((entry.until - now()) / 1000) : null;
    },
    failed(address: string): void {
      const t = now();
      if (failures.size >= 10_000) for (const [k, e] of failures) if (e.until <= t) failures.delete(k);
      const entry = failures.get(address);
      if (!entry || entry.until <= t) failures.set(address, { count: 1, until: t + LOGIN_WINDOW_MS });
      else entry.count++;
    },
  };
}

function clientAddress(c: Parameters<typeof getConnInfo>[0]): string {
  try {
    return getConnInfo(c).remote.address ?? "unknown";
  } catch {
    return "unknown";
  }
}

const OPEN = new Set(["/console/login", "/console/app.css", "/console/app.js"]);

function loginPage(c: Parameters<typeof page>[0], failed: boolean) {
  return page(
    c,
    "Log in",
    html`<h1>Portcullis console</h1>
<div class="card ${failed ? "error" : ""}">${failed ? html`<p id="login-error">That is not the admin token.</p>` : ""}
<form method="post" action="/console/login" id="login"><label>Admin token <input type="password" name="token" autocomplete="current-password" required autofocus></label>
<button>Log in</button></form>
<p class="muted">The token is exchanged for a session cookie for this console only; the browser does not keep the token.</p></div>`,
    failed ? 401 : 200,
  );
}

export function createConsole(deps: ConsoleDeps): Hono<ConsoleEnv> {
  const app = new Hono<ConsoleEnv>();
  const sessions = consoleSessions(deps.adminToken);
  const throttle = loginThrottle();
  // The host is a placeholder: requests never leave the process.
  const api = createAdminClient({
    baseUrl: "http://admin.internal",
    token: deps.adminToken,
    fetch: deps.adminFetch,
    actor: "console",
  });

  app.get("/app.css", (c) => {
    c.header("cache-control", "no-cache");
    return c.body(CSS, 200, { "content-type": "text/css; charset=utf-8" });
  });
  app.get("/app.js", (c) => {
    c.header("cache-control", "no-cache");
    return c.body(JS, 200, { "content-type": "text/javascript; charset=utf-8" });
  });

  app.get("/login", (c) => (sessions.current(c) !== null ? c.redirect("/console/tenants", 302) : loginPage(c, false)));
  app.post("/login", bodyLimit({ maxSize: MAX_LOGIN_BODY, onError: tooLarge }), async (c) => {
    // No session yet, so no CSRF token: a login posted from another site is refused by
    // its origin (a forged login would sign the victim into the attacker's console).
    if (crossSite(c)) {
      secureHeaders(c);
      return c.text("Refused: cross-site login.", 403);
    }
    const address = clientAddress(c);
    const wait = throttle.blocked(address);
    if (wait !== null) {
      secureHeaders(c);
      c.header("retry-after", String(wait));
      return c.text("Too many failed logins from this address; try again later.", 429);
    }
    const form = await c.req.parseBody();
    const token = typeof form.token === "string" ? form.token : "";
    if (sessions.login(c, token)) return c.redirect("/console/tenants", 303);
    throttle.failed(address);
    return loginPage(c, true);
  });

  app.use("*", bodyLimit({ maxSize: MAX_BODY, onError: tooLarge }));
  app.use(
    "*",
    requireSession(sessions, (path) => OPEN.has(path)),
  );

  app.post("/logout", (c) => {
    sessions.logout(c);
    return c.redirect("/console/login", 303);
  });
  app.get("/", (c) => c.redirect("/console/tenants", 302));

  mountTenantPages(app, api);
  mountCredentialPages(app, api);
  mountAuditPages(app, api);
  mountLivePages(app, api, deps.feed);

  app.notFound((c) => page(c, "Not found", html`<h1>Not found</h1><p><a href="/console/tenants">Tenants</a></p>`, 404));
  return app;
}
