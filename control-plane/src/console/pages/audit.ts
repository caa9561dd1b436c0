/**
 * Console pages over the trail: audit search (`/v1/audit`, a tenant's with
 * `?tenant=`), the change log (`/v1/changes`) and the explain tool (`/v1/explain`,
 * posted: an API key typed into it must not end up in a URL or the history).
 */
import type { Hono } from "hono";
import { html } from "hono/html";
import type { AdminClient, Answer } from "../../admin/client.ts";
import { badge, csrf, field, page, refusalPage, t } from "../layout.ts";
import type { ConsoleEnv } from "../session.ts";

const AUDIT_FILTERS = ["tenant", "decision", "reason", "since", "until", "requestId"] as const;

/** The query's non-empty values among `names`. */
function filters<N extends string>(query: Record<string, string>, names: readonly N[]): Partial<Record<N, string>> {
  const out: Partial<Record<N, string>> = {};
  for (const n of names) if (query[n]) out[n] = query[n];
  return out;
}

const input = (name: string, value: string | undefined, placeholder = name) =>
  html`<input name="${name}" placeholder="${placeholder}" value="${value ?? ""}">`;

export function mountAuditPages(app: Hono<ConsoleEnv>, api: AdminClient): void {
  app.get("/audit", async (c) => {
    const f = filters(c.req.query(), [...AUDIT_FILTERS, "cursor"]);
    const query = {
      decision: f.decision as "allow" | "refuse" | undefined,
      reason: f.reason,
      since: f.since,
      until: f.until,
      requestId: f.requestId,
      cursor: f.cursor,
      limit: 50,
    };
    const answer: Answer<"audit"> = f.tenant
      ? await api.tenantAudit({ params: { tenant: f.tenant }, query })
      : await api.audit({ query });
    if (!answer.ok) return refusalPage(c, answer, "/console/audit");
    const next = answer.body.next;
    const nextUrl = next ? `/console/audit?${new URLSearchParams({ ...filters(f, AUDIT_FILTERS), cursor: next })}` : null;
    return page(
      c,
      "Audit",
      html`<h1>Audit trail</h1>
<form method="get" action="/console/audit" id="audit-search">${input("tenant", f.tenant, "tenant (slug or id)")}
<select name="decision"><option value="">any decision</option>${["allow", "refuse"].map(
        (d) => html`<option ${d === f.decision ? "selected" : ""}>${d}</option>`,
      )}</select>
${input("reason", f.reason, "reason (e.g. unknown_host)")} ${input("requestId", f.requestId, "request id")}
${input("since", f.since, "since (ISO 8601)")} ${input("until", f.until, "until")} <button>Search</button></form>
<table id="events"><tr><th>time</th><th>decision</th><th>reason</th><th>tenant</th><th>request</th><th>status</th><th>client</th><th>credential</th><th>request id</th></tr>
${answer.body.events.map(
  (
    e,
  ) => html`<tr class="event"><td>${t(e.time)}</td><td>${badge(e.decision)}</td><td>${e.reason}${e.count ? html` ×${e.count}` : ""}</td>
<td class="mono">${e.tenantId ?? "—"}</td><td class="mono">${e.method} ${e.host}${e.path}</td><td>${e.status}</td><td class="mono">${e.clientIp}</td>
<td>${e.credential}${e.keyId ? html` <code>${e.keyId}</code>` : ""}</td><td class="mono">${e.requestId}</td></tr>`,
)}</table>
${answer.body.events.length === 0 ? html`<p class="muted">No decision matches.</p>` : ""}
${nextUrl ? html`<p><a href="${nextUrl}">Older</a></p>` : ""}`,
    );
  });

  app.get("/changes", async (c) => {
    const f = filters(c.req.query(), ["tenant", "action", "since", "until", "cursor"]);
    const query = { action: f.action, since: f.since, until: f.until, cursor: f.cursor, limit: 50 };
    const answer: Answer<"changes"> = f.tenant
      ? await api.tenantChanges({ params: { tenant: f.tenant }, query })
      : await api.changes({ query });
    if (!answer.ok) return refusalPage(c, answer, "/console/changes");
    const { cursor: _, ...kept } = f;
    const next = answer.body.next
      ? `/console/changes?${new URLSearchParams({ ...kept, cursor: answer.body.next } as Record<string, string>)}`
      : null;
    return page(
      c,
      "Change log",
      html`<h1>Change log</h1>
<form method="get" action="/console/changes" id="changes-search">${input("tenant", f.tenant, "tenant (slug or id)")}
${input("action", f.action, "action (e.g. tenant.update)")} ${input("since", f.since, "since (ISO 8601)")} <button>Search</button></form>
<table id="changes"><tr><th>time</th><th>actor</th><th>action</th><th>tenant</th><th>target</th><th>before → after</th></tr>
${answer.body.changes.map(
  (
    ch,
  ) => html`<tr class="change"><td>${t(ch.time)}</td><td>${ch.actor}</td><td><code>${ch.action}</code></td><td class="mono">${ch.tenantId ?? "—"}</td>
<td class="mono">${ch.target ?? "—"}</td><td><details><summary>diff</summary><pre class="mono">${JSON.stringify(ch.before, null, 1)}</pre>
<pre class="mono">${JSON.stringify(ch.after, null, 1)}</pre></details></td></tr>`,
)}</table>
${next ? html`<p><a href="${next}">Older</a></p>` : ""}`,
    );
  });

  const explainForm = (c: Parameters<typeof page>[0], host = "", ip = "") =>
    html`<form method="post" action="/console/explain" id="explain-form">${csrf(c)}${input("host", host, "host (e.g. acme.localhost)")}
<input name="key" placeholder="API key or its prefix (optional)" autocomplete="off"> ${input("ip", ip, "client IP (optional)")}
<button>Explain</button></form>`;

  app.get("/explain", (c) =>
    page(
      c,
      "Explain",
      html`<h1>Explain a decision</h1><p>What the router would decide for a request, and by which rule.</p>${explainForm(c)}`,
    ),
  );

  app.post("/explain", async (c) => {
    const host = (await field(c, "host")) ?? "";
    const key = await field(c, "key");
    const ip = await field(c, "ip");
    const answer = await api.explain({ query: { host, key, ip } });
    if (!answer.ok) return refusalPage(c, answer, "/console/explain");
    const e = answer.body;
    return page(
      c,
      "Explain",
      html`<h1>Explain a decision</h1>${explainForm(c, host, ip ?? "")}
<div class="card" id="explanation"><p>${badge(e.decision)} ${e.reason ? html`<b>${e.reason}</b> (${e.status} ${e.code})` : ""}
${e.tenant ? html`tenant <code>${e.tenant.slug}</code> (${e.tenant.status}), auth ${e.auth}` : ""}</p>
${e.rule ? html`<p>${e.rule}</p>` : ""}${e.note ? html`<p class="muted">${e.note}</p>` : ""}
<pre class="mono">${JSON.stringify(e, null, 2)}</pre></div>`,
    );
  });
}
