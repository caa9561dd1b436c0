import { describe, expect, it } from "vitest";
import { MemoryStore } from "@portcullis/shared";
import { REFRESH_AT, REFRESH_SPREAD, TieredCache, type Ttl } from "./tiered.ts";

type Entry = { v: number; name: string | null };
const TTL = { freshMs: 1_000, negativeMs: 500, maxStaleMs: 3_000, redisTtlMs: 60_000, redisNegativeTtlMs: 5_000 };

function cache(options: {
  refreshAhead: boolean;
  origin: Map<string, Entry>;
  down?: () => boolean;
  ttl?: Ttl;
  /** Holds each origin load until it resolves. */
  hold?: () => Promise<void>;
}) {
  let clock = 1_000_000;
  const store = new MemoryStore({ now: () => clock });
  let loads = 0;
  const c = new TieredCache<Entry>({
    name: "test",
    ttl: options.ttl ?? TTL,
    store,
    storeKey: (id) => `t:${id}`,
    // Only the entry's own fields (a stored entry may carry its freshness too).
    parse: (json) => {
      const { v, name } = JSON.parse(json) as Entry;
      return { v, name };
    },
    load: async (id) => {
      loads++;
      await options.hold?.();
      if (options.down?.()) throw new Error("origin down");
      return options.origin.get(id) ?? { v: 0, name: null };
    },
    isNegative: (e) => e.name === null,
    refreshAhead: options.refreshAhead,
    maxEntries: 100,
    now: () => clock,
  });
  return {
    c,
    store,
    advance: (ms: number) => (clock += ms),
    get loads() {
      return loads;
    },
  };
}

const settle = () => new Promise((r) => setTimeout(r, 10));

