/**
 * The control plane: admin API, key service, and their shared wiring. `createControlPlane`
 * builds everything from a config and (optionally) an existing store and database,
 * so the embedded stack and tests can share them.
 */
import pino, { type Logger } from "pino";
import { MemoryStore, RedisStore, type Store } from "@portcullis/shared";
import type { ControlPlaneConfig } from "./config.ts";
import { type Database, migrate, openDatabase } from "./db/client.ts";
import { dnsTxtLookup, type TxtLookup } from "./domains/verify.ts";
import { createAdminApp } from "./admin/app.ts";
import { createKeyServiceApp } from "./key-service/app.ts";
import { Publisher } from "./publish/index.ts";
import { TenantService } from "./tenants/service.ts";

export { loadControlPlaneConfig, type ControlPlaneConfig } from "./config.ts";
export { migrate, openDatabase, type Database } from "./db/client.ts";
export { TenantService } from "./tenants/service.ts";
export { Publisher } from "./publish/index.ts";
export { createKeyServiceApp, type KeyServiceDeps } from "./key-service/app.ts";
export { PLANS } from "./plans.ts";

export interface ControlPlaneDeps {
  store?: Store;
  database?: Database;
  log?: Logger;
  txtLookup?: TxtLookup;
  /** Apply migrations on open (the embedded quickstart and tests; never the router). */
  migrate?: boolean;
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
  const keyService = createKeyServiceApp({
    db: database.db,
    token: config.keyServiceToken,
    log,
    tenants,
    usageFlushMs: config.keyUsageFlushMs,
  });
  const admin = createAdminApp({ tenants, adminToken: config.adminToken, log });
  return {
    admin,
    keyService: keyService.app,
    tenants,
    publisher,
    database,
    store,
    log,
    async close() {
      keyService.close();
      await keyService.flushUsed();
      await publisher.flush();
      if (ownsStore) await store.close();
      if (ownsDb) await database.close();
    },
  };
}

export type ControlPlane = Awaited<ReturnType<typeof createControlPlane>>;
