/**
 * The on-demand TLS permission check (`GET /v1/tls/ask?domain=`): a TLS terminator
 * such as Caddy asks before it requests a certificate for a name it was sent in SNI.
 * Only verified hostnames of active tenants get a yes, so nobody can make the
 * platform obtain certificates for names it does not serve (or exhaust the CA's rate
 * limits with random names).
 *
 * The endpoint is unauthenticated, so what one caller can make it cost is bounded:
 * - Answers, positive and negative, come from two bounded in-process maps keyed by the
 *   normalized name. Negative answers have their own, smaller map, so a flood of
 *   random names can only evict other negative answers, never the served names.
 * - Only a name that needs a database query is charged to its caller: a token bucket
 *   per source address (IPv6 by /64, since one host owns a whole /64), in a bounded
 *   table. An empty bucket answers `rate_limited` (429, Retry-After) without a query.
 *   Cached answers and asks that join an in-flight query are never charged.
 * - Concurrent asks for one name share one query.
 *
 * Answers stay coherent with this process's writes through the publisher's synchronous
 * hook, and with other control-plane processes through the invalidation channel. An
 * invalidation drops the affected answers and in-flight loads (a load that read before
 * the write must not answer after it), bumps a generation so a racing load cannot
 * cache what it read, and reloads the hosts the change names at once — charged to
 * nobody, so a name verified after a negative answer is answered positively at once,
 * even to a caller that is over its limit.
 */
import type { Context } from "hono";
import { eq } from "drizzle-orm";
import { getConnInfo } from "@hono/node-server/conninfo";
import { normalizeHostname } from "@portcullis/shared";
import type { Db } from "../db/client.ts";
import { hostnames, tenants } from "../db/schema/index.ts";
import type { Change } from "../publish/index.ts";

export type TlsAskAnswer =
  | { allowed: true; hostname: string; tenantId: string }
  | { allowed: false; code: "invalid_domain" | "unknown_domain" | "not_verified" | "tenant_inactive" }
  | { allowed: false; code: "rate_limited"; retryAfterSeconds: number };

type Stored = Exclude<TlsAskAnswer, { code: "rate_limited" }>;

interface Entry {
  answer: Stored;
  tenantId: string | null;
  expires: number;
}

interface Bucket {
  tokens: number;
  at: number;
}

export interface TlsAskOptions {
  db: Db;
  now?: () => number;
  /** Upper bound on the age of an answer even if an invalidation were lost. */
  ttlMs?: number;
  negativeTtlMs?: number;
  /** Cached positive answers (served names). */
  maxEntries?: number;
  /** Cached negative answers, kept apart so random names cannot evict served ones. */
  maxNegativeEntries?: number;
  /** Database queries a source may cause per second, sustained (default 5). */
  ratePerSecond?: number;
  /** ... and at once (default 20). */
  burst?: number;
  /** Sources tracked at once (default 10,000). */
  maxClients?: number;
  /** Hosts of one change reloaded at once; beyond it they are only dropped. */
  maxRefresh?: number;
  /** Called for every database query (a metric, or a test's counter). */
  onQuery?: () => void;
}

/** Counters since start: what the endpoint cost, for metrics and tests. */
export interface TlsAskStats {
  /** Asks answered from memory. */
  hits: number;
  /** Asks that joined a query already in flight. */
  joined: number;
  /** Database queries run (asks charged to a source, plus reloads after writes). */
  queries: number;
  /** Asks refused because their source was over its limit (no query). */
  limited: number;
}

export class TlsAsk {
  readonly #db: Db;
  readonly #now: () => number;
  readonly #ttl: number;
  readonly #negativeTtl: number;
  readonly #max: number;
  readonly #maxNegative: number;
  readonly #rate: number;
  readonly #burst: number;
  readonly #maxClients: number;
  readonly #maxRefresh: number;
  readonly #onQuery: (() => void) | undefined;
  readonly #positive = new Map<string, Entry>();
  readonly #negative = new Map<string, Entry>();
  readonly #loading = new Map<string, Promise<Stored>>();
  /** Least recently charged first (Map order; a charge re-inserts). */
  readonly #buckets = new Map<string, Bucket>();
  #generation = 0;
  readonly stats: TlsAskStats = { hits: 0, joined: 0, queries: 0, limited: 0 };

