/**
 * The key service as the router sees it, through a real HTTP server the test controls
 * (port 0): down, slow (answers after the router's timeout), or lying (another
 * tenant, two tenants in one answer, another binding). An uncached key is never
 * allowed without a trustworthy answer; cached positives live only within the
 * declared staleness and never past a revocation the router has seen. Also: the
 * router sends only a key's hash, refusals of invented keys are cheap and bounded,
 * and last use is reported in batches.
 */
import { createServer } from "node:http";
import { connect } from "node:net";
import { getRequestListener } from "@hono/node-server";
import pino from "pino";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { createKeyServiceApp } from "@portcullis/control-plane";
import { CACHE, generateApiKey, hashApiKey, type TenantEntry } from "@portcullis/shared";
import type { RunningRouter } from "@portcullis/router";
import { ControlledStore } from "../helpers/controlled-store.ts";
import { closedPort, FakeKeyService, type SeenCall } from "../helpers/fake-key-service.ts";
import { createTestStore } from "../helpers/redis.ts";
import { eventually, SECRETS, startTestStack, type TestStack, propagatesWithin } from "../helpers/stack.ts";

const API = "api.localhost";
const VERIFY = "/v1/keys/verify";
/** The router's key-service timeout in the "slow" case (its answers come 4× later). */
const TIMEOUT_MS = 300;

