/**
 * The operator's view: the audit calls of docs/audit.md (filters, cursor pagination,
 * platform-wide refusals without a tenant), configuration changes with before and
 * after, `GET /v1/explain` (nothing sent upstream), cross-tenant signals (metrics
 * and a rate-limited webhook), `/metrics` on the three ops listeners, and W3C
 * trace context towards the upstream.
 */
import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { getRequestListener } from "@hono/node-server";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { send } from "../helpers/http.ts";
import { eventually, startTestStack, type TestStack } from "../helpers/stack.ts";

async function serve(fetch: Parameters<typeof getRequestListener>[0]): Promise<Server> {
  const server = createServer(getRequestListener(fetch));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  return server;
}
const portOf = (s: Server) => (s.address() as AddressInfo).port;

describe("operator view", () => {
  let stack: TestStack;
  let acme: Awaited<ReturnType<TestStack["tenant"]>>;
  let globex: Awaited<ReturnType<TestStack["tenant"]>>;
  let acmeKey: { id: string; key: string; prefix: string };
  let globexKey: { id: string; key: string; prefix: string };
  let globexSession = "";
  const alerts: { headers: IncomingMessage["headers"]; body: any }[] = [];
  let webhook: Server;
  const servers: Server[] = [];

  beforeAll(async () => {
    webhook = createServer((req, res) => {
      let body = "";
      req.on("data", (c) => (body += c));
      req.on("end", () => {
        alerts.push({ headers: req.headers, body: JSON.parse(body) });
        res.end();
      });
    });
    await new Promise<void>((r) => webhook.listen(0, "127.0.0.1", () => r()));
    stack = await startTestStack({
      audit: "stream",
      router: { alertWebhookUrl: `http://127.0.0.1:${portOf(webhook)}/alerts`, metricsTenantLabels: 1 },
    });
    acme = await stack.tenant("acme");
    globex = await stack.tenant("globex");
    acmeKey = (await stack.admin("POST", "/v1/tenants/acme/keys", { name: "ci" })).json();
    globexKey = (await stack.admin("POST", "/v1/tenants/globex/keys", {})).json();
    const user = (await stack.admin("POST", "/v1/tenants/globex/users", { email: "a@globex.example" })).json();
    globexSession = (await stack.admin("POST", `/v1/tenants/globex/users/${user.id}/sessions`)).json().token;
  });
  afterAll(async () => {
    await stack?.close();
    for (const s of [webhook, ...servers]) {
      s.closeAllConnections();
      await new Promise((r) => s.close(r));
    }
  });

  it("lists a tenant's events newest first with filters and a cursor, and platform-wide refusals without a tenant", async () => {
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push((await stack.request(acme.host, `/p/${i}`)).headers["x-request-id"] as string);
    const refused = (await stack.request("nobody.localhost")).headers["x-request-id"] as string;
    await stack.auditRows(refused);
    await stack.auditRows(ids[4] as string);

    const page1 = (await stack.admin("GET", "/v1/tenants/acme/audit?decision=allow&limit=2")).json();
    expect(page1.events).toHaveLength(2);
    expect(page1.events.map((e: any) => e.requestId)).toEqual([ids[4], ids[3]]);
    expect(page1.events[0]).toMatchObject({
      decision: "allow",
      reason: "allowed",
      host: acme.host,
      method: "GET",
      path: "/p/4",
      credential: "hostname",
      status: 200,
    });
    expect(typeof page1.next).toBe("string");
    const page2 = (await stack.admin("GET", `/v1/tenants/${acme.id}/audit?decision=allow&limit=2&cursor=${page1.next}`)).json();
    expect(page2.events.map((e: any) => e.requestId)).toEqual([ids[2], ids[1]]);

    const since = (
      await stack.admin("GET", `/v1/tenants/acme/audit?since=${encodeURIComponent(new Date(Date.now() + 60_000).toISOString())}`)
    ).json();
    expect(since.events).toEqual([]);
    expect(since.next).toBeUndefined();

    const platform = (await stack.admin("GET", "/v1/audit?decision=refuse&reason=unknown_host")).json();
    const mine = platform.events.find((e: any) => e.requestId === refused);
    expect(mine).toMatchObject({
      decision: "refuse",
      reason: "unknown_host",
      tenantId: null,
      host: "nobody.localhost",
      status: 404,
    });
    // A tenant's view never shows refusals that matched no tenant.
    const acmeView = (await stack.admin("GET", "/v1/tenants/acme/audit?limit=1000")).json();
    expect(acmeView.events.some((e: any) => e.requestId === refused)).toBe(false);

    for (const bad of ["decision=maybe", "limit=0", "limit=5000", "since=yesterday", "cursor=nonsense", "reason=DROP%20TABLE"]) {
      const res = await stack.admin("GET", `/v1/audit?${bad}`);
      expect(res.status, bad).toBe(400);
    }
    expect((await stack.admin("GET", "/v1/tenants/nobody/audit")).status).toBe(404);
    expect((await send(stack.adminPort, "127.0.0.1", "/v1/audit")).status).toBe(401);
  });

  it("records configuration changes with actor, before and after, and never a secret", async () => {
    const patched = await stack.admin("PATCH", "/v1/tenants/acme", { plan: "pro" });
    expect(patched.status).toBe(200);
    const changes = (await stack.admin("GET", "/v1/tenants/acme/changes?action=tenant.update")).json().changes;
    expect(changes).toHaveLength(1);
    expect(changes[0]).toMatchObject({ actor: "admin", action: "tenant.update", tenantId: acme.id });
    expect(changes[0].before.plan).toBe("free");
    expect(changes[0].after.plan).toBe("pro");
    expect(changes[0].requestId).toBe(patched.headers["x-request-id"]);

    const all = (await stack.admin("GET", "/v1/changes?limit=1000")).json().changes as any[];
    const actions = all.map((c) => c.action);
    for (const a of [
      "tenant.create",
      "database.bind",
      "upstreams.set",
      "key.create",
      "user.create",
      "session.create",
      "tenant.update",
    ]) {
      expect(actions).toContain(a);
    }
    const keyChange = all.find((c) => c.action === "key.create" && c.target === acmeKey.id);
    expect(keyChange.after).toMatchObject({ id: acmeKey.id, prefix: acmeKey.prefix, status: "active" });
    const text = JSON.stringify(all);
    for (const secret of [acmeKey.key, globexKey.key, globexSession]) expect(text.includes(secret)).toBe(false);

    // A refused change is not a change.
    expect((await stack.admin("PATCH", "/v1/tenants/acme", { plan: "nope" })).status).toBe(400);
    expect((await stack.admin("GET", "/v1/tenants/acme/changes?action=tenant.update")).json().changes).toHaveLength(1);

    // Revoking a key records its state before and after; the actor header names the operator.
    const { send: raw } = await import("../helpers/http.ts");
    const revoked = await raw(stack.adminPort, "127.0.0.1", `/v1/tenants/acme/keys/${acmeKey.id}`, {
      method: "DELETE",
      headers: { authorization: `Bearer ${stack.secrets.ADMIN_TOKEN}`, "x-portcullis-actor": "alice@example.com" },
    });
    expect(revoked.status).toBe(204);
    const rev = (await stack.admin("GET", "/v1/changes?action=key.revoke")).json().changes[0];
    expect(rev).toMatchObject({
      actor: "admin:alice@example.com",
      target: acmeKey.id,
      before: { status: "active" },
      after: { status: "revoked" },
    });
    acmeKey = (await stack.admin("POST", "/v1/tenants/acme/keys", {})).json();

    // A deleted tenant: its history stays readable by id, with the state before.
    const temp = (await stack.admin("POST", "/v1/tenants", { slug: "temp", name: "Temp" })).json();
    expect((await stack.admin("DELETE", "/v1/tenants/temp")).status).toBe(204);
    const gone = (await stack.admin("GET", `/v1/tenants/${temp.id}/changes?action=tenant.delete`)).json().changes;
    expect(gone).toHaveLength(1);
    expect(gone[0]).toMatchObject({ tenantId: temp.id, before: { slug: "temp" }, after: null });
  });

  it("explains a request without sending anything upstream", async () => {
    const contacts = stack.upstreamContacts;
    const explain = async (q: Record<string, string>) =>
      (await stack.admin("GET", `/v1/explain?${new URLSearchParams(q)}`)).json();

    expect(await explain({ host: "ACME.localhost" })).toMatchObject({
      decision: "allow",
      tenant: { id: acme.id, slug: "acme" },
      auth: "hostname",
      binding: acme.db,
      upstreams: [acme.upstream.url],
    });
    expect(await explain({ host: "nobody.localhost" })).toMatchObject({
      decision: "refuse",
      reason: "unknown_host",
      status: 404,
    });
    expect(await explain({ host: "api.localhost" })).toMatchObject({ decision: "refuse", reason: "key_missing", status: 401 });
    const byKey = await explain({ host: "api.localhost", key: globexKey.key });
    expect(byKey).toMatchObject({
      decision: "allow",
      tenant: { id: globex.id },
      auth: "api-key",
      keyId: globexKey.id,
      keyPrefix: globexKey.prefix,
    });
    expect(JSON.stringify(byKey).includes(globexKey.key)).toBe(false);
    expect(await explain({ host: acme.host, key: globexKey.prefix })).toMatchObject({
      decision: "refuse",
      reason: "key_other_tenant",
      tenantId: acme.id,
    });
    expect(await explain({ host: acme.host, session: globexSession })).toMatchObject({
      decision: "refuse",
      reason: "session_other_tenant",
    });
    expect(await explain({ host: globex.host, session: globexSession })).toMatchObject({ decision: "allow", auth: "session" });
    expect(await explain({ host: "api.localhost", key: "pck_nothing" })).toMatchObject({
      decision: "refuse",
      reason: "key_malformed",
    });

    await stack.admin("PATCH", "/v1/tenants/globex", { settings: { allowedIps: ["10.0.0.0/8"] } });
    expect(await explain({ host: globex.host })).toMatchObject({ decision: "allow", allowedIps: ["10.0.0.0/8"] });
    expect(await explain({ host: globex.host, ip: "192.0.2.1" })).toMatchObject({ decision: "refuse", reason: "ip_not_allowed" });
    expect(await explain({ host: globex.host, ip: "10.1.2.3" })).toMatchObject({ decision: "allow" });
    await stack.admin("PATCH", "/v1/tenants/globex", { settings: { allowedIps: [] } });

    expect((await stack.admin("GET", "/v1/explain")).status).toBe(400);
    expect(stack.upstreamContacts).toBe(contacts);
  });

  it("counts cross-tenant attempts for both tenants and alerts the webhook at most once per window", async () => {
    const contacts = stack.upstreamContacts;
    for (let i = 0; i < 3; i++) {
      const res = await stack.request(acme.host, "/", { headers: { authorization: `Bearer ${globexKey.key}` } });
      expect(res.status).toBe(401);
    }
    const s = await stack.request(acme.host, "/", { headers: { cookie: `portcullis_session=${globexSession}` } });
    expect(s.status).toBe(401);
    expect(stack.upstreamContacts).toBe(contacts);

    await eventually(() => alerts.length >= 2, 5_000);
    await stack.router.security.flush();
    const keyAlerts = alerts.filter((a) => a.body.reason === "key_other_tenant");
    expect(keyAlerts).toHaveLength(1);
    expect(keyAlerts[0]?.body).toMatchObject({
      type: "cross_tenant_attempt",
      tenantId: acme.id,
      credentialTenantId: globex.id,
      keyId: globexKey.id,
      host: acme.host,
    });
    expect(alerts.filter((a) => a.body.reason === "session_other_tenant")).toHaveLength(1);
    expect(JSON.stringify(alerts).includes(globexKey.key)).toBe(false);
    expect(JSON.stringify(alerts).includes(globexSession)).toBe(false);

    const metrics = (await send(stack.router.opsPort, "127.0.0.1", "/metrics")).text;
    // metricsTenantLabels is 1 here: acme (seen first) keeps its id, globex is `other`.
    expect(metrics).toContain(
      `portcullis_cross_tenant_attempts_total{reason="key_other_tenant",tenant="${acme.id}",side="target"} 3`,
    );
    expect(metrics).toContain(
      `portcullis_cross_tenant_attempts_total{reason="key_other_tenant",tenant="other",side="credential"} 3`,
    );
    expect(metrics).toMatch(/portcullis_security_alerts_total\{outcome="suppressed"\} 2/);
    expect(metrics.includes(`tenant="${globex.id}"`)).toBe(false);
  });

  it("serves /metrics with the listed families on the router, control plane and key service ops listeners", async () => {
    await stack.request(acme.host);
    // A host no tier has seen: the router asks the key service.
    expect((await stack.request("never-seen.localhost")).status).toBe(404);
    const router = (await send(stack.router.opsPort, "127.0.0.1", "/metrics")).text;
    for (const family of [
      "portcullis_decisions_total",
      "portcullis_tenant_decisions_total",
      "portcullis_router_added_seconds_bucket",
      "portcullis_upstream_seconds_bucket",
      "portcullis_cache_lookups_total",
      "portcullis_key_service_client_seconds_bucket",
      "portcullis_upstream_errors_total",
      "portcullis_open_connections",
      "portcullis_router_nodejs_eventloop_lag_seconds",
      "portcullis_audit_queue_depth",
      "portcullis_audit_dropped_total",
      "portcullis_requests_in_flight",
    ]) {
      expect(router, family).toContain(family);
    }
    expect(router).toMatch(/portcullis_decisions_total\{decision="allow",reason="allowed"\} \d+/);
    expect(router).toMatch(/portcullis_open_connections\{side="upstream"\} [1-9]/);

    const cpOps = await serve(stack.cp.ops.fetch);
    const ksOps = await serve(stack.cp.keyServiceOps.fetch);
    servers.push(cpOps, ksOps);
    await eventually(
      async () => /portcullis_audit_events_written_total [1-9]/.test((await send(portOf(cpOps), "127.0.0.1", "/metrics")).text),
      5_000,
    );
    const cp = (await send(portOf(cpOps), "127.0.0.1", "/metrics")).text;
    for (const family of [
      "portcullis_audit_events_written_total",
      "portcullis_audit_stream_backlog",
      "portcullis_audit_write_failures_total",
      "portcullis_admin_request_seconds_bucket",
      "portcullis_admin_changes_total",
      "portcullis_audit_chain_head_seq",
      "portcullis_control_plane_nodejs_eventloop_lag_seconds",
    ]) {
      expect(cp, family).toContain(family);
    }
    const ks = (await send(portOf(ksOps), "127.0.0.1", "/metrics")).text;
    expect(ks).toMatch(/portcullis_key_service_request_seconds_bucket\{le="[^"]+",route="resolve_host",status="200"\}/);
    expect(ks).toContain("portcullis_key_service_nodejs_eventloop_lag_seconds");
  });

  it("propagates W3C traceparent to the upstream: same trace id, new parent id; a new trace when absent or invalid", async () => {
    const incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    await stack.request(acme.host, "/", { headers: { traceparent: incoming, tracestate: "vendor=1" } });
    const seen = acme.upstream.requests.at(-1)!;
    const tp = seen.headers.traceparent as string;
    expect(tp).toMatch(/^00-4bf92f3577b34da6a3ce929d0e0e4736-[0-9a-f]{16}-01$/);
    expect(tp).not.toBe(incoming);
    expect(seen.headers.tracestate).toBe("vendor=1");
    const cases: Record<string, string>[] = [
      {},
      { traceparent: "00-00000000000000000000000000000000-00f067aa0ba902b7-01" },
      { traceparent: "garbage" },
    ];
    for (const headers of cases) {
      await stack.request(acme.host, "/", { headers });
      const fresh = acme.upstream.requests.at(-1)!.headers.traceparent as string;
      expect(fresh).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/);
      expect(fresh.slice(3, 35)).not.toBe("0".repeat(32));
    }
  });
});
