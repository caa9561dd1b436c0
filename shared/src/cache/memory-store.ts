/**
 * The in-process store: the same semantics as RedisStore for a single process
 * (the embedded quickstart). Not shared across processes, so valid only when the
 * router, control plane and key service run together.
 */
import { storedFreshUntil } from "./keys.ts";
import type {
  AdmitCall,
  CounterBatch,
  Admission,
  QuotaCheck,
  RateCheck,
  SetMode,
  Store,
  StreamEntry,
  StreamReadOptions,
  StreamStore,
} from "./store.ts";

/** An in-process stream: entries in order, plus one delivery state per group. */
interface MemoryStream {
  entries: Map<string, { seq: number; data: string }>;
  nextSeq: number;
  groups: Map<string, { delivered: number; pending: Map<string, { consumer: string; at: number }> }>;
  waiters: Set<() => void>;
}

interface Cell {
  value: string;
  version: number;
  expiresAt: number;
}

export class MemoryStore implements Store, StreamStore {
  readonly kind = "memory" as const;
  readonly #cells = new Map<string, Cell>();
  readonly #counters = new Map<string, { n: number; expiresAt: number }>();
  readonly #hashes = new Map<string, Map<string, number>>();
  /** Names of claimed counter batches, by claim key. */
  readonly #batches = new Map<string, string>();
  readonly #channels = new Map<string, Set<(message: string) => void>>();
  readonly #streams = new Map<string, MemoryStream>();
  readonly #now: () => number;

  constructor(options: { now?: () => number } = {}) {
    this.#now = options.now ?? Date.now;
  }

  async get(key: string): Promise<string | null> {
    const cell = this.#cells.get(key);
    if (!cell) return null;
    if (cell.expiresAt <= this.#now()) {
      this.#cells.delete(key);
      return null;
    }
    return cell.value;
  }

  async setIfNewer(key: string, value: string, version: number, ttlMs: number, mode: SetMode): Promise<boolean> {
    const now = this.#now();
    const cur = this.#cells.get(key);
    if (cur && cur.expiresAt > now) {
      if (cur.version > version) return false;
      if (cur.version === version && mode === "fill") {
        // The same record: a fill only renews its freshness (see `storedEntry`).
        const curFresh = storedFreshUntil(cur.value);
        const newFresh = storedFreshUntil(value);
        if (curFresh === null || newFresh === null || newFresh <= curFresh) return false;
      }
    }
    this.#cells.set(key, { value, version, expiresAt: now + ttlMs });
    return true;
  }

  async del(...keys: string[]): Promise<void> {
    for (const key of keys) this.#cells.delete(key);
  }

  async publish(channel: string, message: string): Promise<void> {
    for (const handler of this.#channels.get(channel) ?? []) {
      queueMicrotask(() => handler(message));
    }
  }

  async subscribe(channel: string, onMessage: (message: string) => void, _onReset: () => void) {
    let handlers = this.#channels.get(channel);
    if (!handlers) {
      handlers = new Set();
      this.#channels.set(channel, handlers);
    }
    handlers.add(onMessage);
    return async () => {
      handlers.delete(onMessage);
    };
  }

  async ping(): Promise<boolean> {
    return true;
  }

  async gcra(key: string, emissionIntervalMs: number, burst: number) {
    const now = this.#now();
    const cur = this.#counters.get(key);
    let tat = cur && cur.expiresAt > now ? cur.n : now;
    if (tat < now) tat = now;
    const newTat = tat + emissionIntervalMs;
    const allowAt = newTat - burst * emissionIntervalMs;
    if (allowAt > now) return { allowed: false, retryAfterMs: Math.ceil(allowAt - now), remaining: 0 };
    this.#counters.set(key, { n: newTat, expiresAt: newTat + 1 });
    return { allowed: true, retryAfterMs: 0, remaining: Math.floor((now - allowAt) / emissionIntervalMs) };
  }

  async incr(key: string, by: number, ttlMs: number): Promise<number> {
    const now = this.#now();
    const cur = this.#counters.get(key);
    const n = (cur && cur.expiresAt > now ? cur.n : 0) + by;
    this.#counters.set(key, { n, expiresAt: cur && cur.expiresAt > now ? cur.expiresAt : now + ttlMs });
    return n;
  }

