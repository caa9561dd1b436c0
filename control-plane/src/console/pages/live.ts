/**
 * Live decisions (`/console/live`, its events at `/console/live/events` as
 * server-sent events, filtered by tenant, decision and reason) and a tenant's usage
 * (`/console/tenants/:tenant/usage`: the month's metered totals, and requests and
 * refusals per hour from the trail as an inline SVG chart).
 */
import type { Hono } from "hono";
import { html } from "hono/html";
import { streamSSE } from "hono/streaming";
import type { AdminClient } from "../../admin/client.ts";
import { barChart, page, refusalPage, secureHeaders, tenantUrl } from "../layout.ts";
import type { LiveFeed } from "../live.ts";
import type { ConsoleEnv } from "../session.ts";
import { tenantNav } from "./tenants.ts";

const KEEPALIVE_MS = 15_000;
/** Open event streams per control plane process; more are refused with 503. */
export const MAX_STREAMS = 32;
/**
 * Events waiting to be written to one stream; a client that reads slower than this
 * (a stalled tab, a paused socket) is disconnected rather than buffered for. Its
 * browser reconnects, and the audit search has what it missed.
 */
export const MAX_PENDING = 2000;

export function mountLivePages(app: Hono<ConsoleEnv>, api: AdminClient, feed: LiveFeed): void {
  app.get("/live", (c) => {
    const { tenant = "", decision = "", reason = "" } = c.req.query();
    return page(
      c,
      "Live decisions",
      html`<h1>Live decisions</h1>
<form method="get" action="/console/live" id="live-filter"><input name="tenant" placeholder="tenant (slug or id)" value="${tenant}">
<select name="decision"><option value="">any decision</option>${["allow", "refuse"].map(
        (d) => html`<option ${d === decision ? "selected" : ""}>${d}</option>`,
      )}</select>
<input name="reason" placeholder="reason" value="${reason}"> <button>Filter</button> <span class="muted" id="live-state">connecting</span></form>
<table id="live"><thead><tr><th>time</th><th>decision</th><th>reason</th><th>tenant</th><th>request</th><th>status</th><th>client</th><th>request id</th></tr></thead>
<tbody></tbody></table>
<p class="muted">Decisions appear as the audit trail stores them (usually within a second). Older ones: <a href="/console/audit">audit search</a>.</p>`,
    );
  });

  app.get("/live/events", async (c) => {
    // The cookie is SameSite=Strict, so another site's page cannot open this stream
    // with a session; refuse it by name as well.
    if (c.req.header("sec-fetch-site") === "cross-site") return c.text("Refused: cross-site request.", 403);
    if (feed.listeners >= MAX_STREAMS) {
      c.header("retry-after", "5");
      return c.text("Too many open live streams on this control plane; try again shortly.", 503);
    }
    const { tenant, decision, reason } = c.req.query();
    let tenantId: string | null = null;
    if (tenant) {
      const found = await api.getTenant({ params: { tenant } });
      if (!found.ok) return c.text("unknown tenant", 404);
      tenantId = found.body.id;
    }
    secureHeaders(c);
    return streamSSE(c, async (stream) => {
      let queue = Promise.resolve();
      let pending = 0;
      let overflowed = false;
      let unsubscribe = () => {};
      const enqueue = (write: () => Promise<unknown>) => {
        if (overflowed) return;
        if (pending >= MAX_PENDING) {
          overflowed = true;
          unsubscribe();
          void stream.close();
          return;
        }
        pending++;
        queue = queue
          .then(write)
          .then(() => {})
          .catch(() => {})
          .finally(() => {
            pending--;
          });
      };
      unsubscribe = await feed.subscribe((events) => {
        for (const e of events) {
          if (tenantId !== null && e.tenantId !== tenantId) continue;
          if (decision && e.decision !== decision) continue;
          if (reason && e.reason !== reason) continue;
          enqueue(() => stream.writeSSE({ event: "decision", id: String(e.id), data: JSON.stringify(e) }));
        }
      });
      stream.onAbort(unsubscribe);
      try {
        await stream.writeSSE({ event: "ready", data: "{}" });
        while (!stream.aborted && !stream.closed && !overflowed) {
          await stream.sleep(KEEPALIVE_MS);
          enqueue(() => stream.write(": keepalive\n\n"));
        }
      } finally {
        unsubscribe();
      }
    });
  });

  app.get("/tenants/:tenant/usage", async (c) => {
    const tenant = c.req.param("tenant");
    const [x, month, hourly] = await Promise.all([
      api.getTenant({ params: { tenant } }),
      api.usage({ params: { tenant } }),
      api.usageHourly({ params: { tenant }, query: { hours: 24 } }),
    ]);
    if (!x.ok) return refusalPage(c, x, "/console/tenants");
    if (!month.ok) return refusalPage(c, month, tenantUrl(tenant));
    if (!hourly.ok) return refusalPage(c, hourly, tenantUrl(tenant));
    const m = month.body;
    const points = hourly.body.hours.map((h) => ({ label: h.start.slice(11, 16), requests: h.requests, refused: h.refused }));
    const total = points.reduce((n, p) => n + p.requests, 0);
    const refused = points.reduce((n, p) => n + p.refused, 0);
    return page(
      c,
      `${x.body.slug}: usage`,
      html`<h1>${x.body.name}: usage</h1>${tenantNav(x.body)}
<div class="card" id="month"><h2>This month (${m.period}), metered</h2>
<table><tr><th>requests</th><th>refused</th><th>bytes in</th><th>bytes out</th><th>monthly quota</th></tr>
<tr><td>${m.requests}</td><td>${m.refused}</td><td>${m.bytesIn}</td><td>${m.bytesOut}</td><td>${x.body.limits.monthlyRequests ?? "unlimited"}</td></tr></table></div>
<div class="card" id="hourly"><h2>Last 24 hours, from the audit trail (UTC)</h2>
<p>${total} decisions, ${refused} refused. <span class="muted">Blue: requests; red: refusals.</span></p>
${barChart(points)}</div>`,
    );
  });
}
