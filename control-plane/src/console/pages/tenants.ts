/**
 * Console pages of tenants: the list (search by slug or name, filter by status), a
 * new tenant, a tenant's page (plan, limits, features, branding preview, database
 * binding, upstreams, hostnames) and suspend/resume behind a confirmation page.
 */
import type { Hono } from "hono";
import { html } from "hono/html";
import type { AdminClient } from "../../admin/client.ts";
import { PLAN_NAMES } from "../../plans.ts";
import { badge, csrf, field, page, refusalPage, t, tenantUrl } from "../layout.ts";
import type { ConsoleEnv } from "../session.ts";

type Tenant = Extract<Awaited<ReturnType<AdminClient["getTenant"]>>, { ok: true }>["body"];

function tenantNav(tenant: Tenant) {
  return html`<nav class="sub"><a href="${tenantUrl(tenant.slug)}">Overview</a><a href="${tenantUrl(tenant.slug, "/hostnames")}">Hostnames</a>
<a href="${tenantUrl(tenant.slug, "/keys")}">Keys</a><a href="${tenantUrl(tenant.slug, "/usage")}">Usage</a>
<a href="/console/audit?tenant=${encodeURIComponent(tenant.slug)}">Audit</a><a href="/console/live?tenant=${encodeURIComponent(tenant.slug)}">Live</a>
<a href="/console/changes?tenant=${encodeURIComponent(tenant.slug)}">Changes</a></nav>`;
}

export { tenantNav };

/** A preview of the tenant's branding: its colour and display name, drawn; the logo named, never fetched. */
function brandingPreview(tenant: Tenant) {
  const b = tenant.settings.branding ?? {};
  const color = /^#[0-9a-fA-F]{6}$/.test(b.primaryColor ?? "") ? (b.primaryColor as string) : "#4b5563";
  return html`<div class="card" id="branding"><h2>Branding</h2>
<svg width="320" height="56" role="img" aria-label="branding preview"><rect width="320" height="56" rx="6" fill="${color}"/>
<text x="14" y="34" fill="#ffffff" font-size="18">${b.displayName ?? tenant.name}</text></svg>
<p>colour <code>${b.primaryColor ?? "(default)"}</code> · logo <code>${b.logoUrl ?? "(none)"}</code> <span class="muted">(not loaded here)</span></p></div>`;
}

