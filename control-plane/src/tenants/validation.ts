/** Input rules of the admin API: slugs, database servers, upstream URLs, CIDRs. */
import { isIP } from "node:net";
import { canonicalDbServer } from "@portcullis/shared";

export const SLUG = /^[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?$/;

/** Names that stay the platform's: they would collide with its own hostnames. */
export const RESERVED_SLUGS = new Set([
  "api",
  "admin",
  "www",
  "ops",
  "metrics",
  "health",
  "status",
  "internal",
  "static",
  "assets",
  "cdn",
  "mail",
  "smtp",
  "imap",
  "pop",
  "ftp",
  "ns",
  "ns1",
  "ns2",
  "dns",
  "mx",
  "portcullis",
  "root",
  "support",
  "billing",
  "login",
  "logout",
  "auth",
  "sso",
  "oauth",
  "docs",
  "blog",
  "dashboard",
  "console",
  "app",
  "apps",
  "help",
  "security",
  "abuse",
  "postmaster",
  "hostmaster",
  "webmaster",
  "autoconfig",
  "autodiscover",
  "wpad",
  "localhost",
  "_dmarc",
  "keys",
  "key-service",
]);

export function checkSlug(slug: string): "ok" | "invalid" | "reserved" {
  if (!SLUG.test(slug) || slug.includes("--")) return "invalid";
  if (RESERVED_SLUGS.has(slug)) return "reserved";
  return "ok";
}

/**
 * `host:port` of a database server in its one canonical spelling (shared/src/db-server:
 * IPv6 compressed in brackets, IPv4-mapped as IPv4, host names lower-case A-labels,
 * port 5432 when omitted; ambiguous IPv4 refused), so the unique constraint on
 * `database_servers.address` means one server, not one string.
 */
export function normalizeServer(input: string): { ok: true; server: string } | { ok: false; detail: string } {
  const r = canonicalDbServer(input);
  return r.ok ? { ok: true, server: r.server } : { ok: false, detail: r.detail };
}

/** An upstream is an origin: http(s), host, optional port; no credentials, path or query. */
export function normalizeUpstream(input: string): string | null {
  let url: URL;
  try {
    url = new URL(input);
  } catch {
    return null;
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") return null;
  if (url.username || url.password || url.search || url.hash) return null;
  if (url.pathname !== "/" && url.pathname !== "") return null;
  return url.origin;
}

export function isCidr(input: string): boolean {
  const [addr, bits, ...rest] = input.split("/");
  if (rest.length > 0 || !addr) return false;
  const family = isIP(addr);
  if (family === 0) return false;
  if (bits === undefined) return true;
  if (!/^\d{1,3}$/.test(bits)) return false;
  return Number(bits) <= (family === 4 ? 32 : 128);
}
