import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { MemoryStore, type Store, type TenantRecord } from "@portcullis/shared";
import { createRouterMetrics } from "../ops/index.ts";
import { brandedRefusalPage, brandingJson, escapeHtml, wantsHtml } from "./branding.ts";
import { FALLBACK_MS, Limiter, UsageMeter } from "./index.ts";

function tenant(limits: Partial<TenantRecord["limits"]> = {}, branding: TenantRecord["settings"]["branding"] = {}): TenantRecord {
  return {
    id: "ten_1",
    slug: "acme",
    status: "active",
    plan: "free",
    binding: { server: "db:5432", database: "acme" },
    upstreams: ["http://127.0.0.1:1"],
    limits: { requestsPerSecond: null, burst: null, monthlyRequests: null, concurrency: null, maxBodyBytes: null, ...limits },
    features: {},
    settings: { allowedIps: [], branding },
  };
}

/** A store whose limiter calls fail, as Redis does when it is unreachable. */
function failingStore(): Store & { fail: boolean; calls: number } {
  const inner = new MemoryStore();
  const s = Object.create(inner) as Store & { fail: boolean; calls: number };
  s.fail = true;
  s.calls = 0;
  s.admit = async (rates, quota) => {
    s.calls++;
    if (s.fail) throw new Error("Stream isn't writeable");
    return inner.admit(rates, quota);
  };
  s.addCounters = async (key, inc) => {
    if (s.fail) throw new Error("Stream isn't writeable");
    return inner.addCounters(key, inc);
  };
  s.takeCounters = (key) => inner.takeCounters(key);
  return s;
}

describe("Limiter", () => {
  it("holds concurrency slots until released, and gives a refused request's slot back", async () => {
    const limiter = new Limiter({ store: new MemoryStore() });
    const t = tenant({ concurrency: 2, requestsPerSecond: 0.001, burst: 2 });
    expect((await limiter.check(t, undefined)).ok).toBe(true);
    expect((await limiter.check(t, undefined)).ok).toBe(true);
    const third = await limiter.check(t, undefined);
    expect(third.ok === false && third.reason).toBe("concurrency_limited");
    limiter.release(t.id);
    // The slot is free but the bucket is empty: rate refusal, and the slot is given back.
    const fourth = await limiter.check(t, undefined);
    expect(fourth.ok === false && fourth.reason).toBe("rate_limited");
    expect(limiter.inFlight(t.id)).toBe(1);
    limiter.release(t.id);
    expect(limiter.inFlight(t.id)).toBe(0);
  });

  it("skips the store entirely for a tenant without rate or quota", async () => {
    const store = failingStore();
    const limiter = new Limiter({ store });
    expect(await limiter.check(tenant(), undefined)).toEqual({ ok: true, headers: null });
    expect(store.calls).toBe(0);
  });

  it("decides locally while the store fails, shows it in metrics, and returns to the store after FALLBACK_MS", async () => {
    let now = 1_000_000;
    const store = failingStore();
    const metrics = createRouterMetrics();
    const limiter = new Limiter({ store, metrics, now: () => now });
    const t = tenant({ requestsPerSecond: 0.001, burst: 2, monthlyRequests: 1 });
    // The quota (1) is not enforced locally; the rate (burst 2) is.
    const codes = [];
    for (let i = 0; i < 3; i++) codes.push((await limiter.check(t, undefined)).ok);
    expect(codes).toEqual([true, true, false]);
    expect(store.calls).toBe(1);
    expect(limiter.degraded).toBe(true);
    const text = await metrics.registry.metrics();
    expect(text).toMatch(/^portcullis_limiter_degraded 1$/m);
    expect(text).toMatch(/^portcullis_limiter_store_errors_total 1$/m);
    expect(text).toMatch(/^portcullis_limiter_local_decisions_total 3$/m);
    store.fail = false;
    now += FALLBACK_MS;
    expect(limiter.degraded).toBe(false);
    expect((await limiter.check(t, undefined)).ok).toBe(true);
    expect(store.calls).toBe(2);
    const quota = await limiter.check(t, undefined);
    expect(quota.ok === false && quota.reason).toBe("quota_exceeded");
  });

  it("builds RateLimit-Policy from burst and rate (window: time to refill the bucket)", async () => {
    const limiter = new Limiter({ store: new MemoryStore() });
    const ok = await limiter.check(tenant({ requestsPerSecond: 20, burst: 40 }), undefined);
    expect(ok.ok && ok.headers).toEqual({ "ratelimit-policy": '"tenant";q=40;w=2', ratelimit: '"tenant";r=39;t=1' });
  });
});

describe("UsageMeter", () => {
  it("keeps a failed batch and delivers it with the next flush", async () => {
    const store = failingStore();
    const meter = new UsageMeter({ store, intervalMs: 60_000, now: () => Date.UTC(2026, 10, 5) });
    meter.record("ten_a", true, 10, 20);
    meter.record("ten_a", false, 0, 0);
    await meter.flush();
    expect(meter.depth).toBe(1);
    store.fail = false;
    meter.record("ten_a", true, 1, 2);
    await meter.close();
    expect(await store.takeCounters("usage:pending")).toEqual({
      "2026-11|ten_a|r": 2,
      "2026-11|ten_a|x": 1,
      "2026-11|ten_a|i": 11,
      "2026-11|ten_a|o": 22,
    });
  });
});

describe("branding", () => {
  it("escapes every HTML-significant character", () => {
    fc.assert(
      fc.property(fc.string(), (s) => {
        const out = escapeHtml(s);
        expect(out).not.toMatch(/[<>"'`]/);
        // Every & starts an entity we wrote.
        expect(out.replace(/&#\d+;/g, "")).not.toContain("&");
      }),
    );
  });

  it("never lets tenant values open a tag or leave an attribute or the style block", () => {
    fc.assert(
      fc.property(fc.string(), fc.string(), fc.string(), (name, logo, colour) => {
        const page = brandedRefusalPage(
          tenant({}, { displayName: name, logoUrl: `https://x.example/${logo}`, primaryColor: colour }),
          "rate_limited",
          "req_1",
        );
        const tags = page.match(/<[a-z!/][^>]*>/gi) ?? [];
        const allowed = /^<\/?(!doctype html|html|head|meta|title|style|body|header|img|strong|main|h1|p|small)[\s>]/i;
        for (const tag of tags) expect(tag).toMatch(allowed);
        // The colour reaches CSS only when it is #rrggbb.
        if (!/^#[0-9a-fA-F]{6}$/.test(colour)) expect(page).toContain("background:#334155");
      }),
    );
  });

  it("answers HTML only to clients that ask for it", () => {
    expect(wantsHtml("text/html,application/xhtml+xml")).toBe(true);
    expect(wantsHtml("application/json")).toBe(false);
    expect(wantsHtml(undefined)).toBe(false);
  });

  it("serves only well-formed colours in the JSON", () => {
    expect(JSON.parse(brandingJson(tenant({}, { displayName: "A", primaryColor: "red;}" })))).toEqual({
      displayName: "A",
      logoUrl: null,
      primaryColor: null,
    });
  });
});