describe("routers against a key service that is down, slow or lying (real Redis, real Postgres)", () => {
  let stack: TestStack;
  let acme: Awaited<ReturnType<TestStack["tenant"]>>;
  let globex: Awaited<ReturnType<TestStack["tenant"]>>;
  let acmeEntry: TenantEntry;
  let globexEntry: TenantEntry;
  const cleanup: (() => Promise<void>)[] = [];

  async function createKey(tenant: string) {
    const res = await stack.admin("POST", `/v1/tenants/${tenant}/keys`, {});
    expect(res.status).toBe(201);
    await stack.cp.publisher.flush();
    return res.json() as { id: string; key: string };
  }

  async function fake(answer?: (call: SeenCall) => ReturnType<NonNullable<FakeKeyService["answer"]>>) {
    const ks = await new FakeKeyService({ realPort: stack.keyServicePort, answer }).start();
    cleanup.push(() => ks.close());
    return ks;
  }

  /** Each router here is closed after its test, so later tests see only their own. */
  async function router(keyServiceUrl: string, deps: Parameters<TestStack["addRouter"]>[1] = {}, overrides = {}) {
    const r = await stack.addRouter({ keyServiceTimeoutMs: 2_000, ...overrides }, { ...deps, keyServiceUrl });
    cleanup.push(async () => {
      await r.close();
      stack.routers = stack.routers.filter((x) => x !== r);
    });
    return r;
  }

  async function refused(r: RunningRouter, host: string, key: string, status: number, reason: string) {
    const contacts = stack.upstreamContacts;
    const res = await stack.request(host, "/", { headers: { "x-api-key": key } }, r);
    expect(res.status, reason).toBe(status);
    const events = await stack.auditAnywhere(res.json().error.requestId);
    expect(events[0]?.reason).toBe(reason);
    expect(stack.upstreamContacts, `${reason}: no upstream contact`).toBe(contacts);
    return res;
  }

  const verifyAnswer = (hash: string, entry: unknown, tenant: TenantEntry | null) => (call: SeenCall) =>
    call.path === VERIFY && JSON.parse(call.body).hash === hash ? { body: { entry, tenant } } : undefined;

  beforeAll(async () => {
    stack = await startTestStack();
    acme = await stack.tenant("acme");
    globex = await stack.tenant("globex");
    acmeEntry = JSON.parse((await stack.store.get(CACHE.tenant.key(acme.id))) as string);
    globexEntry = JSON.parse((await stack.store.get(CACHE.tenant.key(globex.id))) as string);
    expect(acmeEntry.tenant?.slug).toBe("acme");
  });
  afterEach(async () => {
    for (const f of cleanup.splice(0).reverse()) await f();
  });
  afterAll(async () => {
    await stack?.close();
  });

  it("sends the key service only the SHA-256 of a key, never the key", async () => {
    const ks = await fake();
    const r = await router(ks.url);
    const real = await createKey("acme");
    // Not in Redis: the router must ask the key service.
    await stack.store.del(CACHE.apiKey.key(hashApiKey(real.key)));
    const invented = generateApiKey();
    expect((await stack.request(API, "/", { headers: { authorization: `Bearer ${real.key}` } }, r)).status).toBe(200);
    await refused(r, API, invented.key, 401, "key_unknown");
    const calls = ks.callsTo(VERIFY);
    expect(calls.map((c) => JSON.parse(c.body))).toEqual([{ hash: hashApiKey(real.key) }, { hash: invented.hash }]);
    for (const call of ks.calls) {
      const everything = `${call.method} ${call.path}\n${call.rawHeaders.join("\n")}\n${call.body}`;
      for (const key of [real.key, invented.key]) {
        expect(everything).not.toContain(key);
        expect(everything).not.toContain(key.slice(4, 36));
      }
      expect(call.rawHeaders).toContain(`Bearer ${SECRETS.KEY_SERVICE_TOKEN}`);
    }
  });

  it("down: an uncached key gets 503, never an allow; a key Redis holds is still served", async () => {
    const r = await router(`http://127.0.0.1:${await closedPort()}`);
    const uncached = await createKey("acme");
    await stack.store.del(CACHE.apiKey.key(hashApiKey(uncached.key)));
    const res = await refused(r, API, uncached.key, 503, "resolution_unavailable");
    expect(res.json().error.code).toBe("resolution_unavailable");
    await refused(r, API, generateApiKey().key, 503, "resolution_unavailable");
    await refused(r, acme.host, uncached.key, 503, "resolution_unavailable");
    // Redis is a valid cache of the key service's answers (written by the control plane).
    const cached = await createKey("acme");
    expect((await stack.request(API, "/", { headers: { "x-api-key": cached.key } }, r)).status).toBe(200);
  });

  it("slow: an answer after the router's timeout is 503, and the late answer is never used", async () => {
    const k = generateApiKey();
    const positive = { v: 1, key: { keyId: "key_slow", tenantId: acme.id, expiresAt: null, binding: acme.db } };
    let slow = true;
    const ks = await fake((call) => {
      if (call.path !== VERIFY) return undefined;
      return slow ? { body: { entry: positive, tenant: acmeEntry }, delayMs: TIMEOUT_MS * 4 } : { status: 503, body: {} };
    });
    const r = await router(ks.url, {}, { keyServiceTimeoutMs: TIMEOUT_MS });
    await refused(r, API, k.key, 503, "resolution_unavailable");
    await refused(r, acme.host, k.key, 503, "resolution_unavailable");
    // Let the late answers arrive, then make the key service fail fast: nothing was kept.
    await new Promise((resolve) => setTimeout(resolve, TIMEOUT_MS * 4));
    slow = false;
    await refused(r, API, k.key, 503, "resolution_unavailable");
    expect(ks.callsTo(VERIFY).length).toBe(3);
  });

  it("lying: a key of another tenant is refused on this tenant's hostname", async () => {
    const k = generateApiKey();
    const entry = { v: 1, key: { keyId: "key_lie1", tenantId: globex.id, expiresAt: null, binding: globex.db } };
    const ks = await fake(verifyAnswer(k.hash, entry, globexEntry));
    const r = await router(ks.url);
    await refused(r, acme.host, k.key, 401, "key_other_tenant");
  });

  it("lying: an answer naming two tenants is not trusted and poisons nothing", async () => {
    const k = generateApiKey();
    // The key is said to be acme's, but the tenant record sent along is globex's.
    const entry = { v: 1, key: { keyId: "key_lie2", tenantId: acme.id, expiresAt: null, binding: acme.db } };
    const ks = await fake(verifyAnswer(k.hash, entry, { ...globexEntry, v: globexEntry.v + 1_000 }));
    const r = await router(ks.url);
    await refused(r, API, k.key, 503, "resolution_unavailable");
    await refused(r, acme.host, k.key, 503, "resolution_unavailable");
    // acme's hostname still reaches acme, with acme's context.
    const res = await stack.request(acme.host, "/", {}, r);
    expect(res.status).toBe(200);
    expect(res.json().app).toBe("acme-app");
    expect(acme.upstream.requests.at(-1)!.headers["x-tenant-id"]).toBe(acme.id);
    // … and Redis was not given globex's record under acme's id.
    expect(JSON.parse((await stack.store.get(CACHE.tenant.key(acme.id))) as string).tenant.id).toBe(acme.id);
  });

  it("lying: a binding other than the tenant's is 503 binding_mismatch; a malformed answer is 503", async () => {
    const k = generateApiKey();
    const bad = generateApiKey();
    const entry = {
      v: 1,
      key: {
        keyId: "key_lie3",
        tenantId: acme.id,
        expiresAt: null,
        binding: { server: "pg-evil.internal:5432", database: "acme" },
      },
    };
    const ks = await fake((call) => {
      if (call.path !== VERIFY) return undefined;
      const hash = JSON.parse(call.body).hash;
      if (hash === k.hash) return { body: { entry, tenant: acmeEntry } };
      if (hash === bad.hash) return { body: { entry: { v: "1", key: { tenantId: acme.id } }, tenant: acmeEntry } };
      return undefined;
    });
    const r = await router(ks.url);
    const res = await refused(r, API, k.key, 503, "binding_mismatch");
    expect(res.json().error.code).toBe("tenant_unavailable");
    await refused(r, acme.host, k.key, 503, "binding_mismatch");
    await refused(r, API, bad.key, 503, "resolution_unavailable");
  });

  it("serves a cached key only within the declared staleness, and never after a revocation it has seen", async () => {
    let down = false;
    const ks = await fake(() => (down ? { status: 503, body: {} } : undefined));
    const store = new ControlledStore(await createTestStore(stack.prefix));
    cleanup.push(() => store.close());
    let offset = 0;
    const r = await router(ks.url, { store, now: () => Date.now() + offset });
    const kept = await createKey("acme");
    const revoked = await createKey("acme");
    const send = (key: string) => stack.request(API, "/", { headers: { "x-api-key": key } }, r);
    expect((await send(kept.key)).status).toBe(200);
    expect((await send(revoked.key)).status).toBe(200);

    // Redis unreachable for lookups and the key service down; the event bus still works.
    store.failReads = true;
    down = true;
    expect((await send(kept.key)).status).toBe(200);
    offset = CACHE.apiKey.freshMs + 1_000;
    expect((await send(kept.key)).status).toBe(200);
    expect((await send(revoked.key)).status).toBe(200);

    expect((await stack.admin("DELETE", `/v1/tenants/acme/keys/${revoked.id}`)).status).toBe(204);
    await propagatesWithin(async () => (await send(revoked.key)).status === 503, 1_000);
    // From then on, never again an allow (refused() also proves no upstream contact).
    for (let i = 0; i < 3; i++) await refused(r, API, revoked.key, 503, "resolution_unavailable");
    expect((await send(kept.key)).status).toBe(200);

    // Past the declared maximum staleness: refused too.
    offset = CACHE.apiKey.maxStaleMs + 1_000;
    await refused(r, API, kept.key, 503, "resolution_unavailable");

    // Back: the revocation is learned from Redis (key_revoked), the other key works.
    store.failReads = false;
    down = false;
    offset = 0;
    await refused(r, API, revoked.key, 401, "key_revoked");
    expect((await send(kept.key)).status).toBe(200);
  });

  it("a request after a revocation was seen never joins a lookup that started before it", async () => {
    let slow = false;
    const ks = await fake((call) => (call.path === VERIFY && slow ? { forward: true, delayMs: 2_000 } : undefined));
    const r = await router(ks.url, {}, { keyServiceTimeoutMs: 5_000 });
    const k = await createKey("acme");
    await stack.store.del(CACHE.apiKey.key(hashApiKey(k.key)));
    slow = true;
    const send = () => stack.request(API, "/", { headers: { "x-api-key": k.key } }, r);
    // A lookup starts (the key service answers "valid" at once, delivered 2 s later) …
    const early = send();
    await eventually(() => ks.forwarded.filter((path) => path === VERIFY).length === 1, 3_000, 5);
    // … the key is revoked and the router hears of it …
    const heard = r.resolver.invalidations;
    expect((await stack.admin("DELETE", `/v1/tenants/acme/keys/${k.id}`)).status).toBe(204);
    await eventually(() => r.resolver.invalidations > heard, 1_000, 5);
    // … so a request now must not be answered with the lookup from before (it reads
    // the revocation the control plane wrote to Redis).
    const late = await send();
    expect(late.status).toBe(401);
    expect((await stack.auditAnywhere(late.json().error.requestId))[0]?.reason).toBe("key_revoked");
    // The request that started before the revocation keeps the answer it was waiting for.
    expect((await early).status).toBe(200);
  });

  it("refuses a burst of invented keys with 401s at a bounded key-service load", async () => {
    const ks = await fake();
    const r = await router(ks.url);
    const contacts = stack.upstreamContacts;
    const distinct = Array.from({ length: 40 }, () => generateApiKey().key);
    const burst = async (keys: string[]) =>
      Promise.all(
        keys.flatMap((key) =>
          Array.from({ length: 5 }, () => stack.request(API, "/", { headers: { authorization: `Bearer ${key}` } }, r)),
        ),
      );
    const first = await burst(distinct);
    expect(first.map((res) => res.status)).toEqual(first.map(() => 401));
    // De-duplicated in flight: at most one lookup per distinct key, never one per request.
    expect(ks.callsTo(VERIFY).length).toBeLessThanOrEqual(distinct.length);
    expect(ks.maxInFlightByPath.get(VERIFY)).toBeLessThanOrEqual(32);
    // Negative cache: the same keys again cost the key service nothing.
    const before = ks.callsTo(VERIFY).length;
    const second = await burst(distinct);
    expect(second.every((res) => res.status === 401)).toBe(true);
    expect(ks.callsTo(VERIFY).length).toBe(before);
    // Typos and invented keys with a wrong checksum are refused without any lookup.
    const typos = distinct.map((key) => `${key.slice(0, -1)}${key.at(-1) === "A" ? "B" : "A"}`);
    const third = await burst(typos);
    expect(third.every((res) => res.status === 401)).toBe(true);
    expect(ks.callsTo(VERIFY).length).toBe(before);
    const [event] = await stack.auditAnywhere(third[0]!.json().error.requestId);
    expect(event?.reason).toBe("key_malformed");
    expect(stack.upstreamContacts).toBe(contacts);
  });

  it("bounds its own lookups: past KEY_SERVICE_MAX_PENDING a miss is 503 at once, never queued, never an allow", async () => {
    const ks = await fake((call) =>
      call.path === VERIFY ? { body: { entry: { v: 1, key: null }, tenant: null }, delayMs: 3_000 } : undefined,
    );
    const r = await router(ks.url, {}, { keyServiceMaxPending: 4, keyServiceTimeoutMs: 5_000 });
    const contacts = stack.upstreamContacts;
    const answers = await Promise.all(
      Array.from({ length: 20 }, () => stack.request(API, "/", { headers: { "x-api-key": generateApiKey().key } }, r)),
    );
    expect(answers.every((a) => a.status === 401 || a.status === 503)).toBe(true);
    expect(ks.maxInFlightByPath.get(VERIFY)).toBeLessThanOrEqual(4);
    expect(ks.callsTo(VERIFY).length).toBeLessThanOrEqual(4);
    const shed = answers.filter((a) => a.status === 503);
    expect(shed.length).toBeGreaterThanOrEqual(16);
    expect(stack.upstreamContacts).toBe(contacts);
    // The lookups that did go out were answered (401); the room is free again.
    expect(answers.filter((a) => a.status === 401).length).toBe(ks.callsTo(VERIFY).length);
    expect((await stack.request(API, "/", { headers: { "x-api-key": generateApiKey().key } }, r)).status).toBe(401);
  });

  it("reports last use of keys in batches (not one call per request), and what is left when it closes", async () => {
    const ks = await fake();
    const r = await router(ks.url, {}, { keyUsageReportMs: 200 });
    const a = await createKey("acme");
    const b = await createKey("globex");
    for (let i = 0; i < 30; i++) {
      expect((await stack.request(API, "/", { headers: { "x-api-key": i % 2 ? a.key : b.key } }, r)).status).toBe(200);
    }
    await eventually(() => ks.callsTo("/v1/keys/used").length > 0, 2_000);
    await r.keyUsage.flush();
    const reports = ks.callsTo("/v1/keys/used").map((c) => JSON.parse(c.body).ids as string[]);
    expect(reports.length).toBeLessThan(10);
    expect(new Set(reports.flat())).toEqual(new Set([a.id, b.id]));
    for (const ids of reports) expect(new Set(ids).size).toBe(ids.length);
    // Refused keys are not reported.
    const seen = ks.callsTo("/v1/keys/used").length;
    await refused(r, globex.host, a.key, 401, "key_other_tenant");
    await r.keyUsage.flush();
    expect(ks.callsTo("/v1/keys/used").length).toBe(seen);

    // A router that reports rarely sends what it holds when it closes.
    const rare = await router(ks.url, {}, { keyUsageReportMs: 600_000 });
    expect((await stack.request(API, "/", { headers: { "x-api-key": a.key } }, rare)).status).toBe(200);
    const beforeClose = ks.callsTo("/v1/keys/used").length;
    await rare.close();
    const last = ks.callsTo("/v1/keys/used").slice(beforeClose);
    expect(last.map((c) => JSON.parse(c.body).ids)).toEqual([[a.id]]);
  });

  it("the key service bounds its own work: past its in-flight limit it answers 503 at once", async () => {
    const ks = createKeyServiceApp({
      db: stack.cp.database.db,
      token: SECRETS.KEY_SERVICE_TOKEN,
      log: pino({ level: "silent" }),
      tenants: stack.cp.tenants,
      maxInFlight: 2,
    });
    const server = createServer(getRequestListener(ks.app.fetch));
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
    cleanup.push(async () => {
      ks.close();
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    });
    const port = (server.address() as { port: number }).port;
    const body = JSON.stringify({ hash: generateApiKey().hash });
    const head = `POST /v1/keys/verify HTTP/1.1\r\nHost: ks\r\nAuthorization: Bearer ${SECRETS.KEY_SERVICE_TOKEN}\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n`;
    const verify = (authorization = `Bearer ${SECRETS.KEY_SERVICE_TOKEN}`) =>
      fetch(`http://127.0.0.1:${port}/v1/keys/verify`, {
        method: "POST",
        headers: { authorization, "content-type": "application/json" },
        body,
      });
    // Two verifications held in flight: their bodies arrive only half.
    const held = [0, 1].map(() => {
      const socket = connect(port, "127.0.0.1");
      const chunks: Buffer[] = [];
      socket.on("data", (c: Buffer) => chunks.push(c));
      socket.write(head + body.slice(0, 10));
      return { socket, answer: () => Buffer.concat(chunks).toString() };
    });
    let overloaded: Response | null = null;
    await eventually(async () => {
      const res = await verify();
      if (res.status !== 503) return false;
      overloaded = res;
      return true;
    }, 2_000);
    expect(((await (overloaded as unknown as Response).json()) as { error: { code: string } }).error.code).toBe("overloaded");
    // Routers without the token are refused before they count.
    expect((await verify("Bearer wrong")).status).toBe(401);
    // The held ones finish normally, and then there is room again.
    for (const h of held) h.socket.write(body.slice(10));
    await eventually(() => held.every((h) => h.answer().startsWith("HTTP/1.1 200")), 2_000);
    for (const h of held) h.socket.destroy();
    expect((await verify()).status).toBe(200);
  });
});