describe("TieredCache refresh-ahead", () => {
  it("re-reads a busy entry in the background before it ages out, once, then answers the new value", async () => {
    const origin = new Map([["a", { v: 1, name: "one" }]]);
    const t = cache({ refreshAhead: true, origin });
    expect((await t.c.get("a")).ok).toBe(true);
    expect(t.loads).toBe(1);

    origin.set("a", { v: 2, name: "two" });
    await t.store.del("t:a");
    // Past the latest refresh point (REFRESH_AT of freshness plus up to REFRESH_SPREAD, spread per entry).
    t.advance(TTL.freshMs * (REFRESH_AT + REFRESH_SPREAD) + 1);
    // Near the end of its freshness: the old value, synchronously, and exactly one re-read started.
    expect(t.c.peek("a")?.name).toBe("one");
    expect(t.c.peek("a")?.name).toBe("one");
    await settle();
    expect(t.loads).toBe(2);
    expect(t.c.peek("a")?.name).toBe("two");
  });

  it("an entry asked for once a second (a tenth of its freshness) is always re-read in time, never answered late", async () => {
    const origin = new Map(Array.from({ length: 50 }, (_, i) => [`e${i}`, { v: 1, name: `n${i}` }] as const));
    const t = cache({ refreshAhead: true, origin });
    for (const id of origin.keys()) await t.c.get(id);
    // Within the window after the latest refresh point, whatever its phase.
    const every = TTL.freshMs / 10;
    expect(every).toBeLessThan(TTL.freshMs * (1 - REFRESH_AT - REFRESH_SPREAD));
    for (let step = 0; step < 120; step++) {
      t.advance(every);
      for (const id of origin.keys()) expect(t.c.peek(id)).toBeDefined();
      await settle();
    }
    // The steps span twelve freshness periods: every entry was re-read in the background.
    expect(120 * every).toBeGreaterThan(10 * TTL.freshMs);
  });

  it("spreads the re-reads of entries filled together over the refresh window", async () => {
    const origin = new Map(Array.from({ length: 60 }, (_, i) => [`e${i}`, { v: 1, name: `n${i}` }] as const));
    const t = cache({ refreshAhead: true, origin });
    for (const id of origin.keys()) await t.c.get(id);
    await Promise.all([...origin.keys()].map((id) => t.store.del(`t:${id}`)));
    const filled = t.loads;
    // Halfway through the window: some entries have started their re-read, not all.
    t.advance(TTL.freshMs * (REFRESH_AT + REFRESH_SPREAD / 2));
    for (const id of origin.keys()) t.c.peek(id);
    await settle();
    const started = t.loads - filled;
    expect(started).toBeGreaterThan(0);
    expect(started).toBeLessThan(60);
    // Past the window every busy entry has been re-read, once.
    t.advance(TTL.freshMs * (REFRESH_SPREAD / 2) + 1);
    for (const id of origin.keys()) t.c.peek(id);
    await settle();
    expect(t.loads - filled).toBe(60);
  });

  it("a re-read that finds the same version keeps the value it has (no new objects)", async () => {
    const origin = new Map([["a", { v: 7, name: "seven" }]]);
    const t = cache({ refreshAhead: true, origin });
    const first = (await t.c.get("a")) as { ok: true; value: Entry };
    // The store holds the same version: the refresh reads it and keeps the object.
    t.advance(TTL.freshMs * 0.95 + 1);
    t.c.peek("a");
    await settle();
    t.advance(TTL.freshMs * 0.5);
    expect(t.c.peek("a")).toBe(first.value);
    // A new version in the store is taken.
    await t.store.setIfNewer("t:a", JSON.stringify({ v: 8, name: "eight" }), 8, 60_000, "authoritative");
    // Into the refresh window of the re-read entry (95 % of its freshness plus a bit).
    t.advance(TTL.freshMs * 0.46);
    t.c.peek("a");
    await settle();
    expect(t.c.peek("a")?.name).toBe("eight");
  });

  it("never answers an entry past its freshness from memory, even with refresh-ahead (the lost-invalidation bound)", async () => {
    const origin = new Map([["a", { v: 1, name: "one" }]]);
    const t = cache({ refreshAhead: true, origin });
    await t.c.get("a");
    origin.set("a", { v: 2, name: "revoked" });
    await t.store.del("t:a");
    // Nobody asked during the refresh window: past freshness the caller waits for the re-read.
    t.advance(TTL.freshMs + 1);
    expect(t.c.peek("a")).toBeUndefined();
    const next = await t.c.get("a");
    expect(next.ok && next.value.name).toBe("revoked");
  });

  it("without refresh-ahead, an entry near the end of its freshness starts no re-read", async () => {
    const origin = new Map([["a", { v: 1, name: "one" }]]);
    const t = cache({ refreshAhead: false, origin });
    await t.c.get("a");
    t.advance(TTL.freshMs * 0.8 + 1);
    expect(t.c.peek("a")?.name).toBe("one");
    await settle();
    expect(t.loads).toBe(1);
    t.advance(TTL.freshMs);
    expect(t.c.peek("a")).toBeUndefined();
  });

  it("when re-reads fail, serves the entry only until its maximum staleness, then reports unavailable", async () => {
    let down = false;
    const origin = new Map([["a", { v: 1, name: "one" }]]);
    const t = cache({ refreshAhead: true, origin, down: () => down });
    await t.c.get("a");
    down = true;
    await t.store.del("t:a");
    t.advance(TTL.freshMs * 0.8 + 1);
    expect(t.c.peek("a")?.name).toBe("one");
    await settle();
    t.advance(TTL.freshMs);
    expect(t.c.peek("a")).toBeUndefined();
    const stale = await t.c.get("a");
    expect(stale.ok && stale.tier).toBe("stale");
    t.advance(TTL.maxStaleMs);
    expect(await t.c.get("a")).toEqual({ ok: false, code: "unavailable" });
  });

  it("never answers an aged-out negative entry: 'not found' is re-read before answering", async () => {
    const origin = new Map<string, Entry>();
    const t = cache({ refreshAhead: true, origin });
    const first = await t.c.get("missing");
    expect(first.ok && first.value.name).toBe(null);
    origin.set("missing", { v: 3, name: "now here" });
    await t.store.del("t:missing");
    t.advance(TTL.negativeMs + 1);
    expect(t.c.peek("missing")).toBeUndefined();
    const second = await t.c.get("missing");
    expect(second.ok && second.value.name).toBe("now here");
  });
});

