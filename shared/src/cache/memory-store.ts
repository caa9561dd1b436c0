/**
 * The in-process store: the same semantics as RedisStore for a single process
 * (the embedded quickstart). Not shared across processes, so valid only when the
 * router, control plane and key service run together.
 */
import type { SetMode, Store } from "./store.ts";

interface Cell {
  value: string;
  version: number;
  expiresAt: number;
}

export class MemoryStore implements Store {
  readonly kind = "memory" as const;
  readonly #cells = new Map<string, Cell>();
  readonly #counters = new Map<string, { n: number; expiresAt: number }>();
  readonly #channels = new Map<string, Set<(message: string) => void>>();
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
      if (cur.version > version || (cur.version === version && mode === "fill")) return false;
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

  async close(): Promise<void> {
    this.#channels.clear();
  }
}
