/**
 * A whole Portcullis stack for tests: control plane (admin API and key service on
 * real sockets, port 0), one or more routers, real Postgres and Redis — or the
 * embedded defaults (PGlite, in-process store) when `backend: "embedded"`.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { getRequestListener } from "@hono/node-server";
import pino, { type Logger } from "pino";
import {
  type ControlPlane,
  createControlPlane,
  loadControlPlaneConfig,
  migrate,
  schema,
  openDatabase,
  type Database,
} from "@portcullis/control-plane";
import {
  type AuditEvent,
  type AuditKind,
  loadRouterConfig,
  memoryWriter,
  type RouterConfig,
  type RunningRouter,
  startRouter,
} from "@portcullis/router";
import { contextKeysFrom, MemoryStore, type RedisConnection, RedisStore, type Store } from "@portcullis/shared";
import { eq } from "drizzle-orm";
import { type EchoUpstream, startEchoUpstream } from "../../deploy/local/demo-upstream.ts";
import { type Answer, send } from "./http.ts";
import { createTestDatabase, type TestDatabase } from "./postgres.ts";
import { createTestStore, deleteKeys, testPrefix } from "./redis.ts";

export type Backend = "real" | "embedded";

export interface TestStackOptions {
  backend?: Backend;
  routers?: number;
  router?: Partial<RouterConfig>;
  env?: Record<string, string>;
  txtLookup?: Parameters<typeof createControlPlane>[1] extends infer D ? (D extends { txtLookup?: infer T } ? T : never) : never;
  /**
   * Where routers' audit events go: "memory" (default; `stack.audit`, `auditFor`) or
   * "stream" (the product path: the store's audit stream, moved into Postgres by the
   * control plane's consumer; `auditRows`).
   */
  audit?: "memory" | "stream";
  /** Run the control plane's audit consumer (default: when `audit` is "stream"). */
  auditConsumer?: boolean;
  /** Logger of the control plane (default: silent). */
  log?: Logger;
  /** With backend "real": Redis elsewhere than the shared test server (a Sentinel deployment). */
  redis?: RedisConnection;
}

export const SECRETS = {
  ADMIN_TOKEN: "test-admin-token-0123456789",
  KEY_SERVICE_TOKEN: "test-key-service-token-0123456789",
  CONTEXT_SIGNING_SECRET: "test-context-signing-secret-0123456789",
  SESSION_SECRET: "test-session-secret-0123456789",
};

function listen(fetch: Parameters<typeof getRequestListener>[0]): Promise<Server> {
  return new Promise((resolve) => {
    const server = createServer(getRequestListener(fetch));
    server.listen(0, "127.0.0.1", () => resolve(server));
  });
}
const portOf = (s: Server) => (s.address() as AddressInfo).port;
const closeServer = (s: Server) =>
  new Promise<void>((r) => {
    s.closeAllConnections();
    s.close(() => r());
  });

export class TestStack {
  readonly backend: Backend;
  cp!: ControlPlane;
  store!: Store;
  routers: RunningRouter[] = [];
  audit: AuditEvent[] = [];
  /** Audit events of every router of this stack (`audit` holds only the last router's). */
  auditAll: AuditEvent[] = [];
  upstreams: EchoUpstream[] = [];
  keyServicePort = 0;
  adminPort = 0;
  readonly secrets = SECRETS;
  #options: TestStackOptions;
  #testDb: TestDatabase | null = null;
  #database: Database | null = null;
  #dataDir: string | null = null;
  #keyServer: Server | null = null;
  #adminServer: Server | null = null;
  #prefix: string | null = null;

  /** The Redis key prefix of this stack (real backend). */
  get prefix(): string {
    return this.#prefix ?? "";
  }

  constructor(options: TestStackOptions = {}) {
    this.backend = options.backend ?? "real";
    this.#options = options;
  }

  get router(): RunningRouter {
    return this.routers[0] as RunningRouter;
  }

  get port(): number {
    return this.router.port;
  }

  /** URL of this stack's Postgres database (real backend; empty for the embedded one). */
  get databaseUrl(): string {
    return this.#testDb?.url ?? "";
  }

