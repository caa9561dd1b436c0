/**
 * Builds a router from its config and dependencies and runs its two listeners.
 * `startRouter` is what `main.ts`, the embedded stack and the tests call.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { getRequestListener } from "@hono/node-server";
import pino, { type Logger } from "pino";
import type { MetricObjectWithValues, MetricValue } from "prom-client";
import { type CircuitBreaker, hasStreams, LEDGER_KINDS, MemoryStore, RedisStore, type Store } from "@portcullis/shared";
import { createRouterApp } from "./app.ts";
import { type AuditSink, type AuditWriter, BatchingAuditSink, storeWriter } from "./audit/index.ts";
import { clientIpResolver } from "./client-ip.ts";
import type { RouterConfig } from "./config.ts";
import { Limiter } from "./limits/index.ts";
import { KeyUsageReporter } from "./keys/index.ts";
import { createOpsApp, createRouterMetrics } from "./ops/index.ts";
import { createUpstreamClient } from "./proxy/index.ts";
import { createSecuritySignals, type SecuritySignals } from "./security/index.ts";
import { createKeyServiceClient, type KeyServiceClient, Resolver } from "./tenant-cache/index.ts";
import { UsageMeter } from "./usage/index.ts";

export interface StartRouterDeps {
  store?: Store;
  keyService?: KeyServiceClient;
  /** Where audit batches go; default: the store's durable audit stream. */
  auditWriter?: AuditWriter;
  log?: Logger;
  now?: () => number;
  /**
   * Open the ops port (default). A worker of the multi-process mode does not: its
   * primary serves the ops port for all workers and asks each for `ready` and `scrape`.
   */
  ops?: boolean;
  /** Labels on every metric of this router (a worker's `worker` slot). */
  metricLabels?: Record<string, string>;
}

export interface RunningRouter {
  port: number;
  opsPort: number;
  resolver: Resolver;
  audit: AuditSink;
  keyUsage: KeyUsageReporter;
  store: Store;
  limiter: Limiter;
  meter: UsageMeter;
  security: SecuritySignals;
  /** What `/readyz` answers: not draining, and the key service or the store reachable. */
  ready(): boolean;
  /** This router's metrics, current, as prom-client JSON (for aggregation across workers). */
  scrape(): Promise<MetricObjectWithValues<MetricValue<string>>[]>;
  /** SIGTERM behaviour: unready, finish in-flight requests, close. */
  drain(): Promise<void>;
  close(): Promise<void>;
}

function listen(server: Server, port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve((server.address() as AddressInfo).port);
    });
  });
}

