/**
 * Audit under pressure (SECURITY.md guarantee 15). Refusals are unauthenticated and
 * cheap; a flood of them must not leave later allows unaudited. Over real sockets:
 * the router on a real Redis (through a relay the test cuts, so queues build up as
 * in an outage), the control plane moving the stream into a real Postgres.
 *
 * - allows keep their own in-memory capacity, and a refusal flood is aggregated per
 *   source with exact counts (the trail's counts add up to what was refused);
 * - refusals may fill only their share of the durable stream;
 * - AUDIT_FAIL_MODE=closed refuses (503 `audit_unavailable`) an allow whose event
 *   cannot be kept, without contacting the upstream, where the open mode forwards
 *   it and counts the drop.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sql } from "drizzle-orm";
import { AUDIT_STREAM, hasStreams, RedisStore, type Store, type StreamStore } from "@portcullis/shared";
import type { RunningRouter } from "@portcullis/router";
import { rows } from "../../control-plane/src/db/client.ts";
import { TEST_REDIS_URL } from "../helpers/env.ts";
import { send } from "../helpers/http.ts";
import { eventually, startTestStack, type TestStack } from "../helpers/stack.ts";
import { TcpProxy } from "../helpers/tcp-proxy.ts";
import { failOnUnhandledRejections } from "../helpers/unhandled.ts";

failOnUnhandledRejections();

function streams(store: Store): StreamStore {
  if (!hasStreams(store)) throw new Error("the stack's store offers no streams");
  return store;
}

async function metric(router: RunningRouter, line: RegExp): Promise<string | undefined> {
  const m = await send(router.opsPort, "127.0.0.1", "/metrics");
  return m.text.split("\n").find((l) => line.test(l));
}

/** A router whose Redis connection runs through a relay the test can cut. */
async function routerViaRelay(stack: TestStack, overrides: Parameters<TestStack["addRouter"]>[0]) {
  const redis = new URL(TEST_REDIS_URL);
  const relay = await new TcpProxy(redis.hostname, Number(redis.port || 6379)).start();
  const store = new RedisStore({ url: `redis://127.0.0.1:${relay.port}`, prefix: stack.prefix });
  await store.ready();
  const router = await stack.addRouter(overrides, { store });
  return {
    router,
    relay,
    close: async () => {
      await relay.stop();
      await store.close();
    },
  };
}

