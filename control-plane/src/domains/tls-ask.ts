/**
 * The on-demand TLS permission check (`GET /v1/tls/ask?domain=`): a TLS terminator
 * such as Caddy asks before it requests a certificate for a name it was sent in SNI.
 * Only verified hostnames of active tenants get a yes, so nobody can make the
 * platform obtain certificates for names it does not serve (or exhaust the CA's rate
 * limits with random names).
 *
 * Answers come from an in-process map. It stays coherent with this process's own
 * writes through the publisher's synchronous hook, and with other control-plane
 * processes through the invalidation channel; a generation counter keeps a load that
 * raced an invalidation from caching what it read before the write.
 */
import { eq } from "drizzle-orm";
import { normalizeHostname } from "@portcullis/shared";
import type { Db } from "../db/client.ts";
import { hostnames, tenants } from "../db/schema/index.ts";
import type { Change } from "../publish/index.ts";

export type TlsAskAnswer =
  | { allowed: true; hostname: string; tenantId: string }
  | { allowed: false; code: "invalid_domain" | "unknown_domain" | "not_verified" | "tenant_inactive" };

interface Entry {
  answer: TlsAskAnswer;
  tenantId: string | null;
  expires: number;
}

export interface TlsAskOptions {
  db: Db;
  now?: () => number;
  /** Upper bound on the age of an answer even if an invalidation were lost. */
  ttlMs?: number;
  negativeTtlMs?: number;
  maxEntries?: number;
}

export class TlsAsk {
  readonly #db: Db;
  readonly #now: () => number;
  readonly #ttl: number;
  readonly #negativeTtl: number;
  readonly #max: number;
  readonly #entries = new Map<string, Entry>();
  readonly #loading = new Map<string, Promise<TlsAskAnswer>>();
  #generation = 0;

  constructor(options: TlsAskOptions) {
    this.#db = options.db;
    this.#now = options.now ?? Date.now;
    this.#ttl = options.ttlMs ?? 60_000;
    this.#negativeTtl = options.negativeTtlMs ?? 5_000;
    this.#max = options.maxEntries ?? 100_000;
  }

  /** Synchronous on a warm cache: a normalization and a Map lookup. */
  ask(domain: string): TlsAskAnswer | Promise<TlsAskAnswer> {
    const n = normalizeHostname(domain, { allowUnicode: true });
    if (!n.ok) return { allowed: false, code: "invalid_domain" };
    const hit = this.#entries.get(n.hostname);
    if (hit && hit.expires > this.#now()) return hit.answer;
    let pending = this.#loading.get(n.hostname);
    if (!pending) {
      pending = this.#load(n.hostname).finally(() => this.#loading.delete(n.hostname));
      this.#loading.set(n.hostname, pending);
    }
    return pending;
  }

  async #load(hostname: string): Promise<TlsAskAnswer> {
    const generation = this.#generation;
    const [row] = await this.#db
      .select({ status: hostnames.status, tenantId: hostnames.tenantId, tenantStatus: tenants.status })
      .from(hostnames)
      .innerJoin(tenants, eq(tenants.id, hostnames.tenantId))
      .where(eq(hostnames.hostname, hostname));
    const answer: TlsAskAnswer = !row
      ? { allowed: false, code: "unknown_domain" }
      : row.status !== "verified"
        ? { allowed: false, code: "not_verified" }
        : row.tenantStatus !== "active"
          ? { allowed: false, code: "tenant_inactive" }
          : { allowed: true, hostname, tenantId: row.tenantId };
    if (generation === this.#generation) {
      if (this.#entries.size >= this.#max) {
        // Bounded: drop the oldest insertion (Map iteration order).
        const oldest = this.#entries.keys().next().value;
        if (oldest !== undefined) this.#entries.delete(oldest);
      }
      const ttl = answer.allowed ? this.#ttl : this.#negativeTtl;
      this.#entries.set(hostname, { answer, tenantId: row?.tenantId ?? null, expires: this.#now() + ttl });
    }
    return answer;
  }

  /** Drop the answers a change can affect: its hosts, and every host of its tenants. */
  invalidate(change: Change): void {
    this.#generation++;
    for (const host of change.hosts ?? []) this.#entries.delete(host);
    const ids = change.tenants ?? [];
    if (ids.length === 0) return;
    const set = new Set(ids);
    for (const [host, entry] of this.#entries) if (entry.tenantId && set.has(entry.tenantId)) this.#entries.delete(host);
  }

  clear(): void {
    this.#generation++;
    this.#entries.clear();
  }
}