export async function startRouter(config: Readonly<RouterConfig>, deps: StartRouterDeps = {}): Promise<RunningRouter> {
  const log = deps.log ?? pino({ level: config.logLevel, base: { service: "router" } });
  const ownsStore = !deps.store;
  let store: Store;
  if (deps.store) store = deps.store;
  else if (config.redis) store = new RedisStore({ ...config.redis, prefix: config.redisPrefix });
  else store = new MemoryStore();
  const metrics = createRouterMetrics({ tenantLabels: config.metricsTenantLabels });
  if (deps.metricLabels) metrics.registry.setDefaultLabels(deps.metricLabels);
  const keyService = timedKeyService(
    deps.keyService ??
      createKeyServiceClient({ url: config.keyServiceUrl, token: config.keyServiceToken, timeoutMs: config.keyServiceTimeoutMs }),
    metrics,
  );
  // Each dependency's breaker: one log line when it goes down and one when it is back
  // (not one per request), and its state as a metric.
  if (store instanceof RedisStore) {
    watchDependency(store.breaker, metrics, log);
    store.onMasterChange(({ atRisk, ledgerFound }) => {
      metrics.redisMasterChanges.inc();
      for (const kind of LEDGER_KINDS) if (atRisk[kind] > 0) metrics.redisWritesAtRisk.inc({ kind }, atRisk[kind]);
      log.warn({ atRisk, ledgerFound }, "Redis master changed: writes the old one may not have passed on, at most");
    });
  }
  if (keyService.breaker) watchDependency(keyService.breaker, metrics, log);
  const keyUsage = new KeyUsageReporter({ report: (ids) => keyService.reportUsed(ids), intervalMs: config.keyUsageReportMs });
  const resolver = new Resolver({
    store,
    keyService,
    maxOriginInFlight: config.keyServiceMaxPending,
    ...(deps.now ? { now: deps.now } : {}),
    onLookup: (cache, tier) => metrics.cacheLookups.inc({ cache, tier }),
  });
  await resolver.start().catch((error) => log.warn({ err: error }, "invalidation subscription not yet established"));
  const upstream = createUpstreamClient(config.upstream);
  let lastAuditWarning = 0;
  const audit = new BatchingAuditSink({
    writer:
      deps.auditWriter ??
      (hasStreams(store)
        ? storeWriter(store, {
            maxLen: config.auditStreamMaxLen,
            ...(config.auditRefusalStreamMaxLen !== undefined ? { refusalMaxLen: config.auditRefusalStreamMaxLen } : {}),
          })
        : // A store without streams (a test double): the decisions go to the log instead.
          async (batch) => {
            for (const event of batch) log.info({ audit: event }, "decision");
          }),
    maxQueue: config.auditQueueMax,
    refusalQueueMax: config.auditRefusalQueueMax,
    failMode: config.auditFailMode,
    onError: (error) => {
      // The batch stays queued (bounded) and is retried; warn once per 30 s, not per tick.
      if (Date.now() - lastAuditWarning < 30_000) return;
      lastAuditWarning = Date.now();
      log.warn({ err: error, queued: audit.depth }, "audit write failed; will retry");
    },
  });
  const limiter = new Limiter({ store, metrics, log, ...(deps.now ? { now: deps.now } : {}) });
  const meter = new UsageMeter({ store, metrics, ...(deps.now ? { now: deps.now } : {}) });
  const security = createSecuritySignals({
    metrics,
    log,
    webhookUrl: config.alertWebhookUrl,
    minIntervalMs: config.alertMinIntervalMs,
  });
  const { listener, clientError, upgrade, connect, checkContinue, checkExpectation } = createRouterApp({
    limiter,
    meter,
    config,
    resolver,
    upstream,
    audit,
    metrics,
    clientIp: clientIpResolver(config.trustedProxies),
    security,
    log,
    keyUsage,
    ...(deps.now ? { now: deps.now } : {}),
  });

  let draining = false;
  const server = createServer(
    {
      // Slow clients: the whole header block must arrive within this time.
      headersTimeout: config.requestHeadersTimeoutMs,
      // The whole request, body included (slow bodies: Traefik CVE-2024-28869).
      requestTimeout: config.requestTimeoutMs,
      // Node checks both timeouts on this interval (default 30 s, which would let a
      // slow client hold a connection 30 s past its deadline).
      connectionsCheckingInterval: Math.max(50, Math.min(1_000, Math.floor(config.requestHeadersTimeoutMs / 4))),
      maxHeaderSize: config.maxHeaderBytes,
      keepAliveTimeout: 5_000,
      requireHostHeader: false,
      joinDuplicateHeaders: false,
    },
    (incoming, outgoing) => {
      // Draining: a request that still arrives on a kept-alive connection is served,
      // and its connection closes after the answer, so the drain ends when the
      // requests in flight do, not at DRAIN_TIMEOUT_MS.
      if (draining) outgoing.shouldKeepAlive = false;
      listener(incoming, outgoing);
    },
  );
  // Node drops headers past maxHeadersCount silently; the guard counts them instead
  // (and maxHeaderSize bounds their bytes).
  server.maxHeadersCount = 0;
  server.on("clientError", clientError);
  // Protocol upgrades (WebSocket, h2c) and CONNECT tunnels are refused, audited, closed.
  server.on("upgrade", upgrade);
  server.on("connect", connect);
  // Expect: 100 Continue only once the request is allowed; other expectations get 417.
  server.on("checkContinue", checkContinue);
  server.on("checkExpectation", checkExpectation);

  let keyServiceUp = true;
  const probe = async () => {
    keyServiceUp = (await keyService.healthy()) || (await store.ping());
  };
  await probe();
  const probeTimer = setInterval(() => void probe(), 1_000);
  probeTimer.unref();

  const droppedReported = { allow: 0, refuse: 0 };
  let aggregatedReported = 0;
  const ready = () => !draining && keyServiceUp;
  // Gauges read at scrape time.
  const beforeScrape = async () => {
    metrics.auditDepth.set(audit.depth);
    metrics.usagePending.set(meter.depth);
    metrics.limiterDegraded.set(limiter.degraded ? 1 : 0);
    for (const kind of ["allow", "refuse"] as const) {
      const dropped = audit.droppedByKind[kind] - droppedReported[kind];
      if (dropped > 0) metrics.auditDropped.inc({ decision: kind }, dropped);
      droppedReported[kind] += dropped;
    }
    const aggregated = audit.aggregated - aggregatedReported;
    if (aggregated > 0) metrics.auditAggregated.inc(aggregated);
    aggregatedReported += aggregated;
    metrics.openConnections.set(
      { side: "client" },
      await new Promise<number>((r) => server.getConnections((_e, n) => r(n ?? 0))),
    );
    metrics.openConnections.set({ side: "upstream" }, upstream.connections);
  };
  const opsServer =
    deps.ops === false
      ? null
      : createServer(getRequestListener(createOpsApp({ readiness: { ready }, metrics, beforeScrape }).fetch));
  const port = await listen(server, config.port, config.host);
  const opsPort = opsServer === null ? 0 : await listen(opsServer, config.opsPort, config.opsHost);

  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    clearInterval(probeTimer);
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
    if (opsServer !== null) {
      opsServer.closeAllConnections();
      await new Promise<void>((r) => opsServer.close(() => r()));
    }
    await audit.close();
    // Counted usage goes to the shared store before the process lets go of it.
    await meter.close();
    await limiter.close();
    // The store may be briefly unreachable at shutdown: a few more tries, then say what is lost.
    for (let i = 0; i < 3 && audit.depth > 0; i++) {
      await new Promise((r) => setTimeout(r, 200));
      await audit.flush();
    }
    if (audit.depth > 0) log.error({ lost: audit.depth }, "audit events could not be written before shutdown");
    await security.flush();
    await keyUsage.close();
    await resolver.close();
    await upstream.close();
    if (!deps.keyService) await keyService.close();
    if (ownsStore) await store.close();
  };

  return {
    port,
    opsPort,
    resolver,
    audit,
    keyUsage,
    store,
    limiter,
    meter,
    security,
    ready,
    async scrape() {
      await beforeScrape();
      return metrics.registry.getMetricsAsJSON();
    },
    async drain() {
      draining = true;
      // Stop accepting, let in-flight requests finish, then close what is idle.
      const done = new Promise<void>((r) => server.close(() => r()));
      server.closeIdleConnections();
      // A connection whose response ends later becomes idle then: close it then too.
      const sweep = setInterval(() => server.closeIdleConnections(), 50);
      sweep.unref();
      const timer = setTimeout(() => server.closeAllConnections(), config.drainTimeoutMs);
      timer.unref();
      await done;
      clearInterval(sweep);
      clearTimeout(timer);
      await close();
    },
    close,
  };
}

