/**
 * Builds a router from its config and dependencies and runs its two listeners.
 * `startRouter` is what `main.ts`, the embedded stack and the tests call.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { getRequestListener } from "@hono/node-server";
import pino, { type Logger } from "pino";
import { MemoryStore, RedisStore, type Store } from "@portcullis/shared";
import { createRouterApp } from "./app.ts";
import { type AuditSink, type AuditWriter, BatchingAuditSink } from "./audit/index.ts";
import { clientIpResolver } from "./client-ip.ts";
import type { RouterConfig } from "./config.ts";
import { KeyUsageReporter } from "./keys/index.ts";
import { createOpsApp, createRouterMetrics } from "./ops/index.ts";
import { createDispatcher } from "./proxy/index.ts";
import { createKeyServiceClient, type KeyServiceClient, Resolver } from "./tenant-cache/index.ts";

export interface StartRouterDeps {
  store?: Store;
  keyService?: KeyServiceClient;
  auditWriter?: AuditWriter;
  log?: Logger;
  now?: () => number;
}

export interface RunningRouter {
  port: number;
  opsPort: number;
  resolver: Resolver;
  audit: AuditSink;
  keyUsage: KeyUsageReporter;
  store: Store;
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
  else if (config.redisUrl) store = new RedisStore({ url: config.redisUrl, prefix: config.redisPrefix });
  else store = new MemoryStore();
  const keyService =
    deps.keyService ??
    createKeyServiceClient({ url: config.keyServiceUrl, token: config.keyServiceToken, timeoutMs: config.keyServiceTimeoutMs });
  const keyUsage = new KeyUsageReporter({ report: (ids) => keyService.reportUsed(ids), intervalMs: config.keyUsageReportMs });
  const metrics = createRouterMetrics();
  const resolver = new Resolver({
    store,
    keyService,
    maxOriginInFlight: config.keyServiceMaxPending,
    ...(deps.now ? { now: deps.now } : {}),
    onLookup: (cache, tier) => metrics.cacheLookups.inc({ cache, tier }),
  });
  await resolver.start().catch((error) => log.warn({ err: error }, "invalidation subscription not yet established"));
  const dispatcher = createDispatcher(config.upstream);
  const audit = new BatchingAuditSink({
    writer:
      deps.auditWriter ??
      (async (batch) => {
        for (const event of batch) log.info({ audit: event }, "decision");
      }),
    onError: (error) => log.warn({ err: error }, "audit write failed; will retry"),
  });
  const { listener, clientError } = createRouterApp({
    config,
    resolver,
    dispatcher,
    audit,
    metrics,
    clientIp: clientIpResolver(config.trustedProxies),
    keyUsage,
    ...(deps.now ? { now: deps.now } : {}),
  });

  const server = createServer(
    {
      // Slow clients: the whole header block must arrive within this time.
      headersTimeout: config.requestHeadersTimeoutMs,
      requestTimeout: config.requestTimeoutMs,
      maxHeaderSize: config.maxHeaderBytes,
      keepAliveTimeout: 5_000,
      requireHostHeader: false,
      joinDuplicateHeaders: false,
    },
    listener,
  );
  // Node drops headers past maxHeadersCount silently; the guard counts them instead
  // (and maxHeaderSize bounds their bytes).
  server.maxHeadersCount = 0;
  server.on("clientError", clientError);
  server.on("upgrade", (_req, socket) => {
    // Protocol upgrades (WebSocket, h2c) are not proxied: refuse and close.
    const body = '{"error":{"code":"upgrade_not_supported","message":"Protocol upgrades are not supported.","requestId":""}}';
    socket.end(
      `HTTP/1.1 501 Not Implemented\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\nconnection: close\r\n\r\n${body}`,
    );
  });

  let draining = false;
  let keyServiceUp = true;
  const probe = async () => {
    keyServiceUp = (await keyService.healthy()) || (await store.ping());
  };
  await probe();
  const probeTimer = setInterval(() => void probe(), 1_000);
  probeTimer.unref();

  const opsApp = createOpsApp({
    readiness: { ready: () => !draining && keyServiceUp },
    metrics,
    beforeScrape: () => {
      metrics.auditDepth.set(audit.depth);
      metrics.auditDropped.set(audit.dropped);
    },
  });
  const opsServer = createServer(getRequestListener(opsApp.fetch));
  const port = await listen(server, config.port, config.host);
  const opsPort = await listen(opsServer, config.opsPort, config.opsHost);

  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    clearInterval(probeTimer);
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
    opsServer.closeAllConnections();
    await new Promise<void>((r) => opsServer.close(() => r()));
    await audit.close();
    await keyUsage.close();
    await resolver.close();
    await dispatcher.close();
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
    async drain() {
      draining = true;
      // Stop accepting, let in-flight requests finish, then close what is idle.
      const done = new Promise<void>((r) => server.close(() => r()));
      server.closeIdleConnections();
      const timer = setTimeout(() => server.closeAllConnections(), config.drainTimeoutMs);
      timer.unref();
      await done;
      clearTimeout(timer);
      await close();
    },
    close,
  };
}