export function mountTenantPages(app: Hono<ConsoleEnv>, api: AdminClient): void {
  app.get("/tenants", async (c) => {
    const q = c.req.query("q") || undefined;
    const status =
      c.req.query("status") === "active" || c.req.query("status") === "suspended" ? c.req.query("status") : undefined;
    const after = c.req.query("after") || undefined;
    const answer = await api.listTenants({ query: { q, status: status as "active" | undefined, after, limit: 100 } });
    if (!answer.ok) return refusalPage(c, answer, "/console/tenants");
    const { tenants, next } = answer.body;
    const query = (extra: Record<string, string | undefined>) =>
      `?${new URLSearchParams(Object.entries({ q, status, ...extra }).filter((e): e is [string, string] => e[1] !== undefined))}`;
    return page(
      c,
      "Tenants",
      html`<h1>Tenants</h1>
<form method="get" action="/console/tenants" id="search"><input name="q" placeholder="slug or name" value="${q ?? ""}">
<select name="status"><option value="">any status</option>${["active", "suspended"].map(
        (s) => html`<option value="${s}" ${s === status ? "selected" : ""}>${s}</option>`,
      )}</select> <button>Search</button></form>
<table id="tenants"><tr><th>slug</th><th>name</th><th>status</th><th>plan</th><th>database</th><th>hostnames</th></tr>
${tenants.map(
  (
    x,
  ) => html`<tr><td><a href="${tenantUrl(x.slug)}">${x.slug}</a></td><td>${x.name}</td><td>${badge(x.status)}</td><td>${x.plan}</td>
<td>${x.database ? html`<code>${x.database.server}/${x.database.database}</code>` : html`<span class="muted">none</span>`}</td>
<td>${x.hostnames.length}</td></tr>`,
)}</table>
${tenants.length === 0 ? html`<p class="muted">No tenant matches.</p>` : ""}
${next ? html`<p><a href="/console/tenants${query({ after: next })}">Next page</a></p>` : ""}
<div class="card"><h2>New tenant</h2><form method="post" action="/console/tenants" id="create-tenant">${csrf(c)}
<input name="slug" placeholder="slug" required> <input name="name" placeholder="name" required>
<select name="plan">${PLAN_NAMES.map((p) => html`<option>${p}</option>`)}</select> <button>Create</button></form></div>`,
    );
  });

  app.post("/tenants", async (c) => {
    const answer = await api.createTenant({
      body: { slug: (await field(c, "slug")) ?? "", name: (await field(c, "name")) ?? "", plan: await field(c, "plan") },
    });
    if (!answer.ok) return refusalPage(c, answer, "/console/tenants");
    return c.redirect(tenantUrl(answer.body.slug), 303);
  });

  app.get("/tenants/:tenant", async (c) => {
    const answer = await api.getTenant({ params: { tenant: c.req.param("tenant") } });
    if (!answer.ok) return refusalPage(c, answer, "/console/tenants");
    const x = answer.body;
    const other = x.status === "active" ? "suspend" : "resume";
    return page(
      c,
      x.slug,
      html`<h1>${x.name} <span class="muted">${x.slug}</span> ${badge(x.status)}</h1>${tenantNav(x)}
<p class="mono">${x.id} · plan ${x.plan} · created ${t(x.createdAt)} · version ${x.version}</p>
<p><a href="${tenantUrl(x.slug, `/${other}`)}" id="status-action">${other === "suspend" ? "Suspend" : "Resume"} this tenant…</a></p>
<div class="row"><div class="card"><h2>Limits</h2><table>${Object.entries(x.limits).map(
        ([k, v]) =>
          html`<tr><td>${k}</td><td>${v ?? "unlimited"}${k in x.overrides.limits ? html` <span class="muted">(override)</span>` : ""}</td></tr>`,
      )}</table></div>
<div class="card"><h2>Features</h2><table>${Object.entries(x.features).map(([k, v]) => html`<tr><td>${k}</td><td>${badge(v ? "on" : "off")}</td></tr>`)}</table>
<p>IP allowlist: ${x.settings.allowedIps?.length ? html`<code>${x.settings.allowedIps.join(", ")}</code>` : "none"}</p></div></div>
${brandingPreview(x)}
<div class="row"><div class="card" id="database"><h2>Database binding</h2>
<p>${x.database ? html`<code>${x.database.server}/${x.database.database}</code>` : html`<b>none</b>: traffic is refused until bound`}</p>
<form method="post" action="${tenantUrl(x.slug, "/database")}">${csrf(c)}<input name="server" placeholder="host:port" required>
<input name="database" placeholder="database" required> <button>Bind</button></form></div>
<div class="card" id="upstreams"><h2>Upstreams</h2><ul>${x.upstreams.map((u) => html`<li><code>${u}</code></li>`)}</ul>
<form method="post" action="${tenantUrl(x.slug, "/upstreams")}">${csrf(c)}<input name="urls" placeholder="http://10.0.0.5:3000, …" required> <button>Set</button></form></div></div>
<div class="card"><h2>Hostnames</h2><table>${x.hostnames.map(
        (h) => html`<tr><td><code>${h.hostname}</code></td><td>${h.kind}</td><td>${badge(h.status)}</td></tr>`,
      )}</table><p><a href="${tenantUrl(x.slug, "/hostnames")}">Manage hostnames</a></p></div>`,
    );
  });

  for (const action of ["suspend", "resume"] as const) {
    app.get(`/tenants/:tenant/${action}`, async (c) => {
      const answer = await api.getTenant({ params: { tenant: c.req.param("tenant") } });
      if (!answer.ok) return refusalPage(c, answer, "/console/tenants");
      const x = answer.body;
      return page(
        c,
        `${action} ${x.slug}`,
        html`<h1>${action === "suspend" ? "Suspend" : "Resume"} ${x.name}?</h1>
<div class="card"><p>${
          action === "suspend"
            ? "Every request to this tenant's hostnames and with its keys is refused (403) at once."
            : "The tenant's hostnames and keys route again at once."
        }</p>
<form method="post" action="${tenantUrl(x.slug, "/status")}" id="confirm">${csrf(c)}
<input type="hidden" name="status" value="${action === "suspend" ? "suspended" : "active"}">
<button>Yes, ${action} ${x.slug}</button> <a href="${tenantUrl(x.slug)}">Cancel</a></form></div>`,
      );
    });
  }

  app.post("/tenants/:tenant/status", async (c) => {
    const ref = c.req.param("tenant");
    const status = (await field(c, "status")) === "suspended" ? "suspended" : "active";
    const answer = await api.patchTenant({ params: { tenant: ref }, body: { status } });
    return answer.ok ? c.redirect(tenantUrl(answer.body.slug), 303) : refusalPage(c, answer, tenantUrl(ref));
  });

  app.post("/tenants/:tenant/database", async (c) => {
    const ref = c.req.param("tenant");
    const body = { server: (await field(c, "server")) ?? "", database: (await field(c, "database")) ?? "" };
    const answer = await api.putDatabase({ params: { tenant: ref }, body });
    return answer.ok ? c.redirect(tenantUrl(ref), 303) : refusalPage(c, answer, tenantUrl(ref));
  });

  app.post("/tenants/:tenant/upstreams", async (c) => {
    const ref = c.req.param("tenant");
    const urls = ((await field(c, "urls")) ?? "").split(/[\s,]+/).filter(Boolean);
    const answer = await api.putUpstreams({ params: { tenant: ref }, body: { urls } });
    return answer.ok ? c.redirect(tenantUrl(ref), 303) : refusalPage(c, answer, tenantUrl(ref));
  });
}
