/** Control plane and key service settings, parsed once from the environment. */
import { z } from "zod";
import { csv, hostSetting, parseEnv, port, type RedisConnection, redisConnection, redisEnv, secret } from "@portcullis/shared";

const Env = z.object({
  ADMIN_PORT: port(8081),
  KEY_SERVICE_PORT: port(8082),
  ADMIN_HOST: z.string().default("127.0.0.1"),
  KEY_SERVICE_HOST: z.string().default("127.0.0.1"),
  DATABASE_URL: z.string().url().optional(),
  ...redisEnv,
  REDIS_PREFIX: z.string().default("pc:v1:"),
  PLATFORM_DOMAIN: z.string().default("localhost"),
  API_HOSTNAME: z.string().optional(),
  SESSION_COOKIE: z
    .string()
    .regex(/^[A-Za-z0-9_-]+$/)
    .default("portcullis_session"),
  SESSION_TTL_SECONDS: z.coerce
    .number()
    .int()
    .positive()
    .default(7 * 24 * 3600),
  KEY_USAGE_FLUSH_MS: z.coerce.number().int().positive().default(60_000),
  DNS_SERVERS: csv,
  ALERT_WEBHOOK_URL: z.string().url().optional(),
  // Re-verification of verified custom domains: how often (0 turns the job off) and
  // how long a proof may be missing before the domain stops routing.
  DOMAIN_RECHECK_INTERVAL_MS: z.coerce
    .number()
    .int()
    .nonnegative()
    .default(60 * 60 * 1000),
  DOMAIN_RECHECK_GRACE_MS: z.coerce
    .number()
    .int()
    .nonnegative()
    .default(24 * 60 * 60 * 1000),
  // A claim nobody verifies (pending, or failed and not re-verified) is released after
  // this long, so a name cannot be squatted by a claim that never proves control.
  DOMAIN_UNVERIFIED_TTL_MS: z.coerce
    .number()
    .int()
    .nonnegative()
    .default(7 * 24 * 60 * 60 * 1000),
  DATA_DIR: z.string().default("./.data"),
  LOG_LEVEL: z.string().default("info"),
  CONTROL_PLANE_OPS_PORT: port(9091),
  CONTROL_PLANE_OPS_HOST: z.string().default("127.0.0.1"),
  KEY_SERVICE_OPS_PORT: port(9092),
  KEY_SERVICE_OPS_HOST: z.string().default("127.0.0.1"),
  AUDIT_CONSUMER: z.enum(["true", "false"]).default("true"),
  // Every admin and key-service request answers within its deadline, 503 at worst,
  // even when Postgres holds connections open and answers nothing. The key service's
  // is below the router's client timeout (2 s), so a router hears a 503, not silence.
  ADMIN_DEADLINE_MS: z.coerce.number().int().positive().default(4_500),
  KEY_SERVICE_DEADLINE_MS: z.coerce.number().int().positive().default(1_500),
  // The unauthenticated TLS ask endpoint: database queries one source address may
  // cause (cached answers are free), sustained per second and at once; over it, 429.
  TLS_ASK_RATE_PER_SECOND: z.coerce.number().positive().max(1e6).default(5),
  TLS_ASK_BURST: z.coerce.number().int().positive().max(1e6).default(20),
});

export interface ControlPlaneConfig {
  adminPort: number;
  adminHost: string;
  keyServicePort: number;
  keyServiceHost: string;
  databaseUrl: string | undefined;
  redisUrl: string | undefined;
  /** Where Redis is (REDIS_URL, or REDIS_SENTINELS with REDIS_SENTINEL_NAME); null: the in-process store. */
  redis: RedisConnection | null;
  redisPrefix: string;
  platformDomain: string;
  apiHostname: string;
  adminToken: string;
  keyServiceToken: string;
  sessionSecret: string;
  /** Master secret every tenant's context key is derived from (shared with the routers). */
  contextSigningSecret: string;
  sessionCookie: string;
  sessionTtlSeconds: number;
  /** How often the key service writes collected last-used times (one statement per flush). */
  keyUsageFlushMs: number;
  dnsServers: string[];
  alertWebhookUrl: string | undefined;
  domainRecheckIntervalMs: number;
  domainRecheckGraceMs: number;
  domainUnverifiedTtlMs: number;
  dataDir: string;
  logLevel: string;
  /** Ops listeners (`/healthz`, `/metrics`) of the control plane and the key service. */
  opsPort: number;
  opsHost: string;
  keyServiceOpsPort: number;
  keyServiceOpsHost: string;
  /** Whether this process moves audit events from the stream into Postgres. */
  auditConsumer: boolean;
  /** Longest an admin API request may take before it answers 503 `deadline_exceeded`. */
  adminDeadlineMs: number;
  /** Longest a key service request may take before it answers 503. */
  keyServiceDeadlineMs: number;
  /** TLS ask: database queries per source address, per second and at once (then 429). */
  tlsAskRatePerSecond: number;
  tlsAskBurst: number;
  /** Names of secrets generated for this process because they were not set. */
  generatedSecrets: string[];
}