  constructor(options: TlsAskOptions) {
    this.#db = options.db;
    this.#now = options.now ?? Date.now;
    this.#ttl = options.ttlMs ?? 60_000;
    this.#negativeTtl = options.negativeTtlMs ?? 5_000;
    this.#max = options.maxEntries ?? 100_000;
    this.#maxNegative = options.maxNegativeEntries ?? 10_000;
    this.#rate = options.ratePerSecond ?? 5;
    this.#burst = Math.max(1, options.burst ?? 20);
    this.#maxClients = options.maxClients ?? 10_000;
    this.#maxRefresh = options.maxRefresh ?? 100;
    this.#onQuery = options.onQuery;
  }

  /**
   * Synchronous on a warm cache: a normalization and a Map lookup. `client` is the
   * caller's address; without one (in-process callers) nothing is charged.
   */
  ask(domain: string, client?: string): TlsAskAnswer | Promise<TlsAskAnswer> {
    const n = normalizeHostname(domain, { allowUnicode: true });
    if (!n.ok) return { allowed: false, code: "invalid_domain" };
    const host = n.hostname;
    const now = this.#now();
    const hit = this.#positive.get(host) ?? this.#negative.get(host);
    if (hit && hit.expires > now) {
      this.stats.hits++;
      return hit.answer;
    }
    const pending = this.#loading.get(host);
    if (pending) {
      this.stats.joined++;
      return pending;
    }
    if (client !== undefined) {
      const wait = this.#charge(clientKey(client), now);
      if (wait > 0) {
        this.stats.limited++;
        return { allowed: false, code: "rate_limited", retryAfterSeconds: Math.max(1, Math.ceil(wait / 1000)) };
      }
    }
    return this.#start(host);
  }