  async admit(rates: readonly RateCheck[], quota: QuotaCheck | null, want = 1, force = false): Promise<Admission> {
    // Same algorithm as the Redis script (redis-scripts.ts), on this process' clock.
    const now = this.#now();
    const tats: number[] = [];
    let grant = Math.max(1, Math.floor(want));
    let retryAfterMs = 0;
    let least = -1;
    let tightest = 0;
    let slowest = 0;
    for (const [i, r] of rates.entries()) {
      const cur = this.#counters.get(r.key);
      let tat = cur && cur.expiresAt > now ? cur.n : now;
      if (tat < now) tat = now;
      tats.push(tat);
      const room = Math.floor((now - tat) / r.emissionIntervalMs) + r.burst;
      if (room < 1) {
        const wait = tat + r.emissionIntervalMs - r.burst * r.emissionIntervalMs - now;
        if (wait > retryAfterMs) {
          retryAfterMs = wait;
          slowest = i;
        }
      } else if (least < 0 || room < least) {
        least = room;
        tightest = i;
      }
    }
    if (retryAfterMs > 0 && !force) return { ok: false, code: "rate", retryAfterMs: Math.ceil(retryAfterMs), bucket: slowest };
    if (least >= 0 && least < grant && !force) grant = least;
    let used = 0;
    let overQuota = false;
    if (quota !== null) {
      const cur = this.#counters.get(quota.key);
      const live = cur && cur.expiresAt > now ? cur : null;
      used = live ? live.n : 0;
      if (used >= quota.limit) {
        if (!force) return { ok: false, code: "quota", used };
        overQuota = true;
      }
      if (!force) grant = Math.min(grant, quota.limit - used);
      used += grant;
      this.#counters.set(quota.key, { n: used, expiresAt: live ? live.expiresAt : now + quota.ttlMs });
    }
    let resetMs = 0;
    rates.forEach((r, i) => {
      const newTat = (tats[i] as number) + grant * r.emissionIntervalMs;
      if (i === tightest) resetMs = newTat - now;
      this.#counters.set(r.key, { n: newTat, expiresAt: newTat + 1 });
    });
    // A forced charge that did not fit: consumed all the same, answered as refused.
    if (retryAfterMs > 0) {
      // Forced past a bucket: its wait grows by what was just consumed from it.
      const wait = retryAfterMs + grant * (rates[slowest] as RateCheck).emissionIntervalMs;
      return { ok: false, code: "rate", retryAfterMs: Math.ceil(wait), bucket: slowest };
    }
    if (overQuota) return { ok: false, code: "quota", used };
    return {
      ok: true,
      remaining: Math.max(0, least - grant),
      resetMs: Math.ceil(resetMs),
      used,
      bucket: tightest,
      granted: grant,
    };
  }

  async admitMany(calls: readonly AdmitCall[]): Promise<Admission[]> {
    const out: Admission[] = [];
    for (const call of calls) out.push(await this.admit(call.rates, call.quota, call.want, call.force));
    return out;
  }

  async refund(rates: readonly RateCheck[], quota: QuotaCheck | null, n: number): Promise<void> {
    const now = this.#now();
    const give = Math.floor(n);
    if (give < 1) return;
    for (const r of rates) {
      const cur = this.#counters.get(r.key);
      if (!cur || cur.expiresAt <= now) continue;
      const back = cur.n - give * r.emissionIntervalMs;
      // Back to now or earlier: the bucket is full, as if it had never been touched.
      if (back <= now) this.#counters.delete(r.key);
      else this.#counters.set(r.key, { n: back, expiresAt: back + 1 });
    }
    if (quota !== null) {
      const cur = this.#counters.get(quota.key);
      if (cur && cur.expiresAt > now) cur.n = Math.max(0, cur.n - give);
    }
  }

  async addCounters(key: string, increments: Record<string, number>): Promise<void> {
    let hash = this.#hashes.get(key);
    if (!hash) {
      hash = new Map();
      this.#hashes.set(key, hash);
    }
    for (const field in increments) hash.set(field, (hash.get(field) ?? 0) + (increments[field] as number));
  }

