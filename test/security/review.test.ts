/**
 * Findings of an adversarial review of the request path, each pinned by an attack:
 * an API key spelled so the edge did not see it reached another tenant's upstream
 * instead of being refused; an absolute-form target with an upper-case scheme was
 * answered outside the decision (no audit event, no refusal body); a request with
 * `Expect: 100-continue` (curl's default for large bodies) never reached the upstream.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RedisStore } from "@portcullis/shared";
import { TEST_REDIS_URL } from "../helpers/env.ts";
import { eventually, propagatesWithin, startTestStack, type TestStack } from "../helpers/stack.ts";
import { TcpProxy } from "../helpers/tcp-proxy.ts";
import { exchange, expectRefused, type Guarded, type GuardedTenant, guardedTenant, parseResponses, req } from "./lib.ts";

const A = "acme.localhost";

describe("review findings", () => {
  let stack: TestStack;
  let acme: GuardedTenant;
  let globex: GuardedTenant;
  let g: Guarded;
  let globexKey = "";

  beforeAll(async () => {
    stack = await startTestStack();
    acme = await guardedTenant(stack, "acme");
    globex = await guardedTenant(stack, "globex");
    g = { stack, sentinels: [acme.sentinel, globex.sentinel] };
    globexKey = (await stack.admin("POST", "/v1/tenants/globex/keys", { name: "k" })).json().key;
    await stack.cp.publisher.flush();
  });
  afterAll(async () => {
    await stack?.close();
    await acme?.sentinel.close();
    await globex?.sentinel.close();
  });

  // RFC 9110 §11.6.2 allows only SP after the scheme, but app servers split on any
  // whitespace (Python's str.split() also on NBSP) and accept a bare token: to them
  // each of these is globex's key, so on acme's hostname it must be refused, never forwarded.
  for (const [name, value] of [
    ["a tab after Bearer", () => `Bearer\t${globexKey}`],
    ["a no-break space after Bearer", () => `Bearer\xa0${globexKey}`],
    ["no scheme at all", () => globexKey],
  ] as const) {
    it(`globex's key in Authorization with ${name} on acme's hostname is refused, not forwarded — contract rules 2–3`, async () => {
      await expectRefused(g, {
        name,
        source: "contract rule 3",
        bytes: Buffer.from(req("GET / HTTP/1.1", `Host: ${A}`, `Authorization: ${value()}`), "latin1"),
        status: 401,
        reason: "key_other_tenant",
      });
      expect(acme.sentinel.requests.some((r) => JSON.stringify(r.headers).includes("pck_"))).toBe(false);
    });
  }

  it("an app's own bearer token still passes through on a tenant hostname (control)", async () => {
    const before = acme.sentinel.requests.length;
    const ex = await exchange(
      stack.port,
      req("GET /jwt HTTP/1.1", `Host: ${A}`, "Authorization: Bearer eyJhbGciOi.x.y", "Connection: close"),
    );
    expect(ex.responses.map((r) => r.status)).toEqual([200]);
    expect(acme.sentinel.requests.slice(before).map((r) => r.headers.authorization)).toEqual(["Bearer eyJhbGciOi.x.y"]);
  });

  it("an absolute-form target with an upper-case scheme is decided and audited like any request — RFC 9110 §4.2.3 (scheme is case-insensitive)", async () => {
    const before = acme.sentinel.requests.length;
    const ex = await exchange(stack.port, req("GET HTTP://acme.localhost/abs?q=1 HTTP/1.1", `Host: ${A}`, "Connection: close"));
    expect(ex.responses.map((r) => r.status)).toEqual([200]);
    const requestId = ex.responses[0]!.headers["x-request-id"] as string;
    expect(requestId).toMatch(/^req_/);
    const events = await stack.auditFor(requestId);
    expect(events.map((e) => [e.decision, e.reason, e.tenantId])).toEqual([["allow", "allowed", acme.id]]);
    expect(acme.sentinel.requests.slice(before).map((r) => r.url)).toEqual(["/abs?q=1"]);
  });

  it("an upper-case scheme naming another tenant's host is refused — contract rule 8", async () => {
    await expectRefused(g, {
      name: "absolute-form HTTP:// naming globex on acme's Host",
      source: "contract rule 8",
      bytes: req("GET HTTP://globex.localhost/ HTTP/1.1", `Host: ${A}`),
      status: 400,
      reason: "absolute_form_mismatch",
    });
  });

  it("a rate-limit refusal with an unread body closes the connection instead of reading the body — RFC 9112 §9.6", async () => {
    const limited = await guardedTenant(stack, "limited", { limits: { requestsPerSecond: 0.001, burst: 1 } });
    try {
      const first = await exchange(stack.port, req("GET / HTTP/1.1", "Host: limited.localhost", "Connection: close"));
      expect(first.responses.map((r) => r.status)).toEqual([200]);
      // 1 MB declared, 10 bytes sent: the refusal must not wait for (or read) the rest.
      const { exchange: ex } = await expectRefused(
        { stack, sentinels: [acme.sentinel, globex.sentinel, limited.sentinel] },
        {
          name: "rate-limited POST with an unread body",
          source: "RFC 9112 §9.6",
          bytes: "POST /upload HTTP/1.1\r\nHost: limited.localhost\r\nContent-Length: 1000000\r\n\r\n0123456789",
          status: 429,
          reason: "rate_limited",
          close: true,
          options: { timeoutMs: 3_000 },
        },
      );
      expect(ex.responses[0]!.headers["retry-after"]).toBeDefined();
    } finally {
      await limited.sentinel.close();
    }
  });

  it("a body sent after Expect: 100-continue reaches the upstream — RFC 9110 §10.1.1", async () => {
    const before = acme.sentinel.requests.length;
    const ex = await exchange(
      stack.port,
      `POST /upload HTTP/1.1\r\nHost: ${A}\r\nExpect: 100-continue\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello`,
    );
    // The interim 100 (Node's own answer to the expectation) has no body; the final answer follows it.
    expect(ex.raw.startsWith("HTTP/1.1 100 Continue\r\n\r\n"), ex.raw.slice(0, 200)).toBe(true);
    const final = parseResponses(ex.raw.slice("HTTP/1.1 100 Continue\r\n\r\n".length));
    expect(final.map((r) => r.status)).toEqual([200]);
    const got = acme.sentinel.requests.slice(before);
    expect(got.map((r) => r.url)).toEqual(["/upload"]);
    expect(got[0]!.headers.expect).toBeUndefined();
  });
});

describe("review findings: invalidations after Redis was down when a router started", () => {
  let stack: TestStack;
  let relay: TcpProxy;
  let store: RedisStore;

  beforeAll(async () => {
    stack = await startTestStack();
    await stack.tenant("acme");
    const url = new URL(TEST_REDIS_URL);
    relay = new TcpProxy(url.hostname, Number(url.port || 6379));
  });
  afterAll(async () => {
    await store?.close();
    await relay?.stop();
    await stack?.close();
  });

  it("a router that started while Redis was unreachable still receives revocations once Redis is back — contract: revoked keys stop at once", async () => {
    // Redis down at start: the router comes up (it waits for its subscription a while, then goes on).
    await relay.start();
    await relay.stop();
    store = new RedisStore({ url: `redis://127.0.0.1:${relay.port}`, prefix: stack.prefix });
    const router = await stack.addRouter({}, { store });
    // Redis is back; the router resolves through it again.
    await relay.start(relay.port);
    const k = (await stack.admin("POST", "/v1/tenants/acme/keys", { name: "late" })).json();
    await stack.cp.publisher.flush();
    const call = () => stack.request("api.localhost", "/", { headers: { authorization: `Bearer ${k.key}` } }, router);
    await eventually(async () => (await call()).status === 200, 10_000, 50);
    // Give the router's subscription time to be made again after the reconnect.
    await eventually(async () => (await store.ping()) === true, 5_000, 50);
    await new Promise((r) => setTimeout(r, 1_500));
    expect((await call()).status).toBe(200);

    expect((await stack.admin("DELETE", `/v1/tenants/acme/keys/${k.id}`)).status).toBe(204);
    expect(await propagatesWithin(async () => (await call()).status === 401, 1_000)).toBeLessThan(1_000);
  }, 90_000);
});
