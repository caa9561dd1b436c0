/**
 * Usage metering, off the request path: each exchange adds to an in-memory counter
 * per tenant and month; a timer moves the counters into the shared store's pending
 * hash (`LIMIT_KEYS.usagePending`, one atomic HINCRBY transaction per slice of
 * `FLUSH_SLICE` tenant-months), from which the control plane takes them atomically
 * into Postgres. A failed slice puts its counts and the unsent rest back for the next
 * flush (a slice is all or nothing, so nothing is counted twice); `close` flushes, so a
 * drained or closed router loses nothing it counted (a crash loses at most one
 * interval).
 *
 * Fields of the pending hash: `<period>|<tenantId>|<r|x|i|o>` for requests allowed,
 * requests refused, body bytes in and body bytes out.
 */
import { LIMIT_KEYS, msToNextPeriod, periodOf, type Store } from "@portcullis/shared";
import type { RouterMetrics } from "../ops/index.ts";

interface Counts {
  r: number;
  x: number;
  i: number;
  o: number;
}

/** Bound of tenants × months held between flushes; past it, counts are dropped and counted. */
const MAX_PENDING = 100_000;

/**
 * Tenant-months per store call. A flush goes out in slices, one round trip each, and
 * requests are served between them: in one call, a flush of 1,000 tenants held the
 * event loop for 5–7 ms on the benchmark machine (building 4,000 fields, then the
 * client encoding 8,000 arguments), once a second, which is a latency tail.
 */
export const FLUSH_SLICE = 100;

/** Tenant-months waiting for a flush: period → tenant → counts. */
type Pending = Map<string, Map<string, Counts>>;

export class UsageMeter {
  readonly #store: Store;
  readonly #metrics: RouterMetrics | undefined;
  readonly #now: () => number;
  readonly #timer: NodeJS.Timeout;
  #pending: Pending = new Map();
  /** Tenant-months in `#pending`. */
  #size = 0;
  /** The current period's table in `#pending`: a request finds its counts by tenant id alone. */
  #current = new Map<string, Counts>();
  #flushing: Promise<void> | null = null;
  #period = "";
  #periodEnds = 0;

  constructor(options: { store: Store; metrics?: RouterMetrics; now?: () => number; intervalMs?: number }) {
    this.#store = options.store;
    this.#metrics = options.metrics;
    this.#now = options.now ?? Date.now;
    this.#timer = setInterval(() => void this.flush(), options.intervalMs ?? 1_000);
    this.#timer.unref();
  }

  /** One finished exchange of a tenant. */
  record(tenantId: string, allowed: boolean, bytesIn: number, bytesOut: number): void {
    const now = this.#now();
    if (now >= this.#periodEnds) {
      this.#period = periodOf(now);
      this.#periodEnds = now + msToNextPeriod(now);
      this.#current = this.#table(this.#pending, this.#period);
    }
    let c = this.#current.get(tenantId);
    if (c === undefined) {
      if (this.#size >= MAX_PENDING) {
        this.#metrics?.usageDropped.inc();
        return;
      }
      c = { r: 0, x: 0, i: 0, o: 0 };
      this.#current.set(tenantId, c);
      this.#size++;
    }
    if (allowed) c.r++;
    else c.x++;
    c.i += bytesIn;
    c.o += bytesOut;
  }

  #table(pending: Pending, period: string): Map<string, Counts> {
    let table = pending.get(period);
    if (table === undefined) {
      table = new Map();
      pending.set(period, table);
    }
    return table;
  }

  /** Tenant-months waiting for the next flush. */
  get depth(): number {
    return this.#size;
  }

  flush(): Promise<void> {
    if (this.#flushing) return this.#flushing.then(() => this.flush());
    if (this.#size === 0) return Promise.resolve();
    const batch = this.#pending;
    this.#pending = new Map();
    this.#size = 0;
    this.#current = this.#table(this.#pending, this.#period);
    this.#flushing = (async () => {
      const entries = pendingEntries(batch);
      try {
        for (;;) {
          const slice: [string, string, Counts][] = [];
          for (let next = entries.next(); !next.done; next = entries.next()) {
            slice.push(next.value);
            if (slice.length === FLUSH_SLICE) break;
          }
          if (slice.length === 0) return;
          const increments: Record<string, number> = {};
          let requests = 0;
          for (const [period, tenantId, c] of slice) {
            const key = `${period}|${tenantId}`;
            requests += c.r + c.x;
            if (c.r) increments[`${key}|r`] = c.r;
            if (c.x) increments[`${key}|x`] = c.x;
            if (c.i) increments[`${key}|i`] = c.i;
            if (c.o) increments[`${key}|o`] = c.o;
          }
          try {
            await this.#store.addCounters(LIMIT_KEYS.usagePending, increments, requests);
          } catch {
            // A slice is all or nothing: it and the unsent rest wait for the next flush.
            this.#metrics?.usageFlushErrors.inc();
            for (const [period, tenantId, c] of slice) this.#restore(period, tenantId, c);
            for (const [period, tenantId, c] of entries) this.#restore(period, tenantId, c);
            return;
          }
        }
      } finally {
        this.#flushing = null;
      }
    })();
    return this.#flushing;
  }

  /** Counts that could not be flushed, back into the pending table (merged with newer ones). */
  #restore(period: string, tenantId: string, c: Counts): void {
    const table = this.#table(this.#pending, period);
    const cur = table.get(tenantId);
    if (cur === undefined) {
      table.set(tenantId, c);
      this.#size++;
    } else {
      cur.r += c.r;
      cur.x += c.x;
      cur.i += c.i;
      cur.o += c.o;
    }
  }

  async close(): Promise<void> {
    clearInterval(this.#timer);
    await this.flush();
  }
}

function* pendingEntries(pending: Pending): Generator<[string, string, Counts]> {
  for (const [period, table] of pending) for (const [tenantId, c] of table) yield [period, tenantId, c];
}
