/** Router settings, parsed once from the environment and frozen. */
import { availableParallelism } from "node:os";
import { z } from "zod";
import { csv, hostSetting, parseEnv, port, type RedisConnection, redisConnection, redisEnv, secret } from "@portcullis/shared";

const Env = z.object({
  ROUTER_PORT: port(8080),
  ROUTER_OPS_PORT: port(9090),
  ROUTER_HOST: z.string().default("0.0.0.0"),
  ROUTER_OPS_HOST: z.string().default("127.0.0.1"),
  KEY_SERVICE_PORT: port(8082),
  KEY_SERVICE_URL: z.string().url().optional(),
  KEY_SERVICE_TIMEOUT_MS: z.coerce.number().int().positive().default(2_000),
  KEY_SERVICE_MAX_PENDING: z.coerce.number().int().positive().default(256),
  KEY_USAGE_REPORT_MS: z.coerce.number().int().positive().default(10_000),
  ...redisEnv,
  REDIS_PREFIX: z.string().default("pc:v1:"),
  PLATFORM_DOMAIN: z.string().default("localhost"),
  API_HOSTNAME: z.string().optional(),
  SESSION_COOKIE: z
    .string()
    .regex(/^[A-Za-z0-9_-]+$/)
    .default("portcullis_session"),
  TRUSTED_PROXIES: csv,
  UPSTREAM_CONNECT_TIMEOUT_MS: z.coerce.number().int().positive().default(2_000),
  UPSTREAM_HEADERS_TIMEOUT_MS: z.coerce.number().int().positive().default(30_000),
  UPSTREAM_BODY_TIMEOUT_MS: z.coerce.number().int().positive().default(60_000),
  UPSTREAM_CONNECTIONS: z.coerce.number().int().positive().default(128),
  // Passive health (router/src/proxy/health.ts): failures in a row that eject an
  // origin (0: never), and how long it stays out (base × ejections in a row, capped).
  UPSTREAM_EJECT_CONSECUTIVE_FAILURES: z.coerce.number().int().nonnegative().default(3),
  UPSTREAM_EJECT_BASE_MS: z.coerce.number().int().positive().default(5_000),
  UPSTREAM_EJECT_MAX_MS: z.coerce.number().int().positive().default(60_000),
  REQUEST_HEADERS_TIMEOUT_MS: z.coerce.number().int().positive().default(10_000),
  REQUEST_TIMEOUT_MS: z.coerce.number().int().positive().default(60_000),
  MAX_HEADER_BYTES: z.coerce.number().int().positive().default(16_384),
  MAX_HEADER_COUNT: z.coerce.number().int().positive().default(100),
  DRAIN_TIMEOUT_MS: z.coerce.number().int().positive().default(25_000),
  LOG_LEVEL: z.string().default("info"),
  AUDIT_QUEUE_MAX: z.coerce.number().int().positive().default(100_000),
  AUDIT_STREAM_MAXLEN: z.coerce.number().int().positive().default(1_000_000),
  // Refusals have capacity of their own: a queue, and a share of the stream (default
  // half of it), so that a flood of them never leaves allows unaudited.
  AUDIT_REFUSAL_QUEUE_MAX: z.coerce.number().int().positive().default(10_000),
  AUDIT_REFUSAL_STREAM_MAXLEN: z.coerce.number().int().positive().optional(),
  // "closed": an allow whose audit event cannot be kept is refused (503 audit_unavailable).
  AUDIT_FAIL_MODE: z.enum(["open", "closed"]).default("open"),
  ALERT_WEBHOOK_URL: z.string().url().optional(),
  ALERT_MIN_INTERVAL_MS: z.coerce.number().int().nonnegative().default(60_000),
  METRICS_TENANT_LABELS: z.coerce.number().int().nonnegative().default(100),
  // Measurement only: "off" skips building and recording audit events (production
  // requires them; `npm run bench` uses this to show what auditing costs).
  ROUTER_AUDIT: z.enum(["on", "off"]).default("on"),
  // Router processes serving the public port: 1 (one process, the default), a number,
  // or "auto" (one per available core). More than one needs Redis (REDIS_URL).
  ROUTER_WORKERS: z.union([z.literal("auto"), z.coerce.number().int().min(1).max(1_024)]).default(1),
});

