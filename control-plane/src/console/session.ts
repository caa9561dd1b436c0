/**
 * The console's session: the admin token, checked once at login, exchanged for a
 * signed cookie (HttpOnly, SameSite=Strict, Path=/console: the browser sends it to
 * console routes only, and the admin API's `/v1` routes read bearer tokens only, so
 * it opens nothing else). The cookie is stateless — an expiry and a random id, HMAC'd
 * with a key derived from ADMIN_TOKEN — so every control plane sharing the token
 * accepts it and rotating the token ends every session. Logging out forgets the id in
 * this process (another process keeps accepting it until it expires, at most TTL).
 *
 * Writes need the session's CSRF token (a form field `_csrf` or `X-CSRF-Token`,
 * derived from the session id, so nothing is stored) and, when the browser sends
 * them, an `Origin` equal to the console's own and a `Sec-Fetch-Site` that is not
 * cross-site.
 */
import { createHmac, randomBytes } from "node:crypto";
import { constantTimeEqual } from "@portcullis/shared";
import type { Context, MiddlewareHandler } from "hono";
import { deleteCookie, getCookie, setCookie } from "hono/cookie";

export const COOKIE = "portcullis_console";
const TTL_SECONDS = 8 * 3600;

export type ConsoleEnv = { Variables: { requestId: string; csrf: string } };

export interface Sessions {
  /** Log in: the token must be the admin token; sets the cookie. */
  login(c: Context, token: string): boolean;
  logout(c: Context): void;
  /** The session id of a valid cookie, or null. */
  current(c: Context): string | null;
  csrfToken(sessionId: string): string;
}

export function consoleSessions(adminToken: string, now: () => number = Date.now): Sessions {
  const key = createHmac("sha256", adminToken).update("portcullis console session v1").digest();
  const mac = (value: string) => createHmac("sha256", key).update(value).digest("base64url");
  // Ids logged out in this process, until their cookies would have expired anyway.
  const ended = new Map<string, number>();

  return {
    login(c, token) {
      if (!token || !constantTimeEqual(token, adminToken)) return false;
      const expires = Math.floor(now() / 1000) + TTL_SECONDS;
      const payload = `${expires}.${randomBytes(18).toString("base64url")}`;
      setCookie(c, COOKIE, `${payload}.${mac(payload)}`, {
        httpOnly: true,
        sameSite: "Strict",
        path: "/console",
        maxAge: TTL_SECONDS,
        secure: new URL(c.req.url).protocol === "https:" || c.req.header("x-forwarded-proto") === "https",
      });
      return true;
    },
    logout(c) {
      const id = this.current(c);
      if (id !== null) ended.set(id, now() + TTL_SECONDS * 1000);
      for (const [k, until] of ended) if (until < now()) ended.delete(k);
      deleteCookie(c, COOKIE, { path: "/console" });
    },
    current(c) {
      const value = getCookie(c, COOKIE);
      if (!value) return null;
      const parts = value.split(".");
      if (parts.length !== 3) return null;
      const [expires, id, sig] = parts as [string, string, string];
      if (!constantTimeEqual(sig, mac(`${expires}.${id}`))) return null;
      if (!/^\d{1,12}$/.test(expires) || Number(expires) * 1000 <= now()) return null;
      return ended.has(id) ? null : id;
    },
    csrfToken: (sessionId) => mac(`csrf:${sessionId}`),
  };
}

/** A write from another site: an Origin that is not this console's, or a cross-site fetch. */
export function crossSite(c: Context): boolean {
  const origin = c.req.header("origin");
  const host = c.req.header("host");
  if (origin !== undefined) {
    if (origin === "null" || !host) return true;
    try {
      if (new URL(origin).host !== host) return true;
    } catch {
      return true;
    }
  }
  const site = c.req.header("sec-fetch-site");
  return site !== undefined && site !== "same-origin" && site !== "none";
}

const SAFE = new Set(["GET", "HEAD"]);

/**
 * Every console route but the login page and the assets: a valid session, else a
 * redirect to the login page (a page a browser navigates to) or 401; a write needs
 * the CSRF token and a same-site origin, else 403.
 */
export function requireSession(sessions: Sessions, open: (path: string) => boolean): MiddlewareHandler<ConsoleEnv> {
  return async function consoleSession(c, next) {
    if (open(c.req.path)) return next();
    const id = sessions.current(c);
    if (id === null) {
      const page = SAFE.has(c.req.method) && (c.req.header("accept") ?? "").includes("text/html");
      return page ? c.redirect("/console/login", 302) : c.text("Log in to the console first.", 401);
    }
    const csrf = sessions.csrfToken(id);
    c.set("csrf", csrf);
    if (!SAFE.has(c.req.method)) {
      let presented = c.req.header("x-csrf-token") ?? "";
      if (!presented && (c.req.header("content-type") ?? "").includes("application/x-www-form-urlencoded")) {
        const form = await c.req.parseBody();
        presented = typeof form._csrf === "string" ? form._csrf : "";
      }
      if (crossSite(c) || !presented || !constantTimeEqual(presented, csrf)) {
        return c.text("Refused: this request did not come from the console (CSRF check).", 403);
      }
    }
    return next();
  };
}
