/**
 * The console's live feed on Postgres: streams opening together share one poller, the
 * poller stops when the last one leaves (no timer left polling the trail), a close
 * during the start leaves nothing running, and rows stored after a subscribe reach
 * every subscriber once.
 */
import pino from "pino";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { LiveFeed, type LiveEvent, schema } from "@portcullis/control-plane";
import { createTestDatabase, type TestDatabase } from "../helpers/postgres.ts";
import { eventually } from "../helpers/stack.ts";

describe("console live feed (Postgres)", () => {
  let pg: TestDatabase;
  beforeAll(async () => {
    pg = await createTestDatabase();
  });
  afterAll(async () => {
    await pg?.drop();
  });
  afterEach(() => {
    vi.restoreAllMocks();
  });

  let seq = 0;
  const row = (requestId: string) => ({
    stream: "test",
    seq: ++seq,
    prevHash: "-",
    hash: `h${seq}`,
    time: new Date(),
    requestId,
    decision: "refuse" as const,
    reason: "unknown_host",
    tenantId: null,
    host: "nowhere.example",
    method: "GET",
    path: "/",
    status: 421,
    clientIp: "203.0.113.9",
    credential: "none",
  });

  it("starts one poller for subscribers that arrive together, and stops it when the last leaves", async () => {
    const started = vi.spyOn(globalThis, "setInterval");
    const stopped = vi.spyOn(globalThis, "clearInterval");
    const feed = new LiveFeed({ db: pg.database.db, log: pino({ level: "silent" }), intervalMs: 20 });
    const seen: LiveEvent[][] = [[], [], [], [], []];
    const unsubscribes = await Promise.all(seen.map((into) => feed.subscribe((events) => into.push(...events))));
    expect(started).toHaveBeenCalledTimes(1);
    expect(feed.listeners).toBe(5);

    await pg.database.db.insert(schema.auditEvents).values([row("live-1"), row("live-2")]);
    await eventually(() => seen.every((s) => s.length >= 2), 5_000);
    for (const s of seen) expect(s.map((e) => e.requestId)).toEqual(["live-1", "live-2"]);

    const timer = started.mock.results[0]?.value;
    for (const u of unsubscribes) u();
    unsubscribes[0]!(); // a second call is harmless
    expect(feed.listeners).toBe(0);
    expect(stopped).toHaveBeenCalledWith(timer);
  });

  it("leaves no poller behind when closed while it is starting", async () => {
    const started = vi.spyOn(globalThis, "setInterval");
    const feed = new LiveFeed({ db: pg.database.db, log: pino({ level: "silent" }), intervalMs: 20 });
    const pending = feed.subscribe(() => {});
    feed.close();
    await pending;
    expect(started).not.toHaveBeenCalled();
    expect(feed.listeners).toBe(0);
  });
});
