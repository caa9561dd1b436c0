/**
 * The control plane: admin API, key service, and their shared wiring. `createControlPlane`
 * builds everything from a config and (optionally) an existing store and database,
 * so the embedded stack and tests can share them.
 */
import pino, { type Logger } from "pino";
import {
  AUDIT_STREAM,
  CircuitBreaker,
  hasStreams,
  INVALIDATION_CHANNEL,
  Invalidation,
  LEDGER_KINDS,
  MemoryStore,
  RedisStore,
  type Store,
} from "@portcullis/shared";
import { type AlertSender, webhookAlerts } from "./alerts/index.ts";
import { ApplyService } from "./apply/index.ts";
import { DomainRechecker } from "./domains/recheck.ts";
import { JobLease } from "./jobs/lease.ts";
import { TlsAsk } from "./domains/tls-ask.ts";
import type { ControlPlaneConfig } from "./config.ts";
import { type Database, migrate, openDatabase } from "./db/client.ts";
import { databaseBreaker } from "./db/guard.ts";
import { dnsTxtLookup, type TxtLookup } from "./domains/verify.ts";
import { createAdminApp } from "./admin/app.ts";
import { recordChanges } from "./admin/changes.ts";
import { AuditConsumer } from "./audit/consumer.ts";
import { mountAuditRoutes } from "./audit/routes.ts";
import { createConsole, LiveFeed } from "./console/index.ts";
import { mountExplainRoute } from "./explain/index.ts";
import { createKeyServiceApp } from "./key-service/app.ts";
import { BREAKER_STATE_VALUE, createControlPlaneMetrics, createKeyServiceMetrics, createMetricsApp } from "./ops/index.ts";
import { Publisher } from "./publish/index.ts";
import { mountContextKeyRoutes } from "./tenants/context-key.ts";
import { TenantService } from "./tenants/service.ts";
import { mountUsageHistoryRoute } from "./usage/history.ts";
import { mountUsageRoutes, UsageCollector } from "./usage/index.ts";