/** The key service client, timed per call (portcullis_key_service_client_seconds). */
function timedKeyService(client: KeyServiceClient, metrics: ReturnType<typeof createRouterMetrics>): KeyServiceClient {
  const timed =
    <A extends unknown[], R>(call: string, fn: (...args: A) => Promise<R>) =>
    async (...args: A): Promise<R> => {
      const started = performance.now();
      try {
        const result = await fn(...args);
        metrics.keyService.observe({ call, outcome: "ok" }, (performance.now() - started) / 1000);
        return result;
      } catch (error) {
        metrics.keyService.observe({ call, outcome: "error" }, (performance.now() - started) / 1000);
        throw error;
      }
    };
  return {
    resolveHost: timed("resolve_host", (h: string) => client.resolveHost(h)),
    tenant: timed("tenant", (id: string) => client.tenant(id)),
    verifyKey: timed("verify_key", (hash: string) => client.verifyKey(hash)),
    session: timed("session", (id: string) => client.session(id)),
    reportUsed: (ids) => client.reportUsed(ids),
    healthy: () => client.healthy(),
    close: () => client.close(),
    ...(client.breaker ? { breaker: client.breaker } : {}),
  };
}

function watchDependency(breaker: CircuitBreaker, metrics: ReturnType<typeof createRouterMetrics>, log: Logger): void {
  const gauge = metrics.dependencyState.labels(breaker.name);
  gauge.set(0);
  let down = false;
  breaker.watch((state) => {
    gauge.set(state === "closed" ? 0 : state === "half-open" ? 1 : 2);
    if (state === "open" && !down) {
      down = true;
      metrics.dependencyOpened.inc({ dependency: breaker.name });
      log.warn({ dependency: breaker.name }, "dependency unavailable: calls fail at once until a probe finds it back");
    } else if (state === "closed" && down) {
      down = false;
      log.info({ dependency: breaker.name }, "dependency back");
    }
  });
}