  get env(): Record<string, string> {
    return { ...SECRETS, PLATFORM_DOMAIN: "localhost", LOG_LEVEL: "silent", ...(this.#options.env ?? {}) };
  }

  async start(): Promise<this> {
    const log = this.#options.log ?? pino({ level: "silent" });
    if (this.backend === "real") {
      this.#testDb = await createTestDatabase();
      this.#database = this.#testDb.database;
      if (this.#options.redis) {
        const prefix = testPrefix();
        const store = new RedisStore({ ...this.#options.redis, prefix });
        await store.ready();
        this.#prefix = prefix;
        this.store = store;
      } else {
        const store = await createTestStore();
        this.#prefix = store.prefix;
        this.store = store;
      }
    } else {
      this.#dataDir = mkdtempSync(join(tmpdir(), "pc-embedded-"));
      this.#database = await openDatabase({ dataDir: this.#dataDir });
      await migrate(this.#database);
      this.store = new MemoryStore();
    }
    const cpConfig = loadControlPlaneConfig(this.env);
    this.cp = await createControlPlane(cpConfig, {
      store: this.store,
      database: this.#database,
      log,
      auditConsumer: this.#options.auditConsumer ?? this.#options.audit === "stream",
      ...(this.#options.txtLookup ? { txtLookup: this.#options.txtLookup } : {}),
    });
    this.#adminServer = await listen(this.cp.admin.fetch);
    this.adminPort = portOf(this.#adminServer);
    await this.startKeyService();
    for (let i = 0; i < (this.#options.routers ?? 1); i++) await this.addRouter();
    return this;
  }

  async startKeyService(port = this.keyServicePort): Promise<void> {
    const server = createServer(getRequestListener(this.cp.keyService.fetch));
    await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", () => resolve()));
    this.#keyServer = server;
    this.keyServicePort = portOf(server);
  }

  async stopKeyService(): Promise<void> {
    if (this.#keyServer) await closeServer(this.#keyServer);
    this.#keyServer = null;
  }

  async addRouter(
    overrides: Partial<RouterConfig> = {},
    deps: { store?: Store; now?: () => number; keyServiceUrl?: string; log?: Logger } = {},
  ): Promise<RunningRouter> {
    const config = loadRouterConfig(
      { ...this.env, KEY_SERVICE_URL: deps.keyServiceUrl ?? `http://127.0.0.1:${this.keyServicePort}` },
      { port: 0, opsPort: 0, host: "127.0.0.1", ...this.#options.router, ...overrides },
    );
    const { events, writer } = memoryWriter();
    this.audit = events;
    const router = await startRouter(config, {
      store: deps.store ?? this.store,
      ...(this.#options.audit === "stream"
        ? {}
        : {
            auditWriter: async (batch: AuditEvent[], kind: AuditKind) => {
              this.auditAll.push(...batch);
              await writer(batch, kind);
            },
          }),
      log: deps.log ?? pino({ level: "silent" }),
      ...(deps.now ? { now: deps.now } : {}),
    });
    this.routers.push(router);
    return router;
  }

  /** Admin API call with the admin token. */
  admin(method: string, path: string, body?: unknown): Promise<Answer> {
    return this.adminWith(method, path, body, {});
  }

  /** Admin API call with the admin token and more headers (`If-Match`). */
  adminWith(method: string, path: string, body: unknown, headers: Record<string, string>): Promise<Answer> {
    return send(this.adminPort, "127.0.0.1", path, {
      method,
      headers: {
        authorization: `Bearer ${SECRETS.ADMIN_TOKEN}`,
        ...(body === undefined ? {} : { "content-type": "application/json" }),
        ...headers,
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
  }

  /** A request through the (first) router. */
  request(host: string, path = "/", options: Parameters<typeof send>[3] = {}, router = this.router): Promise<Answer> {
    return send(router.port, host, path, options);
  }

  async upstream(name: string): Promise<EchoUpstream> {
    const u = await startEchoUpstream({ name, keys: contextKeysFrom(SECRETS.CONTEXT_SIGNING_SECRET) });
    this.upstreams.push(u);
    return u;
  }

  /** Create a routable tenant: subdomain, database binding and its own upstream. */
  async tenant(slug: string, options: { plan?: string; bind?: boolean } = {}) {
    const created = await this.admin("POST", "/v1/tenants", {
      slug,
      name: `${slug} inc`,
      ...(options.plan ? { plan: options.plan } : {}),
    });
    if (created.status !== 201) throw new Error(`create ${slug}: ${created.status} ${created.text}`);
    const upstream = await this.upstream(`${slug}-app`);
    const db = { server: `pg-${slug}.internal:5432`, database: slug };
    if (options.bind !== false) {
      const b = await this.admin("PUT", `/v1/tenants/${slug}/database`, db);
      if (b.status !== 200) throw new Error(`bind ${slug}: ${b.status} ${b.text}`);
    }
    const u = await this.admin("PUT", `/v1/tenants/${slug}/upstreams`, { urls: [upstream.url] });
    if (u.status !== 200) throw new Error(`upstreams ${slug}: ${u.status} ${u.text}`);
    // Bounded: a store that never takes the write fails here, by name, not by the test's timeout.
    if (!(await this.cp.publisher.flush(15_000))) throw new Error(`tenant ${slug} not in the store within 15 s`);
    return { id: created.json().id as string, slug, host: `${slug}.localhost`, upstream, db };
  }

  /** Total requests all upstreams of this stack have received. */
  get upstreamContacts(): number {
    return this.upstreams.reduce((n, u) => n + u.requests.length, 0);
  }

  async auditFor(requestId: string, timeoutMs = 3_000): Promise<AuditEvent[]> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      await Promise.all(this.routers.map((r) => r.audit.flush()));
      const found = this.audit.filter((e) => e.requestId === requestId);
      if (found.length > 0 || Date.now() > deadline) return found;
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /** Rows of `audit_events` for a request id, once the stream consumer stored at least one. */
  async auditRows(requestId: string, timeoutMs = 10_000): Promise<(typeof schema.auditEvents.$inferSelect)[]> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      await Promise.all(this.routers.map((r) => r.audit.flush()));
      const rows = await this.cp.database.db.select().from(schema.auditEvents).where(eq(schema.auditEvents.requestId, requestId));
      if (rows.length > 0 || Date.now() > deadline) return rows;
      await new Promise((r) => setTimeout(r, 25));
    }
  }

  /** The audit events of a request on any router of this stack. */
  async auditAnywhere(requestId: string, timeoutMs = 3_000): Promise<AuditEvent[]> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      await Promise.all(this.routers.map((r) => r.audit.flush()));
      const found = this.auditAll.filter((e) => e.requestId === requestId);
      if (found.length > 0 || Date.now() > deadline) return found;
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  async close(): Promise<void> {
    for (const r of this.routers) await r.close();
    await this.stopKeyService();
    if (this.#adminServer) await closeServer(this.#adminServer);
    for (const u of this.upstreams) await u.close();
    await this.cp?.close();
    await this.store?.close();
    // Keys on a Redis of the test's own go with it.
    if (this.#prefix && !this.#options.redis) await deleteKeys(this.#prefix);
    if (this.#testDb) await this.#testDb.drop();
    else await this.#database?.close();
    if (this.#dataDir) rmSync(this.#dataDir, { recursive: true, force: true });
  }
}

export async function startTestStack(options: TestStackOptions = {}): Promise<TestStack> {
  return new TestStack(options).start();
}

/**
 * Send `request` every few milliseconds until `until` (epoch ms) has passed by `afterMs`,
 * recording when each was sent: for checks like "nothing sent after T is accepted",
 * which hold however slow the machine is.
 */
export async function sampleUntil(
  until: number,
  request: () => Promise<{ status: number }>,
  afterMs = 300,
): Promise<{ sentAt: number; status: number }[]> {
  const samples: { sentAt: number; status: number }[] = [];
  while (Date.now() < until + afterMs) {
    const sentAt = Date.now();
    samples.push({ sentAt, status: (await request()).status });
    await new Promise((r) => setTimeout(r, 5));
  }
  return samples;
}

/**
 * A propagation bound ("stops within 1 s"): send `check` repeatedly and return when,
 * relative to the call, the first passing check was *sent*. Fails only when a check
 * sent after `timeoutMs` still does not pass, so a slow machine that delays answers
 * (not the propagation) does not fail it.
 */
export async function propagatesWithin(check: () => Promise<boolean>, timeoutMs = 1_000, stepMs = 10): Promise<number> {
  const start = performance.now();
  for (;;) {
    const sentAt = performance.now() - start;
    if (await check()) return sentAt;
    if (sentAt > timeoutMs) throw new Error(`not propagated: a check sent ${Math.round(sentAt)} ms after the change failed`);
    await new Promise((r) => setTimeout(r, stepMs));
  }
}

/** Poll until `check` passes or the time runs out; returns the elapsed milliseconds. */
export async function eventually(check: () => Promise<boolean> | boolean, timeoutMs = 2_000, stepMs = 10): Promise<number> {
  const start = performance.now();
  for (;;) {
    if (await check()) return performance.now() - start;
    if (performance.now() - start > timeoutMs) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, stepMs));
  }
}