export { loadControlPlaneConfig, type ControlPlaneConfig } from "./config.ts";
export { migrate, openDatabase, type Database } from "./db/client.ts";
export { TenantService } from "./tenants/service.ts";
export { Publisher } from "./publish/index.ts";
export { createKeyServiceApp, type KeyServiceDeps } from "./key-service/app.ts";
export { reportUnhandledRejections } from "./ops/index.ts";
export { databaseUnavailable } from "./db/errors.ts";
export { PLANS } from "./plans.ts";
export { UsageCollector, type UsageView } from "./usage/index.ts";
export { JobLease, type JobLeaseOptions } from "./jobs/lease.ts";
export { DomainRechecker, type RecheckReport } from "./domains/recheck.ts";
export { TlsAsk } from "./domains/tls-ask.ts";
export { webhookAlerts, type Alert, type AlertSender } from "./alerts/index.ts";
export { AuditConsumer } from "./audit/consumer.ts";
export { LiveFeed, type LiveEvent } from "./console/live.ts";
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
  /** How often metered usage moves from the store into Postgres (default 5 s). */
  usageIntervalMs?: number;
  alerts?: AlertSender;
  /**
   * Run the periodic jobs (custom-domain re-verification) in this process; off for a
   * process that only serves the key service. Default on.
   */
  jobs?: boolean;
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
  else if (config.redis) {
    // Probed every 250 ms while Redis is down: the publisher's retry goes as soon as it answers.
    const redis = new RedisStore({ ...config.redis, prefix: config.redisPrefix, breakerProbeMs: 250 });
    await redis.ready().catch((e) => log.warn({ err: e }, "Redis not ready; publishing will retry"));
    store = redis;
  } else store = new MemoryStore();
  const metrics = createControlPlaneMetrics();
  const keyServiceMetrics = createKeyServiceMetrics();
  const publisher = new Publisher(database.db, store, log);
  if (store instanceof RedisStore)
    store.onMasterChange(({ atRisk, ledgerFound }) => {
      metrics.redisMasterChanges.inc();
      for (const kind of LEDGER_KINDS) if (atRisk[kind] > 0) metrics.redisWritesAtRisk.inc({ kind }, atRisk[kind]);
      // Records the old master may have taken with it: written again from Postgres.
      const ids = publisher.republishRecent();
      log.warn({ atRisk, ledgerFound, republished: ids }, "Redis master changed: recent changes written again");
    });
  // Whatever fails in the store is "Redis unavailable, retry later" to the publisher;
  // when the store's own breaker sees Redis answer again, the retry goes at once.
  const storeBreaker = (store as { breaker?: unknown }).breaker;
  if (storeBreaker instanceof CircuitBreaker) {
    metrics.breakerState.set({ dependency: storeBreaker.name }, BREAKER_STATE_VALUE[storeBreaker.state]);
    storeBreaker.watch((state, name) => {
      metrics.breakerState.set({ dependency: name }, BREAKER_STATE_VALUE[state]);
      if (state === "closed") publisher.retryNow();
    });
  }
  // One "postgres" breaker for the admin API and the key service of this process.
  const dbBreaker = databaseBreaker({
    db: database.db,
    onStateChange: (state) => {
      metrics.breakerState.set({ dependency: "postgres" }, BREAKER_STATE_VALUE[state]);
      if (state === "open") log.warn("Postgres unavailable: admin and key-service calls answer 503 until it is back");
      else if (state === "closed") log.info("Postgres available again");
    },
  });
  metrics.breakerState.set({ dependency: "postgres" }, 0);
  const txtLookup = deps.txtLookup ?? dnsTxtLookup(config.dnsServers);
  const tenants = new TenantService({ db: database.db, publisher, config, txtLookup });
  const alerts = deps.alerts ?? webhookAlerts(config.alertWebhookUrl);
  // Singleton jobs: with several control planes on one database, each runs on the one
  // process that holds its lease (jobs/lease.ts), and moves when that process dies.
  const lease = (name: string) =>
    new JobLease({
      db: database.db,
      name,
      log,
      onChange: (held) => metrics.jobLeader.set({ job: name }, held ? 1 : 0),
    });
  const leases = { domains: lease("domains.recheck"), usage: lease("usage.collect") };
  const domains = new DomainRechecker({
    db: database.db,
    publisher,
    txtLookup,
    alerts,
    graceMs: config.domainRecheckGraceMs,
    unverifiedTtlMs: config.domainUnverifiedTtlMs,
    log,
    lease: leases.domains,
  });
  if (deps.jobs !== false) {
    leases.domains.start();
    leases.usage.start();
    domains.start(config.domainRecheckIntervalMs);
  }

  // TLS ask answers: coherent with this process's writes at once (publisher hook), with
  // other control-plane processes' through the invalidation channel.
  const tlsAsk = new TlsAsk({ db: database.db, ratePerSecond: config.tlsAskRatePerSecond, burst: config.tlsAskBurst });
  publisher.onPublish((change) => tlsAsk.invalidate(change));
  const subscription = store
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
      () => {
        tlsAsk.clear();
        // The subscription was made again: Redis restarted, or failed over to a replica
        // that may have missed the last writes. What this process published lately is
        // written again, so a lost revocation is not served until its freshness ends.
        const ids = publisher.republishRecent();
        if (ids > 0) log.info({ ids }, "Redis reconnected: recent changes written again");
      },
    )
    .catch((error) => {
      log.warn({ err: error }, "no invalidation subscription; TLS ask answers expire by TTL only");
      return null;
    });
  // A subscription waits for Redis to connect; a control plane started while Redis is
  // down must still serve, so it waits a moment (for tests that rely on hearing other
  // control planes at once) and then lets the subscription complete on its own.
  await Promise.race([subscription, new Promise((resolve) => setTimeout(resolve, 2_000).unref())]);

  const apply = new ApplyService({ db: database.db, publisher, config });
  const keyService = createKeyServiceApp({
    db: database.db,
    token: config.keyServiceToken,
    log,
    tenants,
    metrics: keyServiceMetrics,
    usageFlushMs: config.keyUsageFlushMs,
    database: { breaker: dbBreaker, deadlineMs: config.keyServiceDeadlineMs },
  });
  const usage = new UsageCollector({
    db: database.db,
    store,
    log,
    ...(deps.jobs !== false ? { lease: leases.usage } : {}),
    ...(deps.usageIntervalMs ? { intervalMs: deps.usageIntervalMs } : {}),
  });
  const liveFeed = new LiveFeed({ db: database.db, log });
  const admin = createAdminApp({
    tenants,
    adminToken: config.adminToken,
    log,
    tlsAsk,
    apply,
    changes: recordChanges({ db: database.db, tenants, log, onRecorded: () => metrics.adminChanges.inc() }),
    database: { breaker: dbBreaker, deadlineMs: config.adminDeadlineMs },
    observe: (method, status, seconds) =>
      metrics.adminRequests.observe({ method, status: `${Math.floor(status / 100)}xx` }, seconds),
    extend: (app) => {
      mountUsageRoutes(app, { collector: usage, findTenant: (ref) => tenants.find(ref) });
      mountUsageHistoryRoute(app, { db: database.db, tenants });
      mountContextKeyRoutes(app, { db: database.db, tenants, publisher, master: config.contextSigningSecret });
      mountAuditRoutes(app, { db: database.db, tenants });
      mountExplainRoute(app, { db: database.db, apiHostname: config.apiHostname, sessionSecret: config.sessionSecret });
      // The operator's console: a client of this same app, in process (console/index.ts).
      const consoleApp = createConsole({ adminToken: config.adminToken, adminFetch: (r) => app.fetch(r), feed: liveFeed });
      app.route("/console", consoleApp as unknown as typeof app);
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
    metrics.publishPending.set(publisher.pending);
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
    keyServiceMetrics,
    auditConsumer,
    tenants,
    domains,
    tlsAsk,
    apply,
    publisher,
    usage,
    database,
    store,
    log,
    /** The "postgres" breaker of the admin API and the key service. */
    databaseBreaker: dbBreaker,
    /** Leases of the singleton jobs. */
    leases,
    async close() {
      liveFeed.close();
      await domains.stop();
      // Not awaited past a moment: a subscription still waiting for Redis is dropped with the store.
      const unsubscribe = await Promise.race([subscription, new Promise<null>((r) => setTimeout(() => r(null), 500).unref())]);
      await unsubscribe?.().catch(() => {});
      await auditConsumer.stop();
      keyService.close();
      // Each bounded, so a black-holed Postgres cannot hold shutdown: what they could not
      // write is usage (left in the store as a claimed batch) and last-used times (a hint).
      await within(5_000, usage.close(), () => log.warn("usage not persisted at shutdown: no answer from Postgres"));
      await within(5_000, keyService.flushUsed(), () => log.warn("key last-used times not written at shutdown"));
      // Released only now, the jobs done: another control plane takes them over at once.
      await within(2_000, Promise.all([leases.domains.stop(), leases.usage.stop()]), () =>
        log.warn("job leases not released at shutdown (they expire on their own)"),
      );
      // Bounded: with Redis down, shutdown names what was not published instead of hanging.
      await publisher.close();
      dbBreaker.close();
      if (ownsStore) await store.close();
      if (ownsDb) await database.close();
    },
  };
}

export type ControlPlane = Awaited<ReturnType<typeof createControlPlane>>;

/** Wait for `work` at most `ms`; past it, `late` says what is given up (work goes on unobserved). */
async function within(ms: number, work: Promise<unknown>, late: () => void): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const outcome = await Promise.race([
    work.then(
      () => "done",
      () => "done",
    ),
    new Promise<"late">((resolve) => (timer = setTimeout(() => resolve("late"), ms))),
  ]);
  clearTimeout(timer);
  if (outcome === "late") late();
}