describe("a refusal flood while the store is unreachable", () => {
  let stack: TestStack;
  beforeAll(async () => {
    stack = await startTestStack({ audit: "stream" });
  });
  afterAll(async () => {
    await stack?.close();
  });

  it("leaves every allow audited and aggregates the refusals per source with exact counts", async () => {
    const acme = await stack.tenant("acme");
    const r = await routerViaRelay(stack, { auditQueueMax: 50, auditRefusalQueueMax: 20 });
    try {
      // Warm: the tenant is in the router's memory before its store goes away.
      expect((await stack.request(acme.host, "/warm", {}, r.router)).status).toBe(200);
      await r.router.audit.flush();
      await r.relay.stop();

      const flood = `flood-${Date.now().toString(36)}.localhost`;
      const FLOOD = 300;
      for (let i = 0; i < FLOOD; i++) {
        expect((await stack.request(flood, "/", {}, r.router)).status).toBe(404);
      }
      const allowIds: string[] = [];
      for (let i = 0; i < 20; i++) {
        const a = await stack.request(acme.host, `/after-flood/${i}`, {}, r.router);
        expect(a.status).toBe(200);
        allowIds.push(String(a.headers["x-request-id"]));
      }
      // Nothing lost in memory: 20 allows, 20 queued refusals, one aggregate for the rest.
      expect(r.router.audit.droppedByKind).toEqual({ allow: 0, refuse: 0 });
      expect(r.router.audit.aggregated).toBe(FLOOD - 20);
      expect(r.router.audit.depth).toBe(20 + 20 + 1);

      await r.relay.start(r.relay.port);
      await eventually(
        async () => {
          await r.router.audit.flush();
          return r.router.audit.depth === 0;
        },
        15_000,
        50,
      );
      await eventually(async () => (await streams(stack.store).streamLength(AUDIT_STREAM.key)) === 0, 15_000, 50);

      const db = stack.cp.database.db;
      const allows = await rows<{ request_id: string; n: number }>(
        db,
        sql`select request_id, count(*)::int as n from audit_events
            where request_id in (select jsonb_array_elements_text(${JSON.stringify(allowIds)}::jsonb))
            group by request_id`,
      );
      expect(allows).toHaveLength(20);
      expect(allows.every((a) => a.n === 1)).toBe(true);

      const refusals = await rows<{ count: number; reason: string; client_ip: string }>(
        db,
        sql`select count, reason, client_ip from audit_events where host = ${flood}`,
      );
      expect(refusals.reduce((n, x) => n + x.count, 0)).toBe(FLOOD);
      expect(refusals.every((x) => x.reason === "unknown_host")).toBe(true);
      const aggregate = refusals.filter((x) => x.count > 1);
      expect(aggregate).toEqual([{ count: FLOOD - 20, reason: "unknown_host", client_ip: "127.0.0.1" }]);

      // The admin API shows the aggregate's count; the metrics count every refusal.
      const listed = await stack.admin("GET", `/v1/audit?decision=refuse&reason=unknown_host&limit=500`);
      const counted = (listed.json().events as { host: string; count?: number }[])
        .filter((e) => e.host === flood)
        .reduce((n, e) => n + (e.count ?? 1), 0);
      expect(counted).toBe(FLOOD);
      expect(await metric(r.router, /^portcullis_audit_refusals_aggregated_total /)).toBe(
        `portcullis_audit_refusals_aggregated_total ${FLOOD - 20}`,
      );
      expect(await metric(r.router, /^portcullis_decisions_total\{decision="refuse",reason="unknown_host"\}/)).toBe(
        `portcullis_decisions_total{decision="refuse",reason="unknown_host"} ${FLOOD}`,
      );
      expect(await metric(r.router, /^portcullis_audit_dropped_total\{decision="allow"\}/)).toBeUndefined();

      // The chain covers the aggregate's count.
      const { verifyChain } = await import("../../control-plane/src/audit/verify.ts");
      const v = await verifyChain(db, { stream: AUDIT_STREAM.chain });
      expect(v.ok).toBe(true);
    } finally {
      await r.close();
    }
  });
});

describe("the durable stream's bound", () => {
  let stack: TestStack;
  beforeAll(async () => {
    // No consumer: the stream only fills.
    stack = await startTestStack({ audit: "stream", auditConsumer: false, router: { auditStreamMaxLen: 40 } });
  });
  afterAll(async () => {
    await stack?.close();
  });

  it("lets refusals fill only their share, so allows still fit", async () => {
    const acme = await stack.tenant("acme");
    for (let i = 0; i < 100; i++) expect((await stack.request("nobody.localhost")).status).toBe(404);
    await stack.router.audit.flush();
    expect(await streams(stack.store).streamLength(AUDIT_STREAM.key)).toBe(20);
    expect(stack.router.audit.droppedByKind).toEqual({ allow: 0, refuse: 80 });
    for (let i = 0; i < 10; i++) expect((await stack.request(acme.host)).status).toBe(200);
    await stack.router.audit.flush();
    expect(await streams(stack.store).streamLength(AUDIT_STREAM.key)).toBe(30);
    expect(stack.router.audit.droppedByKind).toEqual({ allow: 0, refuse: 80 });
    expect(await metric(stack.router, /^portcullis_audit_dropped_total\{decision="refuse"\}/)).toBe(
      'portcullis_audit_dropped_total{decision="refuse"} 80',
    );
  });
});

