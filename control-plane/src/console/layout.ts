/**
 * The console's page shell and the pieces every page uses. Pages are `hono/html`
 * tagged templates: every interpolated value is HTML-escaped (tenant names, hostnames,
 * paths and reasons are attacker-influenced), and only this module's own constant
 * markup goes in raw. The CSP below allows no inline script or style and nothing
 * from another origin, so even a missed escape could not run.
 */
import type { Context } from "hono";
import { html } from "hono/html";
import type { HtmlEscapedString } from "hono/utils/html";
import type { Refusal } from "../admin/client.ts";
import type { ConsoleEnv } from "./session.ts";

export type Html = HtmlEscapedString | Promise<HtmlEscapedString>;
export type ConsoleContext = Context<ConsoleEnv>;

export const CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
  "form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

export function secureHeaders(c: Context): void {
  c.header("content-security-policy", CSP);
  c.header("x-frame-options", "DENY");
  c.header("x-content-type-options", "nosniff");
  // Not no-referrer: under it Chromium sends `Origin: null` with same-origin form posts, which the CSRF check refuses.
  c.header("referrer-policy", "same-origin");
  c.header("cache-control", "no-store");
}

/** The hidden CSRF field of every form that changes something (console/session.ts). */
export const csrf = (c: ConsoleContext) => html`<input type="hidden" name="_csrf" value="${c.get("csrf")}">`;

export const badge = (value: string) => html`<span class="badge ${value.replace(/[^a-z]/g, "")}">${value}</span>`;

export const t = (iso: string | null | undefined) => (iso ? iso.replace("T", " ").replace(/\.\d+Z$/, "Z") : "—");

/** `/console/tenants/<ref>` with the reference encoded (slugs are safe; ids and hostnames are encoded anyway). */
export const tenantUrl = (ref: string, sub = "") => `/console/tenants/${encodeURIComponent(ref)}${sub}`;

export function page(c: ConsoleContext, title: string, body: Html, status: 200 | 400 | 401 | 404 | 409 | 422 | 500 = 200) {
  secureHeaders(c);
  const signedIn = Boolean(c.get("csrf"));
  return c.html(
    html`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>${title} · Portcullis console</title><link rel="icon" href="data:,"><link rel="stylesheet" href="/console/app.css"></head>
<body>
<header><b>Portcullis</b>${
      signedIn
        ? html`<a href="/console/tenants">Tenants</a><a href="/console/live">Live decisions</a><a href="/console/audit">Audit</a>
<a href="/console/changes">Change log</a><a href="/console/explain">Explain</a><a href="/docs">API</a>
<form class="inline" method="post" action="/console/logout">${csrf(c)}<button>Log out</button></form>`
        : ""
    }</header>
<main>${body}</main>
<script src="/console/app.js"></script>
</body></html>`,
    status,
  );
}

/** An admin API refusal shown as a page: the code, the message, the detail. */
export function refusalPage(c: ConsoleContext, answer: { status: number; body: Refusal }, back: string) {
  const e = answer.body?.error ?? { code: String(answer.status), message: "The request failed." };
  const status = [400, 401, 404, 409, 422].includes(answer.status) ? (answer.status as 400) : 500;
  return page(
    c,
    "Refused",
    html`<h1>Refused</h1><div class="card error"><p><b id="error-code">${e.code}</b>: ${e.message}</p>${
      e.detail ? html`<p class="mono">${e.detail}</p>` : ""
    }</div><p><a href="${back}">Back</a></p>`,
    status,
  );
}

/** A form's string field, or undefined when absent or empty. */
export async function field(c: ConsoleContext, name: string): Promise<string | undefined> {
  const form = await c.req.parseBody();
  const value = form[name];
  return typeof value === "string" && value.trim() !== "" ? value.trim() : undefined;
}

/** A tiny bar chart as inline SVG: requests and refusals per bucket (console/pages/usage.ts). */
export function barChart(points: { label: string; requests: number; refused: number }[], width = 720, height = 160): Html {
  const max = Math.max(1, ...points.map((p) => p.requests));
  const bar = width / Math.max(1, points.length);
  const y = (n: number) => height - 20 - (n / max) * (height - 30);
  return html`<svg role="img" aria-label="requests and refusals" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}">
<line x1="0" y1="${height - 20}" x2="${width}" y2="${height - 20}" stroke="#9ca3af"/>
<text x="2" y="10" fill="#6b7280">${max}</text>
${points.map(
  (p, i) => html`<g><title>${p.label}: ${p.requests} requests, ${p.refused} refused</title>
<rect x="${i * bar + 1}" y="${y(p.requests)}" width="${Math.max(1, bar - 2)}" height="${height - 20 - y(p.requests)}" fill="#93c5fd"/>
<rect x="${i * bar + 1}" y="${y(p.refused)}" width="${Math.max(1, bar - 2)}" height="${height - 20 - y(p.refused)}" fill="#f87171"/>
${i % Math.ceil(points.length / 8) === 0 ? html`<text x="${i * bar + 1}" y="${height - 6}" fill="#6b7280">${p.label}</text>` : ""}</g>`,
)}
</svg>`;
}
