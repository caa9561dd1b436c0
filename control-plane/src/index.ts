/**
 * The control plane: admin API, key service, and their shared wiring. `createControlPlane`
 * builds everything from a config and (optionally) an existing store and database,
 * so the embedded stack and tests can share them.
 */
import pino, { type Logger } from "pino";
import { AUDIT_STREAM, hasStreams, MemoryStore, RedisStore, type Store } from "@portcullis/shared";
import type { ControlPlaneConfig } from "./config.ts";
import { type Database, migrate, openDatabase } from "./db/client.ts";
import { dnsTxtLookup, type TxtLookup } from "./domains/verify.ts";
import { createAdminApp } from "./admin/app.ts";
import { recordChanges } from "./admin/changes.ts";
import { AuditConsumer } from "./audit/consumer.ts";
import { mountAuditRoutes } from "./audit/routes.ts";
import { mountExplainRoute } from "./explain/index.ts";
import { createKeyServiceApp } from "./key-service/app.ts";
import { createControlPlaneMetrics, createKeyServiceMetrics, createMetricsApp } from "./ops/index.ts";
import { Publisher } from "./publish/index.ts";
import { TenantService } from "./tenants/service.ts";

export { loadControlPlaneConfig, type ControlPlaneConfig } from "./config.ts";
export { migrate, openDatabase, type Database } from "./db/client.ts";
export { TenantService } from "./tenants/service.ts";
export { Publisher } from "./publish/index.ts";
export { PLANS } from "./plans.ts";
export { AuditConsumer } from "./audit/consumer.ts";
export { canonical, chainHash, GENESIS } from "./audit/chain.ts";
export { verifyChain } from "./audit/verify.ts";
export * as schema from "./db/schema/index.ts";

export interface ControlPlaneDeps {
  store?: Store;
  database?: Database;
  log?: Logger;
  txtLookup?: TxtLookup;
  /** Apply migrations on open (the embedded quickstart and tests; never the router). */
  migrate?: boolean;
  /** Run the audit stream consumer in this process (default: the AUDIT_CONSUMER setting). */
  auditConsumer?: boolean;
}

export async function createControlPlane(config: Readonly<ControlPlaneConfig>, deps: ControlPlaneDeps = {}) {
  const log = deps.log ?? pino({ level: config.logLevel, base: { service: "control-plane" } });
  const ownsDb = !deps.database;
  const database = deps.database ?? (await openDatabase({ url: config.databaseUrl, dataDir: `${config.dataDir}/pglite` }));
  if (deps.migrate) await migrate(database);
  const ownsStore = !deps.store;
  let store: Store;
  if (deps.store) store = deps.store;
  else if (config.redisUrl) {
    const redis = new RedisStore({ url: config.redisUrl, prefix: config.redisPrefix });
    await redis.ready().catch((e) => log.warn({ err: e }, "Redis not ready; publishing will retry"));
    store = redis;
  } else store = new MemoryStore();
  const publisher = new Publisher(database.db, store, log);
  const tenants = new TenantService({
    db: database.db,
    publisher,
    config,
    txtLookup: deps.txtLookup ?? dnsTxtLookup(config.dnsServers),
  });
  const metrics = createControlPlaneMetrics();
  const keyServiceMetrics = createKeyServiceMetrics();
  const keyService = createKeyServiceApp({
    db: database.db,
    token: config.keyServiceToken,
    log,
    tenants,
    metrics: keyServiceMetrics,
  });
  const admin = createAdminApp({
    tenants,
    adminToken: config.adminToken,
    log,
    changes: recordChanges({ db: database.db, tenants, log, onRecorded: () => metrics.adminChanges.inc() }),
    observe: (method, status, seconds) =>
      metrics.adminRequests.observe({ method, status: `${Math.floor(status / 100)}xx` }, seconds),
    extend: (app) => {
      mountAuditRoutes(app, { db: database.db, tenants });
      mountExplainRoute(app, { db: database.db, apiHostname: config.apiHostname, sessionSecret: config.sessionSecret });
    },
  });
  const streams = hasStreams(store) ? store : null;
  const auditConsumer = new AuditConsumer({
    db: database.db,
    store: streams ?? new MemoryStore(),
    log,
    metrics: {
      written: (n) => metrics.auditWritten.inc(n),
      invalid: (n) => metrics.auditInvalid.inc(n),
      failed: () => metrics.auditWriteFailures.inc(),
      head: (seq) => metrics.auditChainHead.set(seq),
    },
  });
  if (deps.auditConsumer ?? config.auditConsumer) {
    if (streams) auditConsumer.start();
    else log.warn("the store offers no streams: audit events are not moved into the database");
  }
  const ops = createMetricsApp(metrics.registry, async () => {
    const backlog = streams ? await streams.streamLength(AUDIT_STREAM.key).catch(() => null) : null;
    if (backlog !== null) metrics.auditBacklog.set(backlog);
  });
  const keyServiceOps = createMetricsApp(keyServiceMetrics.registry);
  return {
    admin,
    keyService: keyService.app,
    /** `/healthz` and `/metrics` for the control plane's ops listener. */
    ops,
    /** `/healthz` and `/metrics` for the key service's ops listener. */
    keyServiceOps,
    metrics,
    auditConsumer,
    tenants,
    publisher,
    database,
    store,
    log,
    async close() {
      await auditConsumer.stop();
      keyService.close();
      await keyService.flushUsed();
      await publisher.flush();
      if (ownsStore) await store.close();
      if (ownsDb) await database.close();
    },
  };
}

export type ControlPlane = Awaited<ReturnType<typeof createControlPlane>>;
