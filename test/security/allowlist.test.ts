/**
 * IP allowlists in both address families, with the client address taken from the
 * socket — and from X-Forwarded-For only when the socket's peer is a configured
 * trusted proxy. Routers listen on "::" (dual stack: IPv4 clients appear as
 * ::ffff:a.b.c.d), on "::1" and on "127.0.0.1"; clients connect from 127.0.0.1 and ::1.
 */
import { request } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { RunningRouter } from "@portcullis/router";
import { raw, statuses } from "../helpers/http.ts";
import { eventually, startTestStack, type TestStack } from "../helpers/stack.ts";

type Tenant = Awaited<ReturnType<TestStack["tenant"]>>;

async function from(
  family: 4 | 6,
  router: RunningRouter,
  host: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: any; requestId: string }> {
  const address = family === 4 ? "127.0.0.1" : "[::1]";
  const res = await request(`http://${address}:${router.port}/`, { headers: { host, ...headers } });
  const text = await res.body.text();
  return { status: res.statusCode, body: JSON.parse(text), requestId: String(res.headers["x-request-id"]) };
}

describe("IP allowlists and trusted proxies (real Redis, real Postgres)", () => {
  let stack: TestStack;
  let dual: RunningRouter;
  let proxied: RunningRouter;
  let t: Tenant;

  beforeAll(async () => {
    stack = await startTestStack({ backend: "real", routers: 0 });
    proxied = await stack.addRouter({ host: "::", trustedProxies: ["127.0.0.1", "::1/128"] });
    // Added last, so stack.audit is this router's trail.
    dual = await stack.addRouter({ host: "::" });
    t = await stack.tenant("walled");
  });
  afterAll(async () => {
    await stack?.close();
  });

  async function allow(cidrs: string[]) {
    const res = await stack.admin("PATCH", "/v1/tenants/walled", { settings: { allowedIps: cidrs } });
    expect(res.status, res.text).toBe(200);
    await stack.cp.publisher.flush();
  }

  async function expectRefused(family: 4 | 6, router: RunningRouter, headers: Record<string, string> = {}, clientIp?: string) {
    const contacts = stack.upstreamContacts;
    const res = await from(family, router, t.host, headers);
    expect(res.status).toBe(403);
    expect(res.body.error.code).toBe("ip_not_allowed");
    expect(stack.upstreamContacts).toBe(contacts);
    // The audit trail the stack exposes is the dual-stack router's.
    if (router === dual) {
      const events = await stack.auditFor(res.requestId);
      expect(events[0]?.reason).toBe("ip_not_allowed");
      if (clientIp) expect(events[0]?.clientIp).toBe(clientIp);
    }
  }

  it("admits everyone while the allowlist is empty, over both families", async () => {
    expect((await from(4, dual, t.host)).status).toBe(200);
    expect((await from(6, dual, t.host)).status).toBe(200);
  });

  it("an IPv6 allowlist admits IPv6 clients and refuses IPv4 clients", async () => {
    await allow(["::1/128"]);
    await eventually(async () => (await from(4, dual, t.host)).status === 403, 1_000);
    expect((await from(6, dual, t.host)).status).toBe(200);
    await expectRefused(4, dual, {}, "::ffff:127.0.0.1");
  });

  it("an IPv4 allowlist admits IPv4 clients on a dual-stack socket (::ffff:) and refuses IPv6 clients", async () => {
    await allow(["127.0.0.0/8"]);
    await eventually(async () => (await from(4, dual, t.host)).status === 200, 1_000);
    await expectRefused(6, dual, {}, "::1");
  });

  it("ranges that miss refuse both families; a list naming both admits both", async () => {
    await allow(["10.0.0.0/8", "2001:db8::/32"]);
    await eventually(async () => (await from(4, dual, t.host)).status === 403, 1_000);
    await expectRefused(4, dual);
    await expectRefused(6, dual);
    await allow(["127.0.0.1", "::1"]);
    await eventually(async () => (await from(4, dual, t.host)).status === 200, 1_000);
    expect((await from(6, dual, t.host)).status).toBe(200);
  });

  it("a client's X-Forwarded-For is ignored unless its socket peer is a trusted proxy", async () => {
    await allow(["203.0.113.0/24"]);
    await eventually(async () => (await from(4, dual, t.host)).status === 403, 1_000);
    // No trusted proxies on this router: the header cannot buy access.
    await expectRefused(4, dual, { "x-forwarded-for": "203.0.113.7" }, "::ffff:127.0.0.1");
    await expectRefused(6, dual, { "x-forwarded-for": "203.0.113.7" }, "::1");
  });

  it("through a trusted proxy (IPv4 or IPv6 peer), the right-most untrusted X-Forwarded-For hop is the client", async () => {
    await allow(["203.0.113.0/24", "2001:db8::/32"]);
    await eventually(async () => (await from(4, proxied, t.host, { "x-forwarded-for": "2001:db8::5" })).status === 200, 1_000);
    for (const family of [4, 6] as const) {
      const ok = await from(family, proxied, t.host, { "x-forwarded-for": "203.0.113.7" });
      expect(ok.status).toBe(200);
      expect(t.upstream.requests.at(-1)?.headers["x-forwarded-for"]).toBe("203.0.113.7");
      // Hops added by trusted proxies are skipped; a spoofed left-most entry is not believed.
      expect((await from(family, proxied, t.host, { "x-forwarded-for": "203.0.113.7, 127.0.0.1, ::1" })).status).toBe(200);
      await expectRefused(family, proxied, { "x-forwarded-for": "203.0.113.7, 198.51.100.9" });
      // Without the header the proxy itself is the client, and it is not on the list.
      await expectRefused(family, proxied);
      // An IPv6 client behind the proxy.
      expect((await from(family, proxied, t.host, { "x-forwarded-for": "2001:db8::5" })).status).toBe(200);
      expect(t.upstream.requests.at(-1)?.headers["x-forwarded-for"]).toBe("2001:db8::5");
      // Garbage in the header: the proxy's own address is used (and refused).
      await expectRefused(family, proxied, { "x-forwarded-for": "not-an-ip" });
    }
  });
  it("raw bytes: split or repeated X-Forwarded-For headers cannot smuggle an allowed address past a trusted proxy", async () => {
    await allow(["203.0.113.0/24"]);
    await eventually(async () => (await from(4, proxied, t.host, { "x-forwarded-for": "203.0.113.7" })).status === 200, 1_000);
    const contacts = stack.upstreamContacts;
    const attempts = [
      // Repeated headers are one list (RFC 9110 §5.3): the right-most hop is the client.
      `X-Forwarded-For: 203.0.113.7\r\nX-Forwarded-For: 198.51.100.9\r\n`,
      `X-Forwarded-For: 203.0.113.7, 198.51.100.9\r\n`,
      `X-Forwarded-For: 198.51.100.9 203.0.113.7\r\n`,
      `X-Forwarded-For: [203.0.113.7]\r\n`,
      `X-Forwarded-For: 203.0.113.7:443\r\n`,
    ];
    for (const extra of attempts) {
      const out = await raw(proxied.port, `GET / HTTP/1.1\r\nHost: ${t.host}\r\n${extra}Connection: close\r\n\r\n`);
      expect(statuses(out), extra).toEqual([403]);
      expect(out).toContain('"code":"ip_not_allowed"');
    }
    expect(stack.upstreamContacts).toBe(contacts);
  });

  // Last: adding routers moves stack.audit to the newest router's trail.
  it("routers bound to one family apply the same list", async () => {
    const v6only = await stack.addRouter({ host: "::1" });
    const v4only = await stack.addRouter({ host: "127.0.0.1" });
    try {
      await allow(["::1/128"]);
      await eventually(async () => (await from(4, v4only, t.host)).status === 403, 1_000);
      expect((await from(6, v6only, t.host)).status).toBe(200);
      await allow(["127.0.0.1/32"]);
      await eventually(async () => (await from(4, v4only, t.host)).status === 200, 1_000);
      expect((await from(6, v6only, t.host)).status).toBe(403);
    } finally {
      for (const r of [v6only, v4only]) {
        await r.close();
        stack.routers.splice(stack.routers.indexOf(r), 1);
      }
    }
  });
});