export function loadControlPlaneConfig(env: Record<string, string | undefined>): Readonly<ControlPlaneConfig> {
  const e = parseEnv(Env, env);
  const generated: string[] = [];
  const platformDomain = hostSetting("PLATFORM_DOMAIN", e.PLATFORM_DOMAIN);
  return Object.freeze({
    adminPort: e.ADMIN_PORT,
    adminHost: e.ADMIN_HOST,
    keyServicePort: e.KEY_SERVICE_PORT,
    keyServiceHost: e.KEY_SERVICE_HOST,
    databaseUrl: e.DATABASE_URL,
    redisUrl: e.REDIS_URL,
    redis: redisConnection(e),
    redisPrefix: e.REDIS_PREFIX,
    platformDomain,
    apiHostname: hostSetting("API_HOSTNAME", e.API_HOSTNAME ?? `api.${platformDomain}`),
    adminToken: secret(env, "ADMIN_TOKEN", generated),
    keyServiceToken: secret(env, "KEY_SERVICE_TOKEN", generated),
    sessionSecret: secret(env, "SESSION_SECRET", generated),
    contextSigningSecret: secret(env, "CONTEXT_SIGNING_SECRET", generated),
    sessionCookie: e.SESSION_COOKIE,
    sessionTtlSeconds: e.SESSION_TTL_SECONDS,
    keyUsageFlushMs: e.KEY_USAGE_FLUSH_MS,
    dnsServers: e.DNS_SERVERS,
    alertWebhookUrl: e.ALERT_WEBHOOK_URL,
    domainRecheckIntervalMs: e.DOMAIN_RECHECK_INTERVAL_MS,
    domainRecheckGraceMs: e.DOMAIN_RECHECK_GRACE_MS,
    domainUnverifiedTtlMs: e.DOMAIN_UNVERIFIED_TTL_MS,
    dataDir: e.DATA_DIR,
    logLevel: e.LOG_LEVEL,
    opsPort: e.CONTROL_PLANE_OPS_PORT,
    opsHost: e.CONTROL_PLANE_OPS_HOST,
    keyServiceOpsPort: e.KEY_SERVICE_OPS_PORT,
    keyServiceOpsHost: e.KEY_SERVICE_OPS_HOST,
    auditConsumer: e.AUDIT_CONSUMER === "true",
    adminDeadlineMs: e.ADMIN_DEADLINE_MS,
    keyServiceDeadlineMs: e.KEY_SERVICE_DEADLINE_MS,
    tlsAskRatePerSecond: e.TLS_ASK_RATE_PER_SECOND,
    tlsAskBurst: e.TLS_ASK_BURST,
    generatedSecrets: generated,
  });
}

const CliEnv = z.object({
  PORTCULLIS_ADMIN_URL: z.string().url().default("http://127.0.0.1:8081"),
  ADMIN_TOKEN: z.string().optional(),
  ALERT_WEBHOOK_URL: z.string().url().optional(),
});

/** Settings of the `portcullis` CLI: where the admin API is, and where alerts go. */
export interface CliConfig {
  adminUrl: string;
  adminToken: string | undefined;
  alertWebhookUrl: string | undefined;
}

export function loadCliConfig(env: Record<string, string | undefined>): Readonly<CliConfig> {
  // Empty values count as unset, as a pipeline often exports `VAR=` for optional settings.
  const present = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ""));
  const e = parseEnv(CliEnv, present);
  return Object.freeze({
    adminUrl: e.PORTCULLIS_ADMIN_URL.replace(/\/+$/, ""),
    adminToken: e.ADMIN_TOKEN,
    alertWebhookUrl: e.ALERT_WEBHOOK_URL,
  });
}
