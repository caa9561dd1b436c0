/**
 * Several control planes on one Postgres and one Redis, as separate processes: the
 * admin API answers on each, every singleton job has exactly one holder, and when a
 * control plane dies its jobs and the audit entries it had taken move to a survivor.
 */
import postgres from "postgres";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AUDIT_STREAM, LIMIT_KEYS, periodOf } from "@portcullis/shared";
import { unknownHostEvent } from "../helpers/audit-event.ts";
import { type ControlPlaneProcess, spawnControlPlane } from "../helpers/control-plane-process.ts";
import { createTestDatabase, type TestDatabase } from "../helpers/postgres.ts";
import { createTestStore, deleteKeys } from "../helpers/redis.ts";
import { eventually } from "../helpers/stack.ts";

const JOBS = ["domains.recheck", "usage.collect"] as const;
const leader = (job: string) => `portcullis_control_plane_job_leader{job="${job}"}`;

describe("two control planes on one Postgres and one Redis (separate processes)", () => {
  let testDb: TestDatabase;
  let store: Awaited<ReturnType<typeof createTestStore>>;
  let sql: postgres.Sql;
  let a: ControlPlaneProcess;
  let b: ControlPlaneProcess;

  beforeAll(async () => {
    testDb = await createTestDatabase();
    store = await createTestStore();
    sql = postgres(testDb.url, { max: 1, onnotice: () => {} });
    const options = { databaseUrl: testDb.url, prefix: store.prefix };
    [a, b] = await Promise.all([spawnControlPlane(options), spawnControlPlane(options)]);
  }, 60_000);
  afterAll(async () => {
    await a?.kill();
    await b?.kill();
    await sql?.end();
    await store?.close();
    if (store) await deleteKeys(store.prefix);
    await testDb?.drop();
  });

  /** Which process holds each job now, by its own metric (null: none, or both). */
  async function holders(): Promise<Record<string, "a" | "b" | null>> {
    const out: Record<string, "a" | "b" | null> = {};
    for (const job of JOBS) {
      const [ha, hb] = await Promise.all([a.metric(leader(job)).catch(() => 0), b.metric(leader(job)).catch(() => 0)]);
      out[job] = ha === 1 && hb !== 1 ? "a" : hb === 1 && ha !== 1 ? "b" : null;
    }
    return out;
  }

  it("answers the admin API on each: what one writes, the other reads", async () => {
    expect((await a.admin("POST", "/v1/tenants", { slug: "acme", name: "Acme" })).status).toBe(201);
    const read = await b.admin("GET", "/v1/tenants/acme");
    expect(read.status).toBe(200);
    expect(read.json().slug).toBe("acme");
    expect((await b.admin("POST", "/v1/tenants", { slug: "globex", name: "Globex" })).status).toBe(201);
    expect((await a.admin("GET", "/v1/tenants/globex")).status).toBe(200);
  });

  it("gives each singleton job exactly one holder, on the database's record too", async () => {
    await eventually(async () => Object.values(await holders()).every((h) => h !== null), 10_000, 100);
    const rows = await sql<{ name: string; holder: string }[]>`select name, holder from job_leases order by name`;
    expect(rows.map((r) => r.name)).toEqual([...JOBS].sort());
    // Steady: no change of holder while both live.
    const before = await holders();
    await new Promise((r) => setTimeout(r, 3_000));
    expect(await holders()).toEqual(before);
  });

  it("moves every job to the survivor when the holder is killed under load, counting usage once", async () => {
    const h = await holders();
    const victim = h["usage.collect"] === "a" ? a : b;
    const survivor = victim === a ? b : a;
    const tenantId = (await survivor.admin("GET", "/v1/tenants/acme")).json().id as string;

    // Routers' usage, added steadily while the collector moves it into Postgres.
    const period = periodOf(Date.now());
    let added = 0;
    let adding = true;
    const load = (async () => {
      while (adding) {
        await store.addCounters(LIMIT_KEYS.usagePending, { [`${period}|${tenantId}|r`]: 1 });
        added++;
        await new Promise((r) => setTimeout(r, 5));
      }
    })();

    await new Promise((r) => setTimeout(r, 500));
    await victim.kill();
    const movedIn = await eventually(
      async () => Object.values(await holders()).every((x) => x === (survivor === a ? "a" : "b")),
      15_000,
      100,
    );
    await new Promise((r) => setTimeout(r, 500));
    adding = false;
    await load;
    // Usage: what was added is in Postgres once the survivor has collected, none twice
    // (more would be a batch counted twice; less, a batch lost with the victim).
    let stored = 0;
    await eventually(
      async () => {
        const [row] = await sql<{ requests: number }[]>`
          select coalesce(sum(requests), 0)::int as requests from usage where tenant_id = ${tenantId}`;
        stored = row?.requests ?? 0;
        return stored >= added;
      },
      15_000,
      200,
    );
    expect(stored).toBe(added);
    console.log(`jobs moved to the survivor ${Math.round(movedIn)} ms after the kill; ${added} usage counts stored once`);
  }, 60_000);

  it("stores the audit entries a dead control plane had taken, each once, from another one", async () => {
    // Both gone: entries taken by a member that died before storing them.
    await a.kill();
    await b.kill();
    const events = Array.from({ length: 20 }, (_, i) => unknownHostEvent(`req_failover_${i}`));
    await store.streamAppend(
      AUDIT_STREAM.key,
      events.map((e) => JSON.stringify(e)),
      AUDIT_STREAM.defaultMaxLen,
    );
    const taken = await store.streamRead(AUDIT_STREAM.key, {
      group: AUDIT_STREAM.group,
      consumer: "dead-control-plane",
      count: 1_000,
      blockMs: 0,
      pending: false,
    });
    expect(taken.filter((e) => e.data.includes("req_failover_"))).toHaveLength(events.length);
    // Another control plane starts: it claims them once they have been idle long enough.
    const c = await spawnControlPlane({ databaseUrl: testDb.url, prefix: store.prefix });
    try {
      await eventually(
        async () => {
          const [row] = await sql<{ n: number }[]>`
            select count(*)::int as n from audit_events where request_id like 'req_failover_%'`;
          return row?.n === events.length;
        },
        20_000,
        200,
      );
      const dupes = await sql`
        select request_id from audit_events where request_id like 'req_failover_%' group by request_id having count(*) > 1`;
      expect(dupes).toEqual([]);
    } finally {
      await c.kill();
    }
  }, 60_000);
});
