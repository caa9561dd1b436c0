/**
 * One cache namespace in three tiers: a bounded in-process table, the shared store
 * (Redis), then the key service (the database). Misses are de-duplicated; "not
 * found" is cached briefly; a newer version in the store always wins (setIfNewer).
 * When the store and the key service both fail, an entry is served only until its
 * declared maximum staleness, then the caller gets `unavailable`: never a guess. When
 * only the key service fails, the store's entry is used past its freshness, within
 * the store's stale-if-error time (see `storedEntry`).
 */
import { type Store, storedFreshUntil, storeRecord } from "@portcullis/shared";

export interface Ttl {
  freshMs: number;
  negativeMs: number;
  maxStaleMs: number;
  redisTtlMs: number;
  redisNegativeTtlMs: number;
  /** Kept in the store this much past `redisTtlMs`, for when the origin cannot answer (absent: not kept). */
  redisStaleIfErrorMs?: number;
}

interface Slot<T> {
  value: T;
  /** With refresh-ahead, a busy entry is re-read in the background from this time on. */
  refreshAt: number;
  freshUntil: number;
  staleUntil: number;
}

/**
 * Refresh-ahead starts this far into an entry's freshness, plus a random share of
 * `REFRESH_SPREAD` of it: entries filled together (a warm-up, a restart, a cleared
 * cache) are re-read spread over 2.5 s of a 10 s freshness, not all in one burst that
 * stalls the event loop. What is left after the latest point (2.5 s of 10) is the
 * window a request must fall in to start the re-read: an entry asked for at least
 * that often never waits for Redis. (With 8 to 9.5 s, an entry asked once a second
 * found no request in its window one time in twelve, and that request waited.)
 */
export const REFRESH_AT = 0.5;
export const REFRESH_SPREAD = 0.25;

/**
 * Invalidated ids are remembered this long (longer than any load runs: the store's and
 * the key service's timeouts are seconds) and at most this many; see `invalidate`.
 */
const INVALIDATED_MS = 60_000;
const INVALIDATED_MAX = 10_000;

