/**
 * Console pages of a tenant's hostnames (status, the exact TXT record with a copy
 * button, verify now, when it was checked) and API keys (create — the secret shown on
 * that one answer, never again —, list, revoke).
 */
import type { Context, Hono } from "hono";
import { html } from "hono/html";
import type { AdminClient } from "../../admin/client.ts";
import { badge, csrf, field, page, refusalPage, t, tenantUrl } from "../layout.ts";
import type { ConsoleEnv } from "../session.ts";
import { tenantNav } from "./tenants.ts";

export function mountCredentialPages(app: Hono<ConsoleEnv>, api: AdminClient): void {
  app.get("/tenants/:tenant/hostnames", async (c) => {
    const tenant = c.req.param("tenant");
    const [x, list] = await Promise.all([api.getTenant({ params: { tenant } }), api.listHostnames({ params: { tenant } })]);
    if (!x.ok) return refusalPage(c, x, "/console/tenants");
    if (!list.ok) return refusalPage(c, list, tenantUrl(tenant));
    const slug = x.body.slug;
    const verified = c.req.query("verified");
    return page(
      c,
      `${slug}: hostnames`,
      html`<h1>${x.body.name}: hostnames</h1>${tenantNav(x.body)}
${verified ? html`<div class="card" id="verified">${verified} is verified: it routes now.</div>` : ""}
<table id="hostnames"><tr><th>hostname</th><th>kind</th><th>status</th><th>TXT record to publish</th><th>checks</th><th></th></tr>
${list.body.hostnames.map(
  (h) => html`<tr data-hostname="${h.hostname}"><td><code>${h.hostname}</code></td><td>${h.kind}</td><td>${badge(h.status)}</td>
<td>${
    h.verification
      ? html`<div class="mono txt-name">${h.verification.name}</div><div class="mono">TXT <span class="txt-value">"${h.verification.value}"</span></div>
<button type="button" class="copy" data-copy="${h.verification.name} TXT &quot;${h.verification.value}&quot;">Copy</button>`
      : html`<span class="muted">platform subdomain: verified at creation</span>`
  }</td>
<td class="muted">added ${t(h.createdAt)}<br>last checked ${t(h.lastCheckedAt)}<br>verified ${t(h.verifiedAt)}${
    h.missingSince ? html`<br><b>record missing since ${t(h.missingSince)}</b>` : ""
  }</td>
<td>${
    h.kind === "custom"
      ? html`<form class="inline" method="post" action="${tenantUrl(slug, `/hostnames/${encodeURIComponent(h.hostname)}/verify`)}">${csrf(c)}<button class="verify">Verify now</button></form>
<form class="inline" method="post" action="${tenantUrl(slug, `/hostnames/${encodeURIComponent(h.hostname)}/delete`)}" data-confirm="Remove ${h.hostname}? It stops routing at once.">${csrf(c)}<button>Remove</button></form>`
      : ""
  }</td></tr>`,
)}</table>
<div class="card"><h2>Add a custom hostname</h2><form method="post" action="${tenantUrl(slug, "/hostnames")}" id="add-hostname">${csrf(c)}
<input name="hostname" placeholder="shop.example.com" required> <button>Add</button></form>
<p class="muted">It routes once its TXT record is published and verified. The platform re-checks verified records periodically.</p></div>`,
    );
  });

  app.post("/tenants/:tenant/hostnames", async (c) => {
    const tenant = c.req.param("tenant");
    const answer = await api.addHostname({ params: { tenant }, body: { hostname: (await field(c, "hostname")) ?? "" } });
    const back = tenantUrl(tenant, "/hostnames");
    return answer.ok ? c.redirect(back, 303) : refusalPage(c, answer, back);
  });

  app.post("/tenants/:tenant/hostnames/:hostname/verify", async (c) => {
    const { tenant, hostname } = c.req.param();
    const answer = await api.verifyHostname({ params: { tenant, hostname } });
    const back = tenantUrl(tenant, "/hostnames");
    return answer.ok
      ? c.redirect(`${back}?verified=${encodeURIComponent(answer.body.hostname)}`, 303)
      : refusalPage(c, answer, back);
  });

  app.post("/tenants/:tenant/hostnames/:hostname/delete", async (c) => {
    const { tenant, hostname } = c.req.param();
    const answer = await api.deleteHostname({ params: { tenant, hostname } });
    const back = tenantUrl(tenant, "/hostnames");
    return answer.ok ? c.redirect(back, 303) : refusalPage(c, answer, back);
  });

  const keysPage = async (c: Context<ConsoleEnv, "/tenants/:tenant/keys">, created?: { id: string; key: string }) => {
    const tenant = c.req.param("tenant");
    const [x, list] = await Promise.all([api.getTenant({ params: { tenant } }), api.listKeys({ params: { tenant } })]);
    if (!x.ok) return refusalPage(c, x, "/console/tenants");
    if (!list.ok) return refusalPage(c, list, tenantUrl(tenant));
    const slug = x.body.slug;
    return page(
      c,
      `${slug}: keys`,
      html`<h1>${x.body.name}: API keys</h1>${tenantNav(x.body)}
${
  created
    ? html`<div class="card secret" id="new-key"><p>Key <code>${created.id}</code> created. Copy it now: it is shown this once.</p>
<p class="mono" id="secret">${created.key}</p><button type="button" data-copy="${created.key}">Copy</button></div>`
    : ""
}
<table id="keys"><tr><th>id</th><th>prefix</th><th>name</th><th>status</th><th>created</th><th>expires</th><th>last used</th><th></th></tr>
${list.body.keys.map(
  (
    k,
  ) => html`<tr data-key="${k.id}"><td><code>${k.id}</code></td><td><code>${k.prefix}</code></td><td>${k.name ?? "—"}</td><td>${badge(k.status)}</td>
<td>${t(k.createdAt)}</td><td>${t(k.expiresAt)}</td><td>${t(k.lastUsedAt)}</td><td>${
    k.status === "active"
      ? html`<form class="inline" method="post" action="${tenantUrl(slug, `/keys/${encodeURIComponent(k.id)}/revoke`)}" data-confirm="Revoke ${k.prefix}…? Requests with it are refused at once.">${csrf(c)}<button class="revoke">Revoke</button></form>`
      : ""
  }</td></tr>`,
)}</table>
<div class="card"><h2>New key</h2><form method="post" action="${tenantUrl(slug, "/keys")}" id="create-key">${csrf(c)}
<input name="name" placeholder="name (optional)"> <input name="expiresAt" placeholder="expires (ISO 8601, optional)"> <button>Create key</button></form></div>`,
    );
  };

  app.get("/tenants/:tenant/keys", (c) => keysPage(c));

  app.post("/tenants/:tenant/keys", async (c) => {
    const tenant = c.req.param("tenant");
    const name = await field(c, "name");
    const expiresAt = await field(c, "expiresAt");
    const answer = await api.createKey({
      params: { tenant },
      body: { ...(name ? { name } : {}), ...(expiresAt ? { expiresAt } : {}) },
    });
    if (!answer.ok) return refusalPage(c, answer, tenantUrl(tenant, "/keys"));
    // Answered here, not redirected: the secret must not travel in a URL or be kept anywhere.
    return keysPage(c, { id: answer.body.id, key: answer.body.key });
  });

  app.post("/tenants/:tenant/keys/:keyId/revoke", async (c) => {
    const { tenant, keyId } = c.req.param();
    const answer = await api.revokeKey({ params: { tenant, keyId } });
    const back = tenantUrl(tenant, "/keys");
    return answer.ok ? c.redirect(back, 303) : refusalPage(c, answer, back);
  });
}