describe("AUDIT_FAIL_MODE", () => {
  let stack: TestStack;
  beforeAll(async () => {
    stack = await startTestStack({ audit: "stream" });
  });
  afterAll(async () => {
    await stack?.close();
  });

  it("closed: an allow that cannot be audited is refused with 503 and never reaches the upstream", async () => {
    const acme = await stack.tenant("closed");
    const r = await routerViaRelay(stack, { auditQueueMax: 5, auditFailMode: "closed" });
    try {
      expect((await stack.request(acme.host, "/warm", {}, r.router)).status).toBe(200);
      await r.router.audit.flush();
      await r.relay.stop();
      const before = acme.upstream.requests.length;
      const statuses: number[] = [];
      let refusal = "";
      for (let i = 0; i < 12; i++) {
        const a = await stack.request(acme.host, `/during/${i}`, {}, r.router);
        statuses.push(a.status);
        if (a.status === 503) refusal = a.text;
      }
      expect(statuses).toEqual([200, 200, 200, 200, 200, 503, 503, 503, 503, 503, 503, 503]);
      expect(JSON.parse(refusal).error.code).toBe("audit_unavailable");
      // Only the five that could be audited were forwarded.
      expect(acme.upstream.requests.length - before).toBe(5);
      expect(r.router.audit.droppedByKind.allow).toBe(0);
      expect(await metric(r.router, /^portcullis_decisions_total\{decision="refuse",reason="audit_unavailable"\}/)).toBe(
        'portcullis_decisions_total{decision="refuse",reason="audit_unavailable"} 7',
      );

      // The store comes back: the held events are written, and allows flow again.
      await r.relay.start(r.relay.port);
      await eventually(
        async () => {
          await r.router.audit.flush();
          return r.router.audit.depth === 0;
        },
        15_000,
        50,
      );
      expect((await stack.request(acme.host, "/after", {}, r.router)).status).toBe(200);
    } finally {
      await r.close();
    }
  });

  it("open (the default): the same allows are forwarded and the ones that did not fit are counted", async () => {
    const acme = await stack.tenant("open");
    const r = await routerViaRelay(stack, { auditQueueMax: 5 });
    try {
      expect((await stack.request(acme.host, "/warm", {}, r.router)).status).toBe(200);
      await r.router.audit.flush();
      await r.relay.stop();
      const before = acme.upstream.requests.length;
      for (let i = 0; i < 12; i++) expect((await stack.request(acme.host, `/during/${i}`, {}, r.router)).status).toBe(200);
      expect(acme.upstream.requests.length - before).toBe(12);
      expect(r.router.audit.droppedByKind.allow).toBe(7);
      expect(await metric(r.router, /^portcullis_audit_dropped_total\{decision="allow"\}/)).toBe(
        'portcullis_audit_dropped_total{decision="allow"} 7',
      );
    } finally {
      await r.close();
    }
  });

  it("closed: allows the full stream refuses stay queued, never dropped, until it takes them", async () => {
    const local = await startTestStack({
      audit: "stream",
      auditConsumer: false,
      router: { auditFailMode: "closed", auditQueueMax: 5, auditStreamMaxLen: 3 },
    });
    try {
      const acme = await local.tenant("full");
      const before = acme.upstream.requests.length;
      const statuses: number[] = [];
      for (let i = 0; i < 10; i++) {
        statuses.push((await local.request(acme.host, `/r/${i}`)).status);
        await local.router.audit.flush();
      }
      // 3 in the stream, 5 held in memory, then refused.
      expect(statuses).toEqual([200, 200, 200, 200, 200, 200, 200, 200, 503, 503]);
      expect(acme.upstream.requests.length - before).toBe(8);
      expect(await streams(local.store).streamLength(AUDIT_STREAM.key)).toBe(3);
      // Held: the 5 allows. The 2 refusals found the stream past its refusal bound:
      // dropped and counted (the closed mode holds allows only).
      expect(local.router.audit.depth).toBe(5);
      expect(local.router.audit.droppedByKind).toEqual({ allow: 0, refuse: 2 });
      // A consumer drains the stream: the held allows land, and allows are forwarded again.
      const s = streams(local.store);
      const taken = await s.streamRead(AUDIT_STREAM.key, {
        group: "drain",
        consumer: "t",
        count: 100,
        blockMs: 0,
        pending: false,
      });
      await s.streamAck(
        AUDIT_STREAM.key,
        "drain",
        taken.map((e) => e.id),
      );
      await local.router.audit.flush();
      expect(await s.streamLength(AUDIT_STREAM.key)).toBe(3);
      expect(local.router.audit.depth).toBe(2);
      expect((await local.request(acme.host, "/after")).status).toBe(200);
      expect(local.router.audit.droppedByKind.allow).toBe(0);
    } finally {
      await local.close();
    }
  });
});
