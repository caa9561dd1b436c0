/**
 * Portcullis's router as a benchmark process: `startRouter` with the settings it is
 * given (Redis or its own in-process store, the orchestrator's key service), plus a
 * few IPC commands the harness needs: seed N synthetic tenants straight into the
 * in-memory cache (every check still runs on each request), drop cached entries to
 * force a cold lookup, and report heap use.
 */
import { writeFileSync } from "node:fs";
import { writeHeapSnapshot } from "node:v8";
import { Session } from "node:inspector";
import pino from "pino";
import { AUDIT_STREAM, CACHE, type TenantRecord } from "@portcullis/shared";
import { loadRouterConfig, startRouter } from "@portcullis/router";
import { hostAt, settings } from "./common.ts";

const s = settings<{ env: Record<string, string> }>();
const config = loadRouterConfig(s.env, { port: 0, opsPort: 0, host: "127.0.0.1", opsHost: "127.0.0.1" });
// Audit as in production: batches appended to the store's durable stream (the
// orchestrator empties the stream between runs; nothing consumes it meanwhile).
const router = await startRouter(config, { log: pino({ level: "silent" }) });
const { resolver, store } = router;

type Command =
  | { type: "seed"; count: number; prefix: string; domain: string; template: string; persist?: boolean }
  | { type: "unseed" }
  | { type: "forget"; hosts: string[]; tenantIds: string[]; keyHashes: string[]; fromStore: boolean }
  | { type: "heap" }
  | { type: "heap-snapshot"; file: string }
  | { type: "clear-audit" }
  | { type: "flush-audit" }
  | { type: "alloc-start"; survivors: boolean }
  | { type: "alloc-stop"; file: string }
  | { type: "cpu-start" }
  | { type: "cpu-stop"; file: string };

// CPU profile and sampled allocation profile (what the request path allocates, including what the
// young-generation GC has already collected), for `bench:hot --rate-profile / --alloc-profile`.
const inspector = new Session();
inspector.connect();
const post = (method: string, params?: object) =>
  new Promise<unknown>((resolve, reject) =>
    inspector.post(method, params, (error, result) => (error ? reject(error) : resolve(result))),
  );
/** Stops a profiler and writes its profile to `file`. */
async function stopInto(method: string, file: string): Promise<string> {
  const { profile } = (await post(method)) as { profile: unknown };
  writeFileSync(file, JSON.stringify(profile));
  return file;
}

function heap(): number {
  (globalThis as { gc?: () => void }).gc?.();
  (globalThis as { gc?: () => void }).gc?.();
  return process.memoryUsage().heapUsed;
}

let seedVersion = 0;

process.on("message", async (raw) => {
  const m = raw as Command & { id: number };
  let answer: unknown = null;
  if (m.type === "seed") {
    // Each tenant gets its own record objects, as if each had been parsed from JSON.
    const template = JSON.parse(m.template) as TenantRecord;
    const seeded: { id: string; host: string; tenant: TenantRecord }[] = [];
    // A newer version each time: the store keeps what this seed wrote, not an earlier one's.
    const v = ++seedVersion;
    for (let i = 0; i < m.count; i++) {
      const slug = `${m.prefix}${String(i).padStart(4, "0")}`;
      const id = `ten_bench${m.prefix}${i}`;
      const tenant: TenantRecord = {
        ...structuredClone(template),
        id,
        slug,
        binding: { server: `pg-${slug}.internal:5432`, database: slug },
      };
      seeded.push({ id, host: hostAt(i, m.domain, m.prefix), tenant });
    }
    // First in the store, as the control plane would have put them: a refresh-ahead
    // re-read then finds the same version and keeps the seeded entry (runs longer than
    // its first 5 s). Writes go out 1,000 at a time.
    if (m.persist) {
      let writes: Promise<unknown>[] = [];
      for (const { id, host, tenant } of seeded) {
        writes.push(
          store.setIfNewer(CACHE.tenant.key(id), JSON.stringify({ v, tenant }), v, 3_600_000, "authoritative"),
          store.setIfNewer(CACHE.host.key(host), JSON.stringify({ v, tenantId: id }), v, 3_600_000, "authoritative"),
        );
        if (writes.length >= 1_000) {
          await Promise.all(writes);
          writes = [];
        }
      }
      await Promise.all(writes);
    }
    // Then in memory, all at once: every entry starts its freshness as the run does.
    for (const { id, host, tenant } of seeded) {
      resolver.tenants.seed(id, { v, tenant });
      resolver.hosts.seed(host, { v, tenantId: id });
    }
    answer = { hosts: resolver.hosts.size, tenants: resolver.tenants.size };
  } else if (m.type === "unseed") {
    resolver.clear();
  } else if (m.type === "forget") {
    for (const h of m.hosts) resolver.hosts.invalidate(h);
    for (const t of m.tenantIds) resolver.tenants.invalidate(t);
    for (const k of m.keyHashes) resolver.keys.invalidate(k);
    if (m.fromStore)
      await store.del(
        ...m.hosts.map((h) => CACHE.host.key(h)),
        ...m.tenantIds.map((t) => CACHE.tenant.key(t)),
        ...m.keyHashes.map((k) => CACHE.apiKey.key(k)),
      );
  } else if (m.type === "flush-audit") {
    await router.audit.flush();
  } else if (m.type === "clear-audit") {
    await router.audit.flush();
    await store.del(AUDIT_STREAM.key);
  } else if (m.type === "alloc-start") {
    await post("HeapProfiler.enable");
    await post("HeapProfiler.startSampling", {
      samplingInterval: 1024,
      includeObjectsCollectedByMajorGC: true,
      // With `survivors`, only what outlived a young-generation collection.
      includeObjectsCollectedByMinorGC: !m.survivors,
    });
  } else if (m.type === "alloc-stop") {
    answer = await stopInto("HeapProfiler.stopSampling", m.file);
  } else if (m.type === "cpu-start") {
    await post("Profiler.enable");
    await post("Profiler.setSamplingInterval", { interval: 100 });
    await post("Profiler.start");
  } else if (m.type === "cpu-stop") {
    answer = await stopInto("Profiler.stop", m.file);
  } else if (m.type === "heap") {
    answer = heap();
  } else if (m.type === "heap-snapshot") {
    answer = writeHeapSnapshot(m.file);
  }
  process.send?.({ type: "answer", id: m.id, answer });
});

process.send?.({ type: "ready", port: router.port, opsPort: router.opsPort });