describe("TieredCache stale-if-error in the store", () => {
  const STALE_TTL = { ...TTL, redisTtlMs: 5_000, redisStaleIfErrorMs: 20_000 };

  const staleCache = (origin: Map<string, Entry>, down: () => boolean) =>
    cache({ refreshAhead: false, origin, down, ttl: STALE_TTL });

  it("asks the origin once the stored entry is past its freshness, and takes its answer", async () => {
    const origin = new Map([["a", { v: 1, name: "one" }]]);
    const t = staleCache(origin, () => false);
    expect((await t.c.get("a")).ok).toBe(true);
    origin.set("a", { v: 2, name: "two" });
    // Memory and store freshness both over; the store still holds v1 (stale-if-error).
    t.advance(STALE_TTL.redisTtlMs + 1);
    expect(await t.store.get("t:a")).toContain('"name":"one"');
    const r = await t.c.get("a");
    expect(r).toMatchObject({ ok: true, tier: "origin", value: { name: "two" } });
    expect(t.loads).toBe(2);
  });

  it("serves the stored entry past its freshness while the origin cannot answer, and not past the store's stale time", async () => {
    let down = false;
    const origin = new Map([["a", { v: 1, name: "one" }]]);
    const t = staleCache(origin, () => down);
    expect((await t.c.get("a")).ok).toBe(true);
    down = true;
    // Past the memory entry's own maximum staleness and the store entry's freshness.
    t.advance(STALE_TTL.redisTtlMs + STALE_TTL.maxStaleMs + 1);
    expect(await t.c.get("a")).toMatchObject({ ok: true, tier: "stale", value: { name: "one" } });
    // Kept in memory like a store read: warm traffic does not wait on the origin.
    expect(t.c.peek("a")?.name).toBe("one");
    // Once the store has let it go (its fresh time plus its stale-if-error time), nothing is guessed.
    t.advance(STALE_TTL.redisStaleIfErrorMs);
    expect(await t.c.get("a")).toEqual({ ok: false, code: "unavailable" });
  });

  it("never keeps a negative entry past its TTL", async () => {
    let down = false;
    const origin = new Map<string, Entry>();
    const t = staleCache(origin, () => down);
    expect(await t.c.get("gone")).toMatchObject({ ok: true, value: { name: null } });
    down = true;
    t.advance(STALE_TTL.redisNegativeTtlMs + 1);
    expect(await t.store.get("t:gone")).toBeNull();
    expect(await t.c.get("gone")).toEqual({ ok: false, code: "unavailable" });
  });
});

describe("TieredCache loads and invalidations", () => {
  /** A refresh of "a" held at the origin, begun near the end of its freshness; `release` lets it finish. */
  async function heldRefresh() {
    const origin = new Map([["a", { v: 1, name: "one" }]]);
    let release = () => {};
    let holding = false;
    const t = cache({
      refreshAhead: true,
      origin,
      hold: () => (holding ? new Promise<void>((r) => (release = r)) : Promise.resolve()),
    });
    await t.c.get("a");
    origin.set("a", { v: 2, name: "two" });
    await t.store.del("t:a");
    holding = true;
    t.advance(TTL.freshMs * (REFRESH_AT + REFRESH_SPREAD) + 1);
    expect(t.c.peek("a")?.name).toBe("one");
    await settle();
    expect(t.loads).toBe(2);
    return {
      t,
      release: async () => {
        release();
        await settle();
      },
    };
  }

  it("a refresh keeps what it read when other entries are invalidated meanwhile", async () => {
    const { t, release } = await heldRefresh();
    t.c.invalidate("b");
    t.c.invalidate("c");
    await release();
    // Past the first read's freshness: the refreshed value, from memory, with no new load.
    t.advance(TTL.freshMs * (1 - REFRESH_AT - REFRESH_SPREAD) + 1);
    expect(t.c.peek("a")?.name).toBe("two");
    expect(t.loads).toBe(2);
  });

  it("a refresh keeps nothing when its own entry is invalidated meanwhile, or everything cleared", async () => {
    for (const change of ["own", "clear"] as const) {
      const { t, release } = await heldRefresh();
      if (change === "own") t.c.invalidate("a");
      else t.c.clear();
      await release();
      expect(t.c.peek("a")).toBeUndefined();
    }
  });

  it("a refresh older than the invalidations it can still tell apart keeps nothing", async () => {
    const { t, release } = await heldRefresh();
    // More invalidations than are remembered: the first ones are forgotten, which raises
    // the floor past this load's start.
    for (let i = 0; i <= 10_000; i++) t.c.invalidate(`other${i}`);
    await release();
    t.advance(TTL.freshMs * (1 - REFRESH_AT - REFRESH_SPREAD) + 1);
    expect(t.c.peek("a")).toBeUndefined();
  });

  it("an id invalidated again while its load runs: the later invalidation counts", async () => {
    const { t, release } = await heldRefresh();
    t.c.invalidate("b");
    t.c.invalidate("a");
    t.c.invalidate("b");
    await release();
    expect(t.c.peek("a")).toBeUndefined();
  });

  it("forgetting an invalidation by age also keeps a load older than it from keeping its value", async () => {
    const { t, release } = await heldRefresh();
    t.c.invalidate("b");
    // A minute on, the next invalidation forgets the first; the load began before it.
    t.advance(61_000);
    t.c.invalidate("c");
    await release();
    expect(t.c.peek("a")).toBeUndefined();
  });

  it("primes a record brought back by another lookup unless its id was invalidated since that lookup began", () => {
    const t = cache({ refreshAhead: false, origin: new Map() });
    const before = t.c.epoch;
    t.c.invalidate("other");
    t.c.prime("a", { v: 1, name: "one" }, before);
    expect(t.c.peek("a")?.name).toBe("one");
    const again = t.c.epoch;
    t.c.invalidate("a");
    t.c.prime("a", { v: 2, name: "two" }, again);
    expect(t.c.peek("a")).toBeUndefined();
  });
});
