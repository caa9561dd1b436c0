/**
 * The TLS ask cache and limiter alone, over a fake database whose queries the test
 * answers by hand: what is bounded stays bounded, a load that raced a write never
 * answers after it, and the limiter charges only asks that cost a query.
 */
import { describe, expect, it } from "vitest";
import type { Db } from "../db/client.ts";
import { clientKey, TlsAsk } from "./tls-ask.ts";

type Row = { status: string; tenantId: string; tenantStatus: string };

/** A `db` answering `select…from…innerJoin…where` with what `rows(host)` said when queried; while held, only on `release`. */
function fakeDb(rows: (host: string) => Row[]) {
  const pending: (() => void)[] = [];
  let manual = false;
  let hostOf = "";
  const db = {
    select: () => ({
      from: () => ({
        innerJoin: () => ({
          where: (cond: unknown) => {
            // drizzle's eq() keeps its right operand as a Param with `value`.
            const chunks = (cond as { queryChunks?: unknown[] }).queryChunks ?? [];
            const param = chunks.find(
              (c) => typeof c === "object" && c !== null && "value" in (c as object) && "encoder" in (c as object),
            );
            hostOf = String((param as { value: unknown } | undefined)?.value ?? hostOf);
            const host = hostOf;
            // The query reads the state when it runs; its answer arrives on release.
            const result = rows(host);
            return new Promise<Row[]>((resolve) => {
              const run = () => resolve(result);
              if (manual) pending.push(run);
              else run();
            });
          },
        }),
      }),
    }),
  };
  return {
    db: db as unknown as Db,
    hold: () => (manual = true),
    release: () => {
      manual = false;
      for (const run of pending.splice(0)) run();
    },
  };
}

const verified = { status: "verified", tenantId: "ten_a", tenantStatus: "active" };
const flush = () => new Promise((r) => setTimeout(r, 0));

describe("TlsAsk", () => {
  it("never answers from a load that raced a write: asks after the invalidation get the new state", async () => {
    let state: Row[] = [];
    const fake = fakeDb(() => state);
    const tls = new TlsAsk({ db: fake.db });
    fake.hold();
    const before = tls.ask("shop.example.com", "192.0.2.1") as Promise<unknown>;
    // The write commits (verified) while that query is in flight.
    state = [verified];
    tls.invalidate({ hosts: ["shop.example.com"] });
    const after = tls.ask("shop.example.com", "192.0.2.1");
    fake.release();
    expect(await before).toMatchObject({ allowed: false, code: "unknown_domain" });
    expect(await after).toMatchObject({ allowed: true });
    // And what is cached is the new state.
    expect(tls.ask("shop.example.com")).toMatchObject({ allowed: true });
  });

  it("reloads a changed host at once, charged to nobody", async () => {
    let state: Row[] = [];
    const fake = fakeDb(() => state);
    const tls = new TlsAsk({ db: fake.db, burst: 1, ratePerSecond: 0.001 });
    expect(await tls.ask("late.example.com", "192.0.2.9")).toMatchObject({ code: "unknown_domain" });
    expect(await tls.ask("other.example.com", "192.0.2.9")).toMatchObject({ code: "rate_limited" });
    state = [verified];
    tls.invalidate({ hosts: ["late.example.com"] });
    expect(await tls.ask("late.example.com", "192.0.2.9")).toMatchObject({ allowed: true });
  });

  it("keeps served names when flooded with random ones: negative answers have their own bound", async () => {
    const fake = fakeDb((host) => (host.startsWith("ok") ? [verified] : []));
    const tls = new TlsAsk({ db: fake.db, maxEntries: 10, maxNegativeEntries: 5 });
    for (let i = 0; i < 10; i++) await tls.ask(`ok${i}.example.com`);
    for (let i = 0; i < 1000; i++) await tls.ask(`random${i}.example.com`);
    expect(tls.sizes).toMatchObject({ positive: 10, negative: 5 });
    const queries = tls.stats.queries;
    for (let i = 0; i < 10; i++) expect(tls.ask(`ok${i}.example.com`)).toMatchObject({ allowed: true });
    expect(tls.stats.queries).toBe(queries);
  });

  it("charges only asks that cost a query, and refuses past the burst with a Retry-After", async () => {
    let now = 1_000_000;
    const fake = fakeDb(() => []);
    const tls = new TlsAsk({ db: fake.db, now: () => now, burst: 3, ratePerSecond: 1 });
    for (let i = 0; i < 3; i++) expect(await tls.ask(`n${i}.example.com`, "192.0.2.1")).toMatchObject({ code: "unknown_domain" });
    const limited = await tls.ask("n3.example.com", "192.0.2.1");
    expect(limited).toEqual({ allowed: false, code: "rate_limited", retryAfterSeconds: 1 });
    // Cached answers are free.
    for (let i = 0; i < 50; i++) expect(tls.ask("n0.example.com", "192.0.2.1")).toMatchObject({ code: "unknown_domain" });
    // Another source has its own bucket; one second refills one token.
    expect(await tls.ask("n4.example.com", "192.0.2.2")).toMatchObject({ code: "unknown_domain" });
    now += 1_000;
    expect(await tls.ask("n5.example.com", "192.0.2.1")).toMatchObject({ code: "unknown_domain" });
    expect(await tls.ask("n6.example.com", "192.0.2.1")).toMatchObject({ code: "rate_limited" });
    expect(tls.stats).toMatchObject({ queries: 5, limited: 2 });
  });

  it("bounds the table of sources, and refuses new sources rather than hand out fresh buckets while all are active", async () => {
    let now = 0;
    const fake = fakeDb(() => []);
    const tls = new TlsAsk({ db: fake.db, now: () => now, burst: 2, ratePerSecond: 1, maxClients: 100 });
    for (let i = 0; i < 100; i++) await tls.ask(`a${i}.example.com`, `198.51.100.${i}`);
    expect(tls.sizes.clients).toBe(100);
    expect(await tls.ask("new.example.com", "203.0.113.1")).toMatchObject({ code: "rate_limited" });
    expect(tls.sizes.clients).toBe(100);
    // Once the oldest source has refilled, forgetting it loses nothing: the new one gets in.
    now += 2_000;
    expect(await tls.ask("new2.example.com", "203.0.113.1")).toMatchObject({ code: "unknown_domain" });
    expect(tls.sizes.clients).toBe(100);
    await flush();
  });

  it("keys IPv6 sources by /64, and IPv4-mapped ones as IPv4", () => {
    expect(clientKey("2001:db8:1:2:aaaa::1")).toBe(clientKey("2001:db8:1:2:bbbb:cccc:dddd:eeee"));
    expect(clientKey("2001:db8:1:2::1")).not.toBe(clientKey("2001:db8:1:3::1"));
    expect(clientKey("2001:0db8:0001:0002::1")).toBe("2001:db8:1:2::/64");
    expect(clientKey("::ffff:192.0.2.1")).toBe("192.0.2.1");
    expect(clientKey("::1")).toBe("0:0:0:0::/64");
  });
});
