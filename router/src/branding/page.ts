/**
 * The branded refusal pages, answered by the router itself (never the upstream): the
 * HTML a person sees in a browser when a tenant's request is refused (429, suspended),
 * in the tenant's name, logo and colour. Every tenant-supplied value is escaped for its
 * context; the colour is re-checked against `#rrggbb` before it reaches CSS (or the
 * branding JSON, `json.ts`), and the page's CSP allows no script at all.
 */
import { REFUSALS, type RefusalReason, type TenantRecord } from "@portcullis/shared";

/** Refusals shown as a branded page when the client asks for HTML. */
const BRANDED: ReadonlySet<RefusalReason> = new Set([
  "rate_limited",
  "quota_exceeded",
  "concurrency_limited",
  "tenant_suspended",
]);

const TITLES: Partial<Record<RefusalReason, string>> = {
  rate_limited: "Too many requests",
  quota_exceeded: "Monthly limit reached",
  concurrency_limited: "Too many requests",
  tenant_suspended: "Temporarily unavailable",
};

/** The only colours a tenant's branding may carry into CSS or JSON. */
export const COLOUR = /^#[0-9a-fA-F]{6}$/;
const DEFAULT_COLOUR = "#334155";

export const HTML_HEADERS = {
  "content-type": "text/html; charset=utf-8",
  "content-security-policy":
    "default-src 'none'; img-src http: https:; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'",
  "x-content-type-options": "nosniff",
  "cache-control": "no-store",
} as const;

/** HTML text and attribute escaping (OWASP rule 1/2 set: & < > " ' and `). */
export function escapeHtml(value: string): string {
  return value.replace(/[&<>"'`]/g, (ch) => `&#${ch.charCodeAt(0)};`);
}

/** True when the Accept header asks for HTML (a browser navigating), per RFC 9110 §12.5.1. */
export function wantsHtml(accept: string | undefined): boolean {
  return accept?.includes("text/html") === true;
}

export function isBranded(reason: RefusalReason): boolean {
  return BRANDED.has(reason);
}

export function brandedRefusalPage(tenant: TenantRecord, reason: RefusalReason, requestId: string): string {
  const b = tenant.settings.branding;
  const name = escapeHtml(b.displayName ?? tenant.slug);
  const colour = b.primaryColor !== undefined && COLOUR.test(b.primaryColor) ? b.primaryColor : DEFAULT_COLOUR;
  const logo =
    b.logoUrl !== undefined && /^https?:\/\//i.test(b.logoUrl)
      ? `<img src="${escapeHtml(b.logoUrl)}" alt="${name}" height="48">`
      : "";
  const title = escapeHtml(TITLES[reason] ?? "Unavailable");
  const message = escapeHtml(REFUSALS[reason].message);
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${title} · ${name}</title>
<style>body{font-family:system-ui,sans-serif;margin:0;color:#0f172a}header{background:${colour};color:#fff;padding:16px 24px;display:flex;gap:12px;align-items:center}main{padding:24px}small{color:#64748b}</style>
</head><body><header>${logo}<strong>${name}</strong></header>
<main><h1>${title}</h1><p>${message}</p><p><small>Request ${escapeHtml(requestId)}</small></p></main></body></html>
`;
}