  async takeCounters(key: string): Promise<Record<string, number>> {
    const hash = this.#hashes.get(key);
    this.#hashes.delete(key);
    return hash ? Object.fromEntries(hash) : {};
  }

  async claimCounters(key: string, claimKey: string, batch: string): Promise<CounterBatch | null> {
    let claimed = this.#hashes.get(claimKey);
    if (!claimed) {
      const pending = this.#hashes.get(key);
      if (!pending) return null;
      this.#hashes.delete(key);
      this.#hashes.set(claimKey, pending);
      this.#batches.set(claimKey, batch);
      claimed = pending;
    }
    return { batch: this.#batches.get(claimKey) ?? batch, counters: Object.fromEntries(claimed) };
  }

  async releaseCounters(claimKey: string, batch: string): Promise<void> {
    if (this.#batches.get(claimKey) !== batch) return;
    this.#batches.delete(claimKey);
    this.#hashes.delete(claimKey);
  }

  #stream(name: string): MemoryStream {
    let stream = this.#streams.get(name);
    if (!stream) {
      stream = { entries: new Map(), nextSeq: 1, groups: new Map(), waiters: new Set() };
      this.#streams.set(name, stream);
    }
    return stream;
  }

  #group(stream: MemoryStream, name: string) {
    let group = stream.groups.get(name);
    if (!group) {
      group = { delivered: 0, pending: new Map() };
      stream.groups.set(name, group);
    }
    return group;
  }

  async streamAppend(name: string, payloads: string[], maxLen: number): Promise<number> {
    const stream = this.#stream(name);
    const room = Math.max(0, maxLen - stream.entries.size);
    const n = Math.min(room, payloads.length);
    for (let i = 0; i < n; i++) {
      const seq = stream.nextSeq++;
      stream.entries.set(`${seq}-0`, { seq, data: payloads[i] as string });
    }
    if (n > 0) for (const wake of stream.waiters) wake();
    return n;
  }

  async streamRead(name: string, o: StreamReadOptions): Promise<StreamEntry[]> {
    const stream = this.#stream(name);
    const group = this.#group(stream, o.group);
    const out: StreamEntry[] = [];
    if (o.pending) {
      for (const [id, p] of group.pending) {
        if (out.length >= o.count) break;
        const entry = stream.entries.get(id);
        if (p.consumer === o.consumer && entry) out.push({ id, data: entry.data });
      }
      return out;
    }
    const collect = () => {
      for (const [id, entry] of stream.entries) {
        if (out.length >= o.count) break;
        if (entry.seq <= group.delivered) continue;
        group.delivered = entry.seq;
        group.pending.set(id, { consumer: o.consumer, at: this.#now() });
        out.push({ id, data: entry.data });
      }
    };
    collect();
    if (out.length > 0 || o.blockMs <= 0) return out;
    await new Promise<void>((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        stream.waiters.delete(wake);
        resolve();
      };
      const timer = setTimeout(wake, o.blockMs);
      stream.waiters.add(wake);
    });
    collect();
    return out;
  }

  async streamAck(name: string, group: string, ids: string[]): Promise<void> {
    const stream = this.#stream(name);
    const g = this.#group(stream, group);
    for (const id of ids) {
      g.pending.delete(id);
      stream.entries.delete(id);
    }
  }

  async streamClaim(name: string, group: string, consumer: string, minIdleMs: number, count: number): Promise<StreamEntry[]> {
    const stream = this.#stream(name);
    const g = this.#group(stream, group);
    const now = this.#now();
    const out: StreamEntry[] = [];
    for (const [id, p] of g.pending) {
      if (out.length >= count) break;
      const entry = stream.entries.get(id);
      if (!entry) {
        g.pending.delete(id);
        continue;
      }
      if (p.consumer !== consumer && now - p.at >= minIdleMs) {
        g.pending.set(id, { consumer, at: now });
        out.push({ id, data: entry.data });
      }
    }
    return out;
  }

  async streamLength(name: string): Promise<number> {
    return this.#streams.get(name)?.entries.size ?? 0;
  }

  async close(): Promise<void> {
    this.#channels.clear();
    for (const stream of this.#streams.values()) for (const wake of stream.waiters) wake();
  }
}
