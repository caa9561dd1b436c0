/**
 * The control plane: admin API, key service, and their shared wiring. `createControlPlane`
 * builds everything from a config and (optionally) an existing store and database,
 * so the embedded stack and tests can share them.
 */
import pino, { type Logger } from "pino";
import { INVALIDATION_CHANNEL, Invalidation, MemoryStore, RedisStore, type Store } from "@portcullis/shared";
import { type AlertSender, webhookAlerts } from "./alerts/index.ts";
import { ApplyService } from "./apply/index.ts";
import { DomainRechecker } from "./domains/recheck.ts";
import { TlsAsk } from "./domains/tls-ask.ts";
import type { ControlPlaneConfig } from "./config.ts";
import { type Database, migrate, openDatabase } from "./db/client.ts";
import { dnsTxtLookup, type TxtLookup } from "./domains/verify.ts";
import { createAdminApp } from "./admin/app.ts";
import { createKeyServiceApp } from "./key-service/app.ts";
import { Publisher } from "./publish/index.ts";
import { TenantService } from "./tenants/service.ts";
import { mountUsageRoutes, UsageCollector } from "./usage/index.ts";

export { loadControlPlaneConfig, type ControlPlaneConfig } from "./config.ts";
export { migrate, openDatabase, type Database } from "./db/client.ts";
export { TenantService } from "./tenants/service.ts";
export { Publisher } from "./publish/index.ts";
export { PLANS } from "./plans.ts";
export { UsageCollector, type UsageView } from "./usage/index.ts";
export { DomainRechecker, type RecheckReport } from "./domains/recheck.ts";
export { TlsAsk } from "./domains/tls-ask.ts";
export { webhookAlerts, type Alert, type AlertSender } from "./alerts/index.ts";

export interface ControlPlaneDeps {
  store?: Store;
  database?: Database;
  log?: Logger;
  txtLookup?: TxtLookup;
  /** Apply migrations on open (the embedded quickstart and tests; never the router). */
  migrate?: boolean;
  /** How often metered usage moves from the store into Postgres (default 5 s). */
  usageIntervalMs?: number;
  alerts?: AlertSender;
  /**
   * Run the periodic jobs (custom-domain re-verification) in this process; off for a
   * process that only serves the key service. Default on.
   */
  jobs?: boolean;
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
  const txtLookup = deps.txtLookup ?? dnsTxtLookup(config.dnsServers);
  const tenants = new TenantService({ db: database.db, publisher, config, txtLookup });
  const alerts = deps.alerts ?? webhookAlerts(config.alertWebhookUrl);
  const domains = new DomainRechecker({
    db: database.db,
    publisher,
    txtLookup,
    alerts,
    graceMs: config.domainRecheckGraceMs,
    unverifiedTtlMs: config.domainUnverifiedTtlMs,
    log,
  });
  if (deps.jobs !== false) domains.start(config.domainRecheckIntervalMs);

  // TLS ask answers: coherent with this process's writes at once (publisher hook), with
  // other control-plane processes' through the invalidation channel.
  const tlsAsk = new TlsAsk({ db: database.db });
  publisher.onPublish((change) => tlsAsk.invalidate(change));
  const unsubscribe = await store
    .subscribe(
      INVALIDATION_CHANNEL,
      (message) => {
        try {
          const event = Invalidation.safeParse(JSON.parse(message));
          if (event.success) tlsAsk.invalidate(event.data);
          else tlsAsk.clear();
        } catch {
          tlsAsk.clear();
        }
      },
      () => tlsAsk.clear(),
    )
    .catch((error) => {
      log.warn({ err: error }, "no invalidation subscription; TLS ask answers expire by TTL only");
      return null;
    });

  const apply = new ApplyService({ db: database.db, publisher, config });
  const keyService = createKeyServiceApp({ db: database.db, token: config.keyServiceToken, log, tenants });
  const usage = new UsageCollector({
    db: database.db,
    store,
    log,
    ...(deps.usageIntervalMs ? { intervalMs: deps.usageIntervalMs } : {}),
  });
  const admin = createAdminApp({
    tenants,
    adminToken: config.adminToken,
    log,
    tlsAsk,
    apply,
    extend: (app) => mountUsageRoutes(app, { collector: usage, findTenant: (ref) => tenants.find(ref) }),
  });
  return {
    admin,
    keyService: keyService.app,
    tenants,
    domains,
    tlsAsk,
    apply,
    publisher,
    usage,
    database,
    store,
    log,
    async close() {
      await domains.stop();
      await unsubscribe?.().catch(() => {});
      keyService.close();
      await usage.close();
      await keyService.flushUsed();
      await publisher.flush();
      if (ownsStore) await store.close();
      if (ownsDb) await database.close();
    },
  };
}

export type ControlPlane = Awaited<ReturnType<typeof createControlPlane>>;
