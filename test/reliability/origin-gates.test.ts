/**
 * Bounded origin lookups per kind. Hosts, keys, sessions and
 * tenants each have their own bound on key-service calls in flight (a share of
 * KEY_SERVICE_MAX_PENDING), so a flood of invented keys — each well-formed, each a
 * real lookup — fills only the key share: a real hostname missing from every cache
 * is still resolved (200), not shed as 503. And a key the key service said does not
 * exist costs one lookup however often it is sent (negative cache, in flight and after).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CACHE, generateApiKey } from "@portcullis/shared";
import { FakeKeyService } from "../helpers/fake-key-service.ts";
import { eventually, startTestStack, type TestStack } from "../helpers/stack.ts";

const API = "api.localhost";
const VERIFY = "/v1/keys/verify";
/** How long the slowed key service holds each key verification. */
const SLOW_MS = 8_000;

describe("origin lookups are bounded per kind (real Redis, real Postgres)", () => {
  let stack: TestStack;
  let ks: FakeKeyService;

  beforeAll(async () => {
    stack = await startTestStack({ backend: "real" });
    // Key verifications are slow (forwarded, then held); host lookups are not.
    ks = await new FakeKeyService({
      realPort: stack.keyServicePort,
      answer: (call) => (call.path === VERIFY ? { forward: true, delayMs: SLOW_MS } : undefined),
    }).start();
  });
  afterAll(async () => {
    await ks?.close();
    await stack?.close();
  });

  it("a flood of distinct invented keys does not turn a real host's cache miss into a 503", async () => {
    const acme = await stack.tenant("acme");
    const r = await stack.addRouter({ keyServiceMaxPending: 8, keyServiceTimeoutMs: 15_000 }, { keyServiceUrl: ks.url });
    // Nothing of acme in Redis: its lookup must reach the key service.
    await stack.store.del(CACHE.host.key(acme.host), CACHE.tenant.key(acme.id));
    const contacts = stack.upstreamContacts;

    const flood = Promise.all(
      Array.from({ length: 40 }, () => stack.request(API, "/", { headers: { "x-api-key": generateApiKey().key } }, r)),
    );
    // The flood holds every key lookup it may (held SLOW_MS at the key service).
    await eventually(() => (ks.maxInFlightByPath.get(VERIFY) ?? 0) >= 2, 5_000);

    const real = await stack.request(acme.host, "/real", {}, r);
    expect(real.status, real.text).toBe(200);
    expect(real.json().path).toBe("/real");
    // Resolved by the key service while the flood was still held there.
    expect(ks.callsTo(`/v1/resolve/host/${acme.host}`)).toHaveLength(1);
    expect(ks.inFlight, "the flood was still held at the key service").toBeGreaterThanOrEqual(2);

    const answers = await flood;
    // Every invented key is refused: 401 after a lookup, or 503 when its share was full.
    expect(answers.every((a) => a.status === 401 || a.status === 503)).toBe(true);
    // The key share is a part of KEY_SERVICE_MAX_PENDING, never more.
    expect(ks.maxInFlightByPath.get(VERIFY)).toBeLessThan(8);
    expect(stack.upstreamContacts, "only the real request reached an upstream").toBe(contacts + 1);
    await r.close();
    stack.routers = stack.routers.filter((x) => x !== r);
  });

  it("a flood of one invented key costs one lookup: in flight and after, it is answered from the negative cache", async () => {
    const r = await stack.addRouter({ keyServiceMaxPending: 8, keyServiceTimeoutMs: 10_000 }, { keyServiceUrl: ks.url });
    const contacts = stack.upstreamContacts;
    const key = generateApiKey().key;
    const before = ks.callsTo(VERIFY).length;
    const send = () => stack.request(API, "/", { headers: { authorization: `Bearer ${key}` } }, r);
    const first = await Promise.all(Array.from({ length: 30 }, send));
    expect(first.map((a) => a.status)).toEqual(first.map(() => 401));
    const second = await Promise.all(Array.from({ length: 30 }, send));
    expect(second.map((a) => a.status)).toEqual(second.map(() => 401));
    expect(ks.callsTo(VERIFY).length - before).toBe(1);
    expect(stack.upstreamContacts).toBe(contacts);
    await r.close();
    stack.routers = stack.routers.filter((x) => x !== r);
  });
});