/** `{"v":<digits>,` at the start of a stored entry: its version, read without parsing. */
const VERSION_PREFIX = /^\{"v":(\d{1,16}),/;

export type Lookup<T> =
  | { ok: true; value: T; tier: "memory" | "store" | "origin" | "stale" }
  | { ok: false; code: "unavailable" };

/**
 * Origin calls in flight of one kind of lookup (one gate per cache: see `originGates`
 * in index.ts, so one kind's flood cannot shed another's lookups). Past `max`,
 * a miss is answered like an unreachable origin (stale within bounds, else
 * "unavailable") instead of queueing: a flood of invented keys cannot grow the
 * router's queue to the key service without bound or starve real lookups behind it.
 */
export interface OriginGate {
  inFlight: number;
  max: number;
}

export interface TieredOptions<T extends { v: number }> {
  name: string;
  ttl: Ttl;
  store: Store;
  /** How an entry is read from the store (default `store.get`; the resolver batches them per turn, read-batch.ts). */
  read?: (key: string) => Promise<string | null>;
  storeKey: (id: string) => string;
  /** Parse and validate a stored JSON value; null when it is not a valid entry. */
  parse: (json: string) => T | null;
  /** Load from the origin (key service). Throws when unavailable. */
  load: (id: string) => Promise<T>;
  isNegative: (value: T) => boolean;
  /**
   * Re-read a (not negative) entry in the background once it is 50–75 % through its
   * freshness and still asked for, so a busy entry never makes a request wait. Never
   * answers past the freshness bound: that bound is what a lost invalidation costs.
   */
  refreshAhead?: boolean;
  maxEntries: number;
  now: () => number;
  gate?: OriginGate;
  onLookup?: (tier: Lookup<T> extends infer L ? (L extends { tier: infer X } ? X : never) | "unavailable" : never) => void;
}

const UNAVAILABLE = { ok: false, code: "unavailable" } as const;

export class TieredCache<T extends { v: number }> {
  readonly #o: TieredOptions<T>;
  readonly #slots = new Map<string, Slot<T>>();
  readonly #loading = new Map<string, Promise<Lookup<T>>>();
  /** Counts invalidations and clears: a load notes it when it starts. */
  #epoch = 0;
  /**
   * Ids invalidated lately, with the epoch their invalidation made: a load that started
   * before its id's invalidation does not keep what it read. An id of another entry
   * does not concern it, so a busy control plane's changes to other tenants never throw
   * away a refresh. `#recent` holds the same marks in the order they were made (a mark
   * whose id was invalidated again since is skipped when its turn comes), so forgetting
   * the oldest costs the same however many are held.
   */
  readonly #invalidated = new Map<string, number>();
  #recent: { id: string; epoch: number; at: number }[] = [];
  #recentHead = 0;
  /** A load that started before this epoch keeps nothing (a clear, or invalidations forgotten). */
  #floor = 0;

  constructor(options: TieredOptions<T>) {
    this.#o = options;
  }

  get size(): number {
    return this.#slots.size;
  }

  /**
   * The in-process value when it is fresh: the synchronous hot path. With
   * `refreshAhead`, a fresh value near the end of its freshness starts one background
   * re-read, so a busy host never waits for Redis when its entry ages out. Past its
   * freshness an entry is never answered from here: the caller waits for a re-read
   * (and gets the entry only as the stale fallback when nothing can be read).
   */
  peek(id: string): T | undefined {
    const slot = this.#slots.get(id);
    if (slot === undefined) return undefined;
    const now = this.#o.now();
    if (now >= slot.freshUntil) return undefined;
    if (now >= slot.refreshAt && !this.#loading.has(id)) this.#start(id);
    return slot.value;
  }

  #start(id: string): Promise<Lookup<T>> {
    // Only this load's own entry is removed: an invalidation may already have
    // replaced it with a newer load, which must stay joinable.
    const pending: Promise<Lookup<T>> = this.#load(id).finally(() => {
      if (this.#loading.get(id) === pending) this.#loading.delete(id);
    });
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
    if (this.#changedSince(id, epoch)) return;
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

  /**
   * Forget `id`. A load already in flight may carry the old value: later callers must
   * not join it (they would be answered with what was just revoked), so they start
   * their own; the callers that joined it before the event keep its answer.
   */
  invalidate(id: string): void {
    const epoch = ++this.#epoch;
    this.#slots.delete(id);
    this.#loading.delete(id);
    const now = this.#o.now();
    this.#invalidated.set(id, epoch);
    this.#recent.push({ id, epoch, at: now });
    // Forgotten oldest first once no load can still be running from before them (or
    // past a bound): forgetting one raises the floor, so a load older than it keeps
    // nothing, however long it took. Never a guess in a load's favour.
    const recent = this.#recent;
    let head = this.#recentHead;
    while (head < recent.length) {
      const mark = recent[head] as { id: string; epoch: number; at: number };
      const held = recent.length - head;
      if (mark.at > now - INVALIDATED_MS && this.#invalidated.size <= INVALIDATED_MAX && held <= 2 * INVALIDATED_MAX) break;
      head++;
      if (this.#invalidated.get(mark.id) === mark.epoch) this.#invalidated.delete(mark.id);
      if (mark.epoch > this.#floor) this.#floor = mark.epoch;
    }
    if (head > 1_024 && head * 2 > recent.length) {
      this.#recent = recent.slice(head);
      head = 0;
    }
    this.#recentHead = head;
  }

  clear(): void {
    this.#floor = ++this.#epoch;
    this.#invalidated.clear();
    this.#recent = [];
    this.#recentHead = 0;
    this.#slots.clear();
    this.#loading.clear();
  }

  /** Whether `id` was invalidated, or everything cleared, after a load that began at `epoch`. */
  #changedSince(id: string, epoch: number): boolean {
    return epoch < this.#floor || (this.#invalidated.get(id) ?? 0) > epoch;
  }

  async #load(id: string): Promise<Lookup<T>> {
    const epoch = this.#epoch;
    const o = this.#o;
    let value: T | null = null;
    // A stored entry past its freshness: used only if the origin cannot answer.
    let storedStale: T | null = null;
    let tier: "store" | "origin" = "store";
    try {
      const key = o.storeKey(id);
      const json = await (o.read === undefined ? o.store.get(key) : o.read(key));
      if (json !== null) {
        const stored = this.#unchanged(id, json) ?? o.parse(json);
        const freshUntil = storedFreshUntil(json);
        const now = o.now();
        if (freshUntil === null || now < freshUntil) value = stored;
        // Past its stale-if-error time by this router's clock too: not used at all.
        else if (now < freshUntil + (o.ttl.redisStaleIfErrorMs ?? 0)) storedStale = stored;
      }
    } catch {
      // The store is down: go to the origin.
    }
    if (value === null) {
      const gate = o.gate;
      if (gate !== undefined && gate.inFlight >= gate.max) return this.#stale(id, storedStale, epoch);
      if (gate !== undefined) gate.inFlight++;
      try {
        value = await o.load(id);
        tier = "origin";
      } catch {
        return this.#stale(id, storedStale, epoch);
      } finally {
        if (gate !== undefined) gate.inFlight--;
      }
      this.#fill(id, value);
    }
    // An invalidation that arrived while loading may concern this value: use it for
    // this request, but do not keep it.
    if (!this.#changedSince(id, epoch)) this.#remember(id, value);
    return { ok: true, value, tier };
  }

  /**
   * The kept value when the store holds the same version of it: a refresh of an
   * unchanged entry (the common case) costs no parse and no new objects. Versions
   * only grow, so an equal version is the same record.
   */
  #unchanged(id: string, json: string): T | null {
    const slot = this.#slots.get(id);
    if (slot === undefined) return null;
    const m = VERSION_PREFIX.exec(json);
    return m !== null && Number(m[1]) === slot.value.v ? slot.value : null;
  }

  /**
   * The origin cannot answer: the kept entry within its maximum staleness, else the
   * store's entry past its freshness (the last one the control plane wrote, still
   * within the store's stale-if-error time), else nothing.
   */
  #stale(id: string, stored: T | null, epoch: number): Lookup<T> {
    const slot = this.#slots.get(id);
    if (slot && this.#o.now() < slot.staleUntil) return { ok: true, value: slot.value, tier: "stale" };
    if (stored !== null && !this.#o.isNegative(stored)) {
      // Kept like a store read, so warm traffic is answered from memory again.
      if (!this.#changedSince(id, epoch)) this.#remember(id, stored);
      return { ok: true, value: stored, tier: "stale" };
    }
    return UNAVAILABLE;
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
    const freshUntil = now + (negative ? o.ttl.negativeMs : o.ttl.freshMs);
    this.#slots.set(id, {
      value,
      refreshAt:
        o.refreshAhead === true && !negative ? now + o.ttl.freshMs * (REFRESH_AT + REFRESH_SPREAD * Math.random()) : freshUntil,
      freshUntil,
      staleUntil: negative ? now + o.ttl.negativeMs : now + o.ttl.maxStaleMs,
    });
  }

  #fill(id: string, value: T): void {
    const o = this.#o;
    const stored = storeRecord(value, !o.isNegative(value), o.ttl, o.now());
    o.store.setIfNewer(o.storeKey(id), stored.json, value.v, stored.ttlMs, "fill").catch(() => {});
  }
}