export interface RouterConfig {
  port: number;
  opsPort: number;
  host: string;
  opsHost: string;
  keyServiceUrl: string;
  keyServiceToken: string;
  /** A key-service call not answered within this is "unavailable" (503 if nothing is cached). */
  keyServiceTimeoutMs: number;
  /** Most key-service lookups in flight; a miss beyond it is 503 at once, not queued. */
  keyServiceMaxPending: number;
  /** How often accepted key ids are reported to the key service (last-used times). */
  keyUsageReportMs: number;
  redisUrl: string | undefined;
  /** Where Redis is (REDIS_URL, or REDIS_SENTINELS with REDIS_SENTINEL_NAME); null: the in-process store. */
  redis: RedisConnection | null;
  redisPrefix: string;
  platformDomain: string;
  apiHostname: string;
  contextSigningSecret: string;
  sessionSecret: string;
  sessionCookie: string;
  trustedProxies: string[];
  upstream: { connectTimeoutMs: number; headersTimeoutMs: number; bodyTimeoutMs: number; connections: number };
  /** Outlier ejection of upstream origins (docs/upstreams.md). */
  upstreamHealth: { consecutiveFailures: number; baseEjectionMs: number; maxEjectionMs: number };
  requestHeadersTimeoutMs: number;
  requestTimeoutMs: number;
  maxHeaderBytes: number;
  maxHeaderCount: number;
  drainTimeoutMs: number;
  logLevel: string;
  /** Audit events held in memory while the store is unreachable; beyond it they are dropped and counted. */
  auditQueueMax: number;
  /** Bound of the durable audit stream's backlog (entries). */
  auditStreamMaxLen: number;
  /** Refusals held in memory before further ones are aggregated per source. */
  auditRefusalQueueMax: number;
  /** How far refusals may fill the audit stream (default: half of `auditStreamMaxLen`). */
  auditRefusalStreamMaxLen: number | undefined;
  /** "closed": an allow that cannot be audited is refused with 503 instead of forwarded. */
  auditFailMode: "open" | "closed";
  alertWebhookUrl: string | undefined;
  /** Least time between two alerts of one kind for one tenant. */
  alertMinIntervalMs: number;
  /** Tenants that get their own metric label value; the rest share `other`. */
  metricsTenantLabels: number;
  /** False only to measure the cost of auditing (ROUTER_AUDIT=off). */
  audit: boolean;
  /** Worker processes sharing the public port (router/src/cluster.ts); 1: no workers. */
  workers: number;
  generatedSecrets: string[];
}

export function loadRouterConfig(
  env: Record<string, string | undefined>,
  overrides: Partial<RouterConfig> = {},
): Readonly<RouterConfig> {
  const e = parseEnv(Env, env);
  const generated: string[] = [];
  const platformDomain = hostSetting("PLATFORM_DOMAIN", e.PLATFORM_DOMAIN);
  const workers = e.ROUTER_WORKERS === "auto" ? availableParallelism() : e.ROUTER_WORKERS;
  // Workers share limits, caches, invalidations and the audit stream through the
  // store: the in-process one would give each its own.
  if (workers > 1 && redisConnection(e) === null)
    throw new Error(
      "invalid settings:\n  ROUTER_WORKERS: more than one router process needs REDIS_URL or REDIS_SENTINELS (the in-process store is per process)",
    );
  return Object.freeze({
    port: e.ROUTER_PORT,
    opsPort: e.ROUTER_OPS_PORT,
    host: e.ROUTER_HOST,
    opsHost: e.ROUTER_OPS_HOST,
    keyServiceUrl: e.KEY_SERVICE_URL ?? `http://127.0.0.1:${e.KEY_SERVICE_PORT}`,
    keyServiceToken: secret(env, "KEY_SERVICE_TOKEN", generated),
    keyServiceTimeoutMs: e.KEY_SERVICE_TIMEOUT_MS,
    keyServiceMaxPending: e.KEY_SERVICE_MAX_PENDING,
    keyUsageReportMs: e.KEY_USAGE_REPORT_MS,
    redisUrl: e.REDIS_URL,
    redis: redisConnection(e),
    redisPrefix: e.REDIS_PREFIX,
    platformDomain,
    apiHostname: hostSetting("API_HOSTNAME", e.API_HOSTNAME ?? `api.${platformDomain}`),
    contextSigningSecret: secret(env, "CONTEXT_SIGNING_SECRET", generated),
    sessionSecret: secret(env, "SESSION_SECRET", generated),
    sessionCookie: e.SESSION_COOKIE,
    trustedProxies: e.TRUSTED_PROXIES,
    upstream: {
      connectTimeoutMs: e.UPSTREAM_CONNECT_TIMEOUT_MS,
      headersTimeoutMs: e.UPSTREAM_HEADERS_TIMEOUT_MS,
      bodyTimeoutMs: e.UPSTREAM_BODY_TIMEOUT_MS,
      connections: e.UPSTREAM_CONNECTIONS,
    },
    upstreamHealth: {
      consecutiveFailures: e.UPSTREAM_EJECT_CONSECUTIVE_FAILURES,
      baseEjectionMs: e.UPSTREAM_EJECT_BASE_MS,
      maxEjectionMs: e.UPSTREAM_EJECT_MAX_MS,
    },
    requestHeadersTimeoutMs: e.REQUEST_HEADERS_TIMEOUT_MS,
    requestTimeoutMs: e.REQUEST_TIMEOUT_MS,
    maxHeaderBytes: e.MAX_HEADER_BYTES,
    maxHeaderCount: e.MAX_HEADER_COUNT,
    drainTimeoutMs: e.DRAIN_TIMEOUT_MS,
    logLevel: e.LOG_LEVEL,
    auditQueueMax: e.AUDIT_QUEUE_MAX,
    auditStreamMaxLen: e.AUDIT_STREAM_MAXLEN,
    auditRefusalQueueMax: e.AUDIT_REFUSAL_QUEUE_MAX,
    auditRefusalStreamMaxLen: e.AUDIT_REFUSAL_STREAM_MAXLEN,
    auditFailMode: e.AUDIT_FAIL_MODE,
    alertWebhookUrl: e.ALERT_WEBHOOK_URL,
    alertMinIntervalMs: e.ALERT_MIN_INTERVAL_MS,
    metricsTenantLabels: e.METRICS_TENANT_LABELS,
    audit: e.ROUTER_AUDIT === "on",
    workers,
    generatedSecrets: generated,
    ...overrides,
  });
}
