import { describe, expect, it } from "vitest";
import type { AuditEvent } from "@portcullis/shared";
import { type AuditKind, BatchingAuditSink } from "./index.ts";

function event(decision: "allow" | "refuse", clientIp: string, reason = "unknown_host"): AuditEvent {
  return {
    time: new Date(0).toISOString(),
    requestId: `${decision}-${clientIp}-${Math.random()}`,
    decision,
    reason: decision === "allow" ? "allowed" : reason,
    tenantId: null,
    host: "h.example",
    method: "GET",
    path: "/",
    credential: "none",
    clientIp,
    status: decision === "allow" ? 200 : 404,
  };
}

function sink(options: Partial<ConstructorParameters<typeof BatchingAuditSink>[0]> = {}) {
  const written: { kind: AuditKind; events: AuditEvent[] }[] = [];
  const s = new BatchingAuditSink({
    writer: async (batch, kind) => void written.push({ kind, events: batch }),
    intervalMs: 60_000,
    ...options,
  });
  return { s, written };
}

describe("BatchingAuditSink", () => {
  it("writes allows before refusals, whatever the order they came in", async () => {
    const { s, written } = sink();
    s.record(event("refuse", "1.1.1.1"));
    s.record(event("allow", "2.2.2.2"));
    await s.close();
    expect(written.map((w) => w.kind)).toEqual(["allow", "refuse"]);
  });

  it("aggregates refusals beyond their queue per source, then per reason once sources run out", async () => {
    const { s, written } = sink({ refusalQueueMax: 2, aggregateMax: 2 });
    for (const ip of ["a", "b", "a", "a", "b", "c", "d", "c"]) s.record(event("refuse", ip));
    s.record(event("refuse", "e", "key_invalid"));
    expect(s.aggregated).toBe(7);
    await s.close();
    const out = written.flatMap((w) => w.events);
    // Two queued as they came, then per source a, b; c, d and e share the overflow per reason.
    expect(out.map((e) => [e.clientIp, e.reason, e.count ?? 1])).toEqual([
      ["a", "unknown_host", 1],
      ["b", "unknown_host", 1],
      ["a", "unknown_host", 2],
      ["b", "unknown_host", 1],
      ["*", "unknown_host", 3],
      ["*", "key_invalid", 1],
    ]);
    expect(out.reduce((n, e) => n + (e.count ?? 1), 0)).toBe(9);
    expect(new Set(out.map((e) => e.requestId)).size).toBe(out.length);
  });

  it("keeps aggregating while the writer fails, and writes each source once when it is back", async () => {
    let up = false;
    const written: AuditEvent[] = [];
    const s = new BatchingAuditSink({
      writer: async (batch) => {
        if (!up) throw new Error("down");
        written.push(...batch);
      },
      refusalQueueMax: 1,
      intervalMs: 60_000,
    });
    for (let i = 0; i < 5; i++) {
      s.record(event("refuse", "x"));
      await s.flush();
    }
    up = true;
    await s.close();
    expect(written.map((e) => e.count ?? 1)).toEqual([1, 4]);
  });

  it("closed mode: reservations hold room, and allows the writer refuses stay queued", async () => {
    let room = 1;
    const written: AuditEvent[] = [];
    const s = new BatchingAuditSink({
      writer: async (batch) => {
        const took = Math.min(room, batch.length);
        room -= took;
        written.push(...batch.slice(0, took));
        return batch.length - took;
      },
      maxQueue: 2,
      failMode: "closed",
      intervalMs: 60_000,
    });
    expect(s.reserveAllow()).toBe(true);
    expect(s.reserveAllow()).toBe(true);
    expect(s.reserveAllow()).toBe(false);
    s.record(event("allow", "1"), true);
    s.record(event("allow", "2"), true);
    await s.flush();
    expect(written).toHaveLength(1);
    expect(s.depth).toBe(1);
    expect(s.dropped).toBe(0);
    expect(s.reserveAllow()).toBe(true);
    // A reservation that ended as a refusal gives its room back.
    s.record(event("refuse", "3"), true);
    expect(s.reserveAllow()).toBe(true);
    room = 10;
    await s.flush();
    expect(s.depth).toBe(0);
    expect(written).toHaveLength(3);
  });
});

describe("BatchingAuditSink under a steady stream", () => {
  it("a trickle of allows arriving during every write does not hold refusals back", async () => {
    let s: BatchingAuditSink | undefined;
    const kinds: AuditKind[] = [];
    s = new BatchingAuditSink({
      writer: async (_batch, kind) => {
        kinds.push(kind);
        // Each write, a new allow arrives.
        if (kind === "allow" && kinds.length < 1_000) s?.record(event("allow", "t"));
      },
      batchSize: 1,
      intervalMs: 60_000,
    });
    s.record(event("allow", "a"));
    s.record(event("refuse", "r"));
    await s.flush();
    expect(kinds).toContain("refuse");
    // The flush wrote only what was queued when it began (one allow, one refusal).
    expect(kinds).toEqual(["allow", "refuse"]);
    expect(s.depth).toBe(1);
    await s.close();
  });

  it("a trickle of refusals arriving during every write does not hold allows back", async () => {
    let s: BatchingAuditSink | undefined;
    const kinds: AuditKind[] = [];
    s = new BatchingAuditSink({
      writer: async (_batch, kind) => {
        kinds.push(kind);
        if (kind === "refuse" && kinds.length < 1_000) s?.record(event("refuse", `r${kinds.length}`));
      },
      batchSize: 1,
      intervalMs: 60_000,
    });
    s.record(event("refuse", "r"));
    s.record(event("refuse", "r"));
    s.record(event("refuse", "r"));
    await s.flush();
    expect(kinds).toEqual(["refuse", "refuse", "refuse"]);
    // An allow queued while refusals are being written goes out in the next batch, not after them.
    const waiting = s.flush();
    s.record(event("allow", "a"));
    await waiting;
    await s.flush();
    expect(kinds.indexOf("allow")).toBeGreaterThan(-1);
    expect(kinds.indexOf("allow")).toBeLessThan(kinds.length - 1);
    await s.close();
  });

  it("keeps the refusal queue bounded while the stream refuses refusals, whatever the number of sources", async () => {
    const s = new BatchingAuditSink({
      // The stream is at its refusal bound: every refusal is refused.
      writer: async (batch, kind) => (kind === "refuse" ? batch.length : 0),
      refusalQueueMax: 10,
      aggregateMax: 5,
      intervalMs: 60_000,
    });
    for (let round = 0; round < 50; round++) {
      for (let i = 0; i < 200; i++) s.record(event("refuse", `10.0.${round}.${i}`));
      await s.flush();
      expect(s.depth).toBeLessThanOrEqual(10 + 5 + 1);
    }
    // Every refusal is either counted as dropped or still held in an aggregate.
    expect(s.droppedByKind.refuse + s.aggregated).toBeGreaterThanOrEqual(50 * 200);
  });

  it("counts an aggregate the stream refuses as every refusal it stands for", async () => {
    const s = new BatchingAuditSink({
      writer: async (batch) => batch.filter((e) => e.count !== undefined).length,
      refusalQueueMax: 2,
      intervalMs: 60_000,
    });
    for (let i = 0; i < 7; i++) s.record(event("refuse", "x"));
    expect(s.aggregated).toBe(5);
    await s.close();
    expect(s.droppedByKind.refuse).toBe(5);
    expect(s.droppedByKind.allow).toBe(0);
    expect(s.depth).toBe(0);
  });
});
