/**
 * One cache namespace in three tiers: a bounded in-process table, the shared store
 * (Redis), then the key service (the database). Misses are de-duplicated; "not
 * found" is cached briefly; a newer version in the store always wins (setIfNewer).
 * When the store and the key service both fail, an entry is served only until its
 * declared maximum staleness, then the caller gets `unavailable`: never a guess.
 */
import type { Store } from "@portcullis/shared";

export interface Ttl {
  freshMs: number;
  negativeMs: number;
  maxStaleMs: number;
  redisTtlMs: number;
  redisNegativeTtlMs: number;
}

interface Slot<T> {
  value: T;
  freshUntil: number;
  staleUntil: number;
}

export type Lookup<T> =
  | { ok: true; value: T; tier: "memory" | "store" | "origin" | "stale" }
  | { ok: false; code: "unavailable" };

export interface TieredOptions<T extends { v: number }> {
  name: string;
  ttl: Ttl;
  store: Store;
  storeKey: (id: string) => string;
  /** Parse and validate a stored JSON value; null when it is not a valid entry. */
  parse: (json: string) => T | null;
  /** Load from the origin (key service). Throws when unavailable. */
  load: (id: string) => Promise<T>;
  isNegative: (value: T) => boolean;
  /** Answer a stale (not negative) value while re-reading it in the background. */
  refreshAhead?: boolean;
  maxEntries: number;
  now: () => number;
  onLookup?: (tier: Lookup<T> extends infer L ? (L extends { tier: infer X } ? X : never) | "unavailable" : never) => void;
}

export class TieredCache<T extends { v: number }> {
  readonly #o: TieredOptions<T>;
  readonly #slots = new Map<string, Slot<T>>();
  readonly #loading = new Map<string, Promise<Lookup<T>>>();
  #epoch = 0;

  constructor(options: TieredOptions<T>) {
    this.#o = options;
  }

  get size(): number {
    return this.#slots.size;
  }

  /**
   * The in-process value when it is fresh: the synchronous hot path. With
   * `refreshAhead`, a value past its freshness but within its maximum staleness is
   * still answered while one background load re-reads it (stale-while-revalidate),
   * so a busy host never waits for Redis when its entry ages out; a failed re-read
   * leaves the entry to expire at its maximum staleness, as before.
   */
  peek(id: string): T | undefined {
    const slot = this.#slots.get(id);
    if (slot === undefined) return undefined;
    const now = this.#o.now();
    if (now < slot.freshUntil) return slot.value;
    if (this.#o.refreshAhead === true && now < slot.staleUntil) {
      if (!this.#loading.has(id)) this.#start(id);
      return slot.value;
    }
    return undefined;
  }

  #start(id: string): Promise<Lookup<T>> {
    const pending = this.#load(id).finally(() => this.#loading.delete(id));
    this.#loading.set(id, pending);
    return pending;
  }

  async get(id: string): Promise<Lookup<T>> {
    const fresh = this.peek(id);
    if (fresh !== undefined) {
      this.#o.onLookup?.("memory");
      return { ok: true, value: fresh, tier: "memory" };
    }
    const pending = this.#loading.get(id) ?? this.#start(id);
    const result = await pending;
    this.#o.onLookup?.(result.ok ? result.tier : "unavailable");
    return result;
  }

  /** Put a value learned elsewhere (a host lookup answers with its tenant too). */
  prime(id: string, value: T, epoch = this.#epoch): void {
    if (epoch !== this.#epoch) return;
    this.#remember(id, value);
    this.#fill(id, value);
  }

  /**
   * Put a value into this process's table only (no store write): warming a router
   * from a snapshot, and the benchmark's large tenant counts. The value is trusted
   * for the usual fresh TTL, like any other entry.
   */
  seed(id: string, value: T): void {
    this.#remember(id, value);
  }

  get epoch(): number {
    return this.#epoch;
  }

  invalidate(id: string): void {
    this.#epoch++;
    this.#slots.delete(id);
  }

  clear(): void {
    this.#epoch++;
    this.#slots.clear();
  }

  async #load(id: string): Promise<Lookup<T>> {
    const epoch = this.#epoch;
    const o = this.#o;
    let value: T | null = null;
    let tier: "store" | "origin" = "store";
    try {
      const json = await o.store.get(o.storeKey(id));
      if (json !== null) value = o.parse(json);
    } catch {
      // The store is down: go to the origin.
    }
    if (value === null) {
      try {
        value = await o.load(id);
        tier = "origin";
      } catch {
        const slot = this.#slots.get(id);
        if (slot && o.now() < slot.staleUntil) return { ok: true, value: slot.value, tier: "stale" };
        return { ok: false, code: "unavailable" };
      }
      this.#fill(id, value);
    }
    // An invalidation that arrived while loading may concern this value: use it for
    // this request, but do not keep it.
    if (epoch === this.#epoch) this.#remember(id, value);
    return { ok: true, value, tier };
  }

  #remember(id: string, value: T): void {
    const o = this.#o;
    const now = o.now();
    if (this.#slots.size >= o.maxEntries && !this.#slots.has(id)) {
      // Bounded: evict the oldest insertion (Map keeps insertion order).
      const oldest = this.#slots.keys().next().value;
      if (oldest !== undefined) this.#slots.delete(oldest);
    }
    const negative = o.isNegative(value);
    this.#slots.set(id, {
      value,
      freshUntil: now + (negative ? o.ttl.negativeMs : o.ttl.freshMs),
      staleUntil: negative ? now + o.ttl.negativeMs : now + o.ttl.maxStaleMs,
    });
  }

  #fill(id: string, value: T): void {
    const o = this.#o;
    const ttl = o.isNegative(value) ? o.ttl.redisNegativeTtlMs : o.ttl.redisTtlMs;
    o.store.setIfNewer(o.storeKey(id), JSON.stringify(value), value.v, ttl, "fill").catch(() => {});
  }
}
