/**
 * Every cache namespace, its key format and its TTLs, in one place. Redis is a cache:
 * every entry can be rebuilt from the control plane's database, and a flushed Redis
 * refills on demand.
 *
 * Staleness bounds (documented in docs/caching.md, "Caching and staleness"):
 * - with invalidation working, a change reaches every router in one pub/sub hop;
 * - with invalidation lost, an in-process entry is trusted for `freshMs`, then
 *   re-read from Redis; Redis entries written by the control plane live `redisTtlMs`;
 * - when neither Redis nor the key service answers, an entry is served until
 *   `maxStaleMs` after it was fetched, then the router answers 503;
 * - an entry whose invalidation the router did receive is never served stale: it is
 *   dropped, so a revoked key gets 503 (not an allow) while nothing can be resolved.
 * So a router that missed a key's revocation accepts it at most `apiKey.freshMs` after
 * it fetched it while Redis is reachable (Redis holds the revocation), and at most
 * `apiKey.maxStaleMs` when Redis and the key service are both unreachable.
 *
 * Stale-if-error in Redis: a positive entry is fresh in Redis for `redisTtlMs`, then
 * kept `redisStaleIfErrorMs` longer (see `storedEntry`). A router that finds it past
 * its freshness asks the key service as it would on a miss, and uses the stored entry
 * only when the key service cannot answer (Postgres down): what Redis holds is the
 * last record the control plane wrote, and while Postgres is down no change can be
 * committed that it would miss. Negative entries are never kept past their TTL.
 */
export const CACHE = {
  host: {
    key: (hostname: string) => `host:${hostname}`,
    freshMs: 10_000,
    negativeMs: 2_000,
    maxStaleMs: 30_000,
    redisTtlMs: 60_000,
    redisStaleIfErrorMs: 600_000,
    redisNegativeTtlMs: 5_000,
  },
  tenant: {
    key: (tenantId: string) => `tenant:${tenantId}`,
    freshMs: 10_000,
    negativeMs: 2_000,
    maxStaleMs: 30_000,
    redisTtlMs: 60_000,
    redisStaleIfErrorMs: 600_000,
    redisNegativeTtlMs: 5_000,
  },
  apiKey: {
    key: (hash: string) => `key:${hash}`,
    freshMs: 10_000,
    negativeMs: 5_000,
    maxStaleMs: 30_000,
    redisTtlMs: 60_000,
    redisStaleIfErrorMs: 600_000,
    redisNegativeTtlMs: 10_000,
  },
  session: {
    key: (sessionId: string) => `session:${sessionId}`,
    freshMs: 10_000,
    negativeMs: 5_000,
    maxStaleMs: 30_000,
    redisTtlMs: 60_000,
    redisStaleIfErrorMs: 600_000,
    redisNegativeTtlMs: 10_000,
  },
} as const;

export type CacheNamespace = (typeof CACHE)[keyof typeof CACHE];

/** `,"freshUntil":<ms>}` at the end of a stored entry, read without parsing. */
const FRESH_UNTIL_SUFFIX = /,"freshUntil":(\d{1,16})\}$/;

/**
 * A positive entry as written to the store: its JSON with the time it stops being
 * fresh (`freshUntil`, epoch ms) appended last, and a store TTL that keeps it
 * `staleIfErrorMs` longer for when the origin cannot answer.
 */
export function storedEntry(
  entry: object,
  ttl: { redisTtlMs: number; redisStaleIfErrorMs: number },
  now = Date.now(),
): { json: string; ttlMs: number } {
  const json = JSON.stringify(entry);
  return {
    json: `${json.slice(0, -1)},"freshUntil":${now + ttl.redisTtlMs}}`,
    ttlMs: ttl.redisTtlMs + ttl.redisStaleIfErrorMs,
  };
}

/**
 * Any entry as written to the store: a positive one with its freshness and its
 * stale-if-error time (`storedEntry`; none when the namespace keeps none), a negative
 * one as it is, for its short TTL.
 */
export function storeRecord(
  entry: object,
  positive: boolean,
  ttl: { redisTtlMs: number; redisNegativeTtlMs: number; redisStaleIfErrorMs?: number },
  now = Date.now(),
): { json: string; ttlMs: number } {
  if (!positive) return { json: JSON.stringify(entry), ttlMs: ttl.redisNegativeTtlMs };
  return storedEntry(entry, { redisTtlMs: ttl.redisTtlMs, redisStaleIfErrorMs: ttl.redisStaleIfErrorMs ?? 0 }, now);
}

/** When a stored entry stops being fresh (epoch ms), or null for one written without it (fresh for its whole TTL). */
export function storedFreshUntil(json: string): number | null {
  const m = FRESH_UNTIL_SUFFIX.exec(json);
  return m === null ? null : Number(m[1]);
}

/** Pub/sub channel of invalidation events (prefixed like every key). */
export const INVALIDATION_CHANNEL = "invalidate";

/** Default prefix of every Redis key and channel; tests use one prefix per file. */
export const DEFAULT_PREFIX = "pc:v1:";

/** Bound of each in-process cache table (entries). */
export const L1_MAX_ENTRIES = 200_000;

/**
 * Limits and usage (router/src/limits, control-plane/src/usage). Rate buckets live
 * as long as they matter (their own TTL, set by the store); a quota counter lives
 * until after its month ends; pending usage is one hash that routers add to and the
 * control plane takes atomically. A tenant's keys share one hash tag (`{tenantId}`)
 * and the usage keys another, so that each script touches one Redis Cluster slot.
 */
export const LIMIT_KEYS = {
  tenantRate: (tenantId: string) => `rl:{${tenantId}}:t`,
  keyRate: (tenantId: string, keyId: string) => `rl:{${tenantId}}:k:${keyId}`,
  quota: (tenantId: string, period: string) => `quota:{${tenantId}}:${period}`,
  usagePending: "usage:{pending}",
  /** The batch a usage collection has claimed and not yet applied (see UsageCollector). */
  usageCollecting: "usage:{pending}:collecting",
} as const;

/**
 * The names of releases before hash tags, for counts that must survive an upgrade on
 * one Redis (never on a cluster, which starts with the tagged names): a quota counter
 * is carried over by the first admit that finds no tagged one, and usage left under
 * the old names is still collected.
 */
export const LEGACY_LIMIT_KEYS = {
  quota: (tenantId: string, period: string) => `quota:${period}:${tenantId}`,
  usagePending: "usage:pending",
  usageCollecting: "usage:pending:collecting",
} as const;

/** The calendar month (UTC) of a time, `YYYY-MM`: the period of quotas and usage. */
export function periodOf(timeMs: number): string {
  const d = new Date(timeMs);
  return `${d.getUTCFullYear()}-${String(d.getUTCMonth() + 1).padStart(2, "0")}`;
}

/** Milliseconds from `timeMs` to the start of the next UTC month. */
export function msToNextPeriod(timeMs: number): number {
  const d = new Date(timeMs);
  return Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1) - timeMs;
}

/**
 * The durable audit stream (Redis Stream, prefixed like every key): routers append
 * decisions in batches, the control plane's consumer group moves them to Postgres
 * and deletes what it committed. `maxLen` bounds the backlog: a batch that would
 * exceed it is refused (and counted by the router as dropped) instead of trimming
 * unread events silently.
 */
export const AUDIT_STREAM = {
  key: "audit:decisions",
  group: "audit-writers",
  /** The hash chain of these events in Postgres (`audit_events.stream`). */
  chain: "decisions",
  defaultMaxLen: 1_000_000,
} as const;
