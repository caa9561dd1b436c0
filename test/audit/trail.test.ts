/**
 * The audit trail end to end, on the product path: router → Redis stream → the
 * control plane's consumer → Postgres (`audit_events`). Every refusal path of the
 * router leaves exactly one row findable by its request id, with its stable reason;
 * keys, session tokens and query strings never reach the trail or the logs.
 */
import { Writable } from "node:stream";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateApiKey } from "@portcullis/shared";
import { raw, statuses } from "../helpers/http.ts";
import { eventually, startTestStack, type TestStack } from "../helpers/stack.ts";

/** Collects every log line a pino logger writes. */
function capture() {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk, _enc, cb) {
      lines.push(String(chunk));
      cb();
    },
  });
  return { lines, log: pino({ level: "trace" }, stream) };
}

function requestIdOf(rawText: string): string {
  return /x-request-id: (\S+)/i.exec(rawText)?.[1] ?? "";
}

describe("audit trail through the Redis stream into Postgres", () => {
  let stack: TestStack;
  let acme: Awaited<ReturnType<TestStack["tenant"]>>;
  let globex: Awaited<ReturnType<TestStack["tenant"]>>;
  const cpLog = capture();
  const routerLog = capture();
  const secrets: string[] = [];
  let acmeKey = "";
  let globexKey = "";
  let globexSession = "";
  let acmeSession = "";

  beforeAll(async () => {
    stack = await startTestStack({ audit: "stream", log: cpLog.log });
    // A router whose every log line (trace level) is captured.
    await stack.routers[0]?.close();
    stack.routers = [];
    await stack.addRouter({}, { log: routerLog.log });
    acme = await stack.tenant("acme");
    globex = await stack.tenant("globex");
    for (const t of ["acme", "globex"]) {
      const k = await stack.admin("POST", `/v1/tenants/${t}/keys`, { name: "k" });
      const user = await stack.admin("POST", `/v1/tenants/${t}/users`, { email: `u@${t}.example` });
      const s = await stack.admin("POST", `/v1/tenants/${t}/users/${user.json().id}/sessions`);
      if (t === "acme") {
        acmeKey = k.json().key;
        acmeSession = s.json().token;
      } else {
        globexKey = k.json().key;
        globexSession = s.json().token;
      }
    }
    secrets.push(acmeKey, globexKey, acmeSession, globexSession);
  });
  afterAll(async () => {
    await stack?.close();
  });

  async function expectOneRow(requestId: string, reason: string, status: number) {
    expect(requestId).toMatch(/^req_/);
    const rows = await stack.auditRows(requestId);
    expect(rows, `${reason} ${requestId}`).toHaveLength(1);
    expect(rows[0]?.reason).toBe(reason);
    expect(rows[0]?.status).toBe(status);
    return rows[0];
  }

  it("records an allowed request once, with its tenant, credential and path without the query", async () => {
    const res = await stack.request(acme.host, "/orders?token=secret-in-query", {
      headers: { cookie: `portcullis_session=${acmeSession}` },
    });
    expect(res.status).toBe(200);
    const row = await expectOneRow(res.headers["x-request-id"] as string, "allowed", 200);
    expect(row?.decision).toBe("allow");
    expect(row?.tenantId).toBe(acme.id);
    expect(row?.credential).toBe("session");
    expect(row?.userId).toMatch(/^usr_/);
    expect(row?.path).toBe("/orders");
  });

  it("every refusal path of the router writes exactly one event, and none reaches an upstream", async () => {
    // Tenants in each refusing state.
    const sus = await stack.tenant("suspended");
    await stack.admin("PATCH", "/v1/tenants/suspended", { status: "suspended" });
    const unbound = await stack.tenant("unbound", { bind: false });
    const walled = await stack.tenant("walled");
    await stack.admin("PATCH", "/v1/tenants/walled", { settings: { allowedIps: ["10.9.8.0/24"] } });
    const small = await stack.tenant("small");
    await stack.admin("PATCH", "/v1/tenants/small", { limits: { maxBodyBytes: 10 } });
    await stack.tenant("noapi");
    await stack.admin("PATCH", "/v1/tenants/noapi", { features: { apiAccess: false } });
    const noApiKey = (await stack.admin("POST", "/v1/tenants/noapi/keys", {})).json().key as string;
    await stack.admin("POST", "/v1/tenants", { slug: "bare", name: "Bare" });
    await stack.admin("PUT", "/v1/tenants/bare/database", { server: "pg-bare.internal:5432", database: "bare" });
    const revoked = (await stack.admin("POST", "/v1/tenants/acme/keys", {})).json() as { id: string; key: string };
    await stack.admin("DELETE", `/v1/tenants/acme/keys/${revoked.id}`);
    await stack.cp.publisher.flush();
    await eventually(async () => (await stack.request(sus.host)).status === 403, 2_000);
    await eventually(async () => (await stack.request(walled.host)).status === 403, 2_000);
    const contacts = stack.upstreamContacts;
    const api = "api.localhost";
    const bearer = (k: string) => ({ authorization: `Bearer ${k}` });
    const unknownKey = generateApiKey().key;

    const cases: { name: string; reason: string; status: number; send: () => Promise<string> }[] = [
      {
        name: "unknown host",
        reason: "unknown_host",
        status: 404,
        send: async () => id(await stack.request("nobody.localhost")),
      },
      { name: "no key on the API host", reason: "key_missing", status: 401, send: async () => id(await stack.request(api)) },
      {
        name: "malformed key",
        reason: "key_malformed",
        status: 401,
        send: async () => id(await stack.request(api, "/", { headers: bearer("pck_short") })),
      },
      {
        name: "unknown key",
        reason: "key_unknown",
        status: 401,
        send: async () => id(await stack.request(api, "/", { headers: bearer(unknownKey) })),
      },
      {
        name: "revoked key",
        reason: "key_revoked",
        status: 401,
        send: async () => id(await stack.request(api, "/", { headers: bearer(revoked.key) })),
      },
      {
        name: "another tenant's key",
        reason: "key_other_tenant",
        status: 401,
        send: async () => id(await stack.request(acme.host, "/", { headers: bearer(globexKey) })),
      },
      {
        name: "API access off",
        reason: "api_access_disabled",
        status: 403,
        send: async () => id(await stack.request(api, "/", { headers: bearer(noApiKey) })),
      },
      {
        name: "key in the query",
        reason: "key_in_query",
        status: 400,
        send: async () => id(await stack.request(acme.host, `/?k=${acmeKey}`)),
      },
      {
        name: "two different keys",
        reason: "ambiguous_credentials",
        status: 400,
        send: async () => id(await stack.request(api, "/", { headers: { ...bearer(acmeKey), "x-api-key": globexKey } })),
      },
      {
        name: "forged session",
        reason: "session_invalid",
        status: 401,
        send: async () =>
          id(await stack.request(acme.host, "/", { headers: { cookie: `portcullis_session=${acmeSession.slice(0, -2)}xx` } })),
      },
      {
        name: "another tenant's session",
        reason: "session_other_tenant",
        status: 401,
        send: async () => id(await stack.request(acme.host, "/", { headers: { cookie: `portcullis_session=${globexSession}` } })),
      },
      { name: "suspended tenant", reason: "tenant_suspended", status: 403, send: async () => id(await stack.request(sus.host)) },
      {
        name: "no database binding",
        reason: "binding_missing",
        status: 503,
        send: async () => id(await stack.request(unbound.host)),
      },
      { name: "no upstream", reason: "no_upstream", status: 503, send: async () => id(await stack.request("bare.localhost")) },
      {
        name: "IP outside the allowlist",
        reason: "ip_not_allowed",
        status: 403,
        send: async () => id(await stack.request(walled.host)),
      },
      {
        name: "declared body too large",
        reason: "body_too_large",
        status: 413,
        send: async () => id(await stack.request(small.host, "/", { method: "POST", body: "x".repeat(100) })),
      },
      // The guard, on raw bytes.
      {
        name: "duplicate Host",
        reason: "duplicate_host",
        status: 400,
        send: () => rawId(`GET / HTTP/1.1\r\nHost: ${acme.host}\r\nHost: ${globex.host}\r\n\r\n`),
      },
      { name: "HTTP/1.0 without Host", reason: "missing_host", status: 400, send: () => rawId("GET / HTTP/1.0\r\n\r\n") },
      {
        name: "invalid Host",
        reason: "invalid_host",
        status: 400,
        send: () => rawId("GET / HTTP/1.1\r\nHost: a b.localhost\r\n\r\n"),
      },
      {
        name: "absolute-form naming another host",
        reason: "absolute_form_mismatch",
        status: 400,
        send: () => rawId(`GET http://${globex.host}/ HTTP/1.1\r\nHost: ${acme.host}\r\n\r\n`),
      },
      {
        name: "invalid target",
        reason: "invalid_target",
        status: 400,
        send: () => rawId(`GET //evil HTTP/1.1\r\nHost: ${acme.host}\r\n\r\n`),
      },
      {
        name: "Transfer-Encoding that is not chunked",
        reason: "conflicting_framing",
        status: 400,
        send: () => rawId(`POST / HTTP/1.1\r\nHost: ${acme.host}\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n`),
      },
      {
        name: "unknown method",
        reason: "method_not_allowed",
        status: 405,
        send: () => rawId(`PROPFIND / HTTP/1.1\r\nHost: ${acme.host}\r\n\r\n`),
      },
      {
        name: "too many header fields",
        reason: "headers_too_large",
        status: 431,
        send: () =>
          rawId(
            `GET / HTTP/1.1\r\nHost: ${acme.host}\r\n${Array.from({ length: 120 }, (_, i) => `x-h${i}: 1\r\n`).join("")}\r\n`,
          ),
      },
      {
        name: "unparseable request",
        reason: "malformed_request",
        status: 400,
        send: () => rawId("GET / HTTP/1.1\r\nHost acme\r\n\r\n"),
      },
      {
        name: "protocol upgrade",
        reason: "upgrade_not_supported",
        status: 501,
        send: () => rawId(`GET / HTTP/1.1\r\nHost: ${acme.host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n`),
      },
    ];
    function id(res: { headers: Record<string, unknown> }): string {
      return res.headers["x-request-id"] as string;
    }
    async function rawId(bytes: string): Promise<string> {
      const out = await raw(stack.port, bytes);
      expect(statuses(out).length, bytes).toBe(1);
      return requestIdOf(out);
    }
    for (const c of cases) {
      const requestId = await c.send();
      const row = await expectOneRow(requestId, c.reason, c.status);
      expect(row?.decision, c.name).toBe("refuse");
    }
    expect(stack.upstreamContacts).toBe(contacts);

    // Resolution unavailable: the key service is down and the host was never cached.
    await stack.stopKeyService();
    try {
      const res = await stack.request("never-seen.localhost");
      expect(res.status).toBe(503);
      await expectOneRow(id(res), "resolution_unavailable", 503);
    } finally {
      await stack.startKeyService();
    }
    expect(stack.upstreamContacts).toBe(contacts);
  });

  it("records an upstream failure as an allow with reason upstream_error", async () => {
    const dead = await stack.tenant("dead");
    await dead.upstream.close();
    const res = await stack.request(dead.host);
    expect(res.status).toBe(502);
    const row = await expectOneRow(res.headers["x-request-id"] as string, "upstream_error", 502);
    expect(row?.decision).toBe("allow");
  });

  it("never writes a key, a session token or a query string into events, changes or logs", async () => {
    await stack.request("api.localhost", `/orders?q=${encodeURIComponent("hidden-query")}`, {
      headers: { authorization: `Bearer ${acmeKey}` },
    });
    await stack.request(acme.host, "/", { headers: { authorization: `Bearer ${globexKey}` } });
    await stack.request(acme.host, "/", { headers: { cookie: `portcullis_session=${globexSession}` } });
    const last = await stack.request(acme.host, "/", { headers: { "x-api-key": acmeKey } });
    await stack.auditRows(last.headers["x-request-id"] as string);
    const { auditEvents, adminChanges } = (await import("@portcullis/control-plane")).schema;
    const events = JSON.stringify(await stack.cp.database.db.select().from(auditEvents));
    const changes = JSON.stringify(await stack.cp.database.db.select().from(adminChanges));
    const audit = (await stack.admin("GET", "/v1/audit?limit=1000")).text;
    const logs = cpLog.lines.join("") + routerLog.lines.join("");
    expect(cpLog.lines.some((l) => l.includes("admin request"))).toBe(true);
    expect(events).toContain(acme.id);
    expect(changes).toContain("key.create");
    expect(changes).toContain("session.create");
    for (const secret of secrets) {
      expect(secret.length).toBeGreaterThan(20);
      for (const [name, text] of Object.entries({ events, changes, audit, logs })) {
        expect(text.includes(secret), `${name} holds a secret`).toBe(false);
        // Not even the random part of a key or the MAC of a session.
        expect(text.includes(secret.slice(12, 30)), `${name} holds part of a secret`).toBe(false);
      }
    }
    expect(events.includes("hidden-query")).toBe(false);
  });
});