  /** How many sources are tracked, and answers cached (bounded by the options). */
  get sizes(): { clients: number; positive: number; negative: number } {
    return { clients: this.#buckets.size, positive: this.#positive.size, negative: this.#negative.size };
  }

  #start(host: string): Promise<Stored> {
    const load: Promise<Stored> = this.#load(host).finally(() => {
      if (this.#loading.get(host) === load) this.#loading.delete(host);
    });
    this.#loading.set(host, load);
    return load;
  }

  /** Take one token from the source's bucket: 0 when taken, else ms until one is there. */
  #charge(key: string, now: number): number {
    let bucket = this.#buckets.get(key);
    if (bucket) {
      bucket.tokens = Math.min(this.#burst, bucket.tokens + ((now - bucket.at) / 1000) * this.#rate);
      bucket.at = now;
      this.#buckets.delete(key);
    } else {
      if (this.#buckets.size >= this.#maxClients) {
        // Full: the least recently charged source goes if its bucket has refilled (then
        // forgetting it loses nothing); if even it has not, every tracked source is
        // active, and a new one is refused rather than let address rotation buy
        // fresh buckets.
        const [oldKey, old] = this.#buckets.entries().next().value as [string, Bucket];
        if (old.tokens + ((now - old.at) / 1000) * this.#rate < this.#burst) return 1000 / Math.max(this.#rate, 0.001);
        this.#buckets.delete(oldKey);
      }
      bucket = { tokens: this.#burst, at: now };
    }
    this.#buckets.set(key, bucket);
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return 0;
    }
    return ((1 - bucket.tokens) / Math.max(this.#rate, 0.001)) * 1000;
  }

  async #load(hostname: string): Promise<Stored> {
    const generation = this.#generation;
    this.stats.queries++;
    this.#onQuery?.();
    const [row] = await this.#db
      .select({ status: hostnames.status, tenantId: hostnames.tenantId, tenantStatus: tenants.status })
      .from(hostnames)
      .innerJoin(tenants, eq(tenants.id, hostnames.tenantId))
      .where(eq(hostnames.hostname, hostname));
    const answer: Stored = !row
      ? { allowed: false, code: "unknown_domain" }
      : row.status !== "verified"
        ? { allowed: false, code: "not_verified" }
        : row.tenantStatus !== "active"
          ? { allowed: false, code: "tenant_inactive" }
          : { allowed: true, hostname, tenantId: row.tenantId };
    if (generation === this.#generation) {
      const [map, max, ttl] = answer.allowed
        ? [this.#positive, this.#max, this.#ttl]
        : [this.#negative, this.#maxNegative, this.#negativeTtl];
      (answer.allowed ? this.#negative : this.#positive).delete(hostname);
      map.delete(hostname);
      if (map.size >= max) {
        // Bounded: drop the oldest insertion (Map iteration order).
        const oldest = map.keys().next().value;
        if (oldest !== undefined) map.delete(oldest);
      }
      map.set(hostname, { answer, tenantId: row?.tenantId ?? null, expires: this.#now() + ttl });
    }
    return answer;
  }

  /**
   * Drop the answers a change can affect — its hosts, and every host of its tenants —
   * and the loads in flight, then reload the hosts it names (bounded) so the next ask
   * is answered from the new state without being charged to anyone.
   */
  invalidate(change: Change): void {
    this.#generation++;
    this.#loading.clear();
    const refresh = new Set<string>();
    for (const host of change.hosts ?? []) {
      this.#positive.delete(host);
      this.#negative.delete(host);
      refresh.add(host);
    }
    const ids = change.tenants ?? [];
    if (ids.length > 0) {
      const set = new Set(ids);
      for (const map of [this.#positive, this.#negative]) {
        for (const [host, entry] of map) {
          if (entry.tenantId && set.has(entry.tenantId)) {
            map.delete(host);
            refresh.add(host);
          }
        }
      }
    }
    let n = 0;
    for (const host of refresh) {
      if (n++ >= this.#maxRefresh) break;
      // A failed reload leaves the name uncached: the next ask loads it again.
      this.#start(host).catch(() => {});
    }
  }

  clear(): void {
    this.#generation++;
    this.#loading.clear();
    this.#positive.clear();
    this.#negative.clear();
  }
}

/** The rate-limit key of a source address: IPv4 as is, IPv6 by its /64. */
export function clientKey(address: string): string {
  const a = address.toLowerCase();
  if (!a.includes(":")) return a;
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(a);
  if (mapped) return mapped[1] as string;
  const [head = "", tail] = a.split("::");
  const left = head === "" ? [] : head.split(":");
  const right = tail === undefined || tail === "" ? [] : tail.split(":");
  const groups = tail === undefined ? left : [...left, ...Array(Math.max(0, 8 - left.length - right.length)).fill("0"), ...right];
  return `${groups
    .slice(0, 4)
    .map((g) => g.replace(/^0+(?=.)/, ""))
    .join(":")}::/64`;
}

/**
 * The HTTP face of {@link TlsAsk}: 200 for a yes, 404 for a no, 400 for a name that is
 * not a hostname, 429 with Retry-After for a source over its limit. The source is the
 * TCP peer, never a forwarding header: the endpoint is reached directly by the TLS
 * terminator.
 */
export function tlsAskHandler(tlsAsk: TlsAsk) {
  return async function tlsAskRoute(c: Context) {
    const domain = c.req.query("domain");
    if (!domain) return c.json({ allowed: false, code: "invalid_domain" }, 400);
    let client: string;
    try {
      client = getConnInfo(c).remote.address ?? "unknown";
    } catch {
      // Not served by @hono/node-server (an in-process fetch): one shared bucket.
      client = "unknown";
    }
    const answer = await tlsAsk.ask(domain, client);
    if (answer.allowed) return c.json(answer, 200);
    if (answer.code === "rate_limited") {
      c.header("retry-after", String(answer.retryAfterSeconds));
      return c.json({ allowed: false, code: "rate_limited" }, 429);
    }
    return c.json(answer, answer.code === "invalid_domain" ? 400 : 404);
  };
}
