/**
 * After every committed write that changes routing, the publisher writes the new
 * records into the shared store (authoritatively: a newer version always wins) and
 * publishes invalidation events, so every router drops its in-process copies at once.
 *
 * Postgres is the truth and the store a copy of it, so an admin write never fails
 * because the store does: the change is committed, the admin call answers, and the
 * publication is retried until it lands. What waits is not a queue of changes but one
 * union of the ids they touched (tenants, hosts, keys, sessions): every write re-reads
 * the records from Postgres, so the union of several changes written once says the
 * same as each of them written in turn, and its size is bounded by the number of
 * distinct ids, not by how long the store is down or how many writes happen
 * meanwhile. One write runs at a time and a change joins the next write after the
 * one in flight, so events leave in commit order. Retries back off from 50 ms to at
 * most 500 ms (and start at once when the store's breaker sees Redis back), so routers
 * hear of every change within about half a second of the store answering again.
 */
import { CACHE, type CacheNamespace, INVALIDATION_CHANNEL, type Invalidation, type Store, storeRecord } from "@portcullis/shared";
import type { Logger } from "pino";
import { nextVersion, type Db } from "../db/client.ts";
import { hostEntry, keyEntry, sessionEntry, tenantEntry } from "../records/index.ts";

export interface Change {
  tenants?: string[];
  hosts?: string[];
  keys?: string[];
  sessions?: string[];
}

const KINDS = ["tenants", "hosts", "keys", "sessions"] as const;
type Kind = (typeof KINDS)[number];
/** Ids of changed records by kind: the union of the changes one write publishes. */
type Batch = Record<Kind, Set<string>>;

export interface PublisherOptions {
  /** First retry delay after a failed write; doubles per failure up to `maxRetryMs`. */
  retryMs?: number;
  maxRetryMs?: number;
  /** Most ids named by one invalidation event (larger unions are sent as several). */
  idsPerEvent?: number;
  /** How long `close` waits for pending changes to land (default 5 s). */
  closeTimeoutMs?: number;
  /** How long a published id is remembered for `republishRecent` (default: a record's freshness in Redis, 60 s). */
  recentMs?: number;
  now?: () => number;
}

/** Ids remembered for `republishRecent` at most (the oldest go first). */
const RECENT_MAX = 50_000;

/** Past this many pending ids the union is reported as unusually large (it is still kept whole). */
const LARGE_UNION = 10_000;
/** Store writes in flight at once within one publication. */
const WRITE_CHUNK = 1_000;

function emptyBatch(): Batch {
  return { tenants: new Set(), hosts: new Set(), keys: new Set(), sessions: new Set() };
}

function sizeOf(batch: Batch | null): number {
  return batch ? batch.tenants.size + batch.hosts.size + batch.keys.size + batch.sessions.size : 0;
}

export class Publisher {
  readonly #db: Db;
  readonly #store: Store;
  readonly #log: Logger;
  readonly #retryMs: number;
  readonly #maxRetryMs: number;
  readonly #idsPerEvent: number;
  readonly #closeTimeoutMs: number;
  readonly #listeners: ((change: Change) => void)[] = [];
  /** Changes not yet taken by a write, and the publish calls waiting for that write. */
  #waiting: Batch | null = null;
  #waiters: (() => void)[] = [];
  /** The union being written now. */
  #writing: Batch | null = null;
  #running: Promise<void> | null = null;
  /** Consecutive failed writes; above 0 the store is taken to be down. */
  #failures = 0;
  #lastWarning = 0;
  #warnedLarge = false;
  #wake: (() => void) | null = null;
  #idle: ((landed: boolean) => void)[] = [];
  #closed = false;
  /** Ids published lately (`kind\nid` → when), for `republishRecent`. */
  readonly #recent = new Map<string, number>();
  readonly #recentMs: number;
  readonly #now: () => number;

  constructor(db: Db, store: Store, log: Logger, options: PublisherOptions = {}) {
    this.#db = db;
    this.#store = store;
    this.#log = log;
    this.#retryMs = options.retryMs ?? 50;
    this.#maxRetryMs = options.maxRetryMs ?? 500;
    this.#idsPerEvent = options.idsPerEvent ?? 1_000;
    this.#closeTimeoutMs = options.closeTimeoutMs ?? 5_000;
    this.#recentMs = options.recentMs ?? CACHE.tenant.redisTtlMs;
    this.#now = options.now ?? Date.now;
  }

  /**
   * Run `listener` synchronously on every change as it is published, before the
   * store is written: in-process caches of the control plane (the TLS ask answers)
   * are coherent with its own writes by the time the admin call returns.
   */
  onPublish(listener: (change: Change) => void): void {
    this.#listeners.push(listener);
  }

  /** Ids of committed changes not yet in the store (the `portcullis_publish_pending` gauge). */
  get pending(): number {
    return sizeOf(this.#waiting) + sizeOf(this.#writing);
  }

  /**
   * Publish a change. Never rejects: resolves once the store has it, or once a write
   * of it failed and its retry is scheduled. While the store is known down it resolves
   * at once, so admin calls do not wait on a store that is not there.
   */
  publish(change: Change): Promise<void> {
    this.#remember(change);
    return this.#publish(change);
  }

  /**
   * Write again what was published within the last `recentMs` (its current state, read
   * from Postgres like any publication): after a Redis failover, whose new master may
   * have missed the last writes of the old one, or a Redis that came back empty. A
   * lost record would otherwise be served until its freshness ran out. Returns how
   * many ids are written again.
   */
  republishRecent(): number {
    const since = this.#now() - this.#recentMs;
    const change: Record<Kind, string[]> = { tenants: [], hosts: [], keys: [], sessions: [] };
    let n = 0;
    for (const [entry, at] of this.#recent) {
      if (at < since) continue;
      const cut = entry.indexOf("\n");
      change[entry.slice(0, cut) as Kind].push(entry.slice(cut + 1));
      n++;
    }
    if (n > 0) void this.#publish(change);
    return n;
  }

  #remember(change: Change): void {
    const now = this.#now();
    for (const kind of KINDS) {
      for (const id of change[kind] ?? []) {
        const entry = `${kind}\n${id}`;
        this.#recent.delete(entry);
        this.#recent.set(entry, now);
      }
    }
    // Oldest first (Map order): drop what is past the window, and beyond the bound.
    const since = now - this.#recentMs;
    for (const [entry, at] of this.#recent) {
      if (at >= since && this.#recent.size <= RECENT_MAX) break;
      this.#recent.delete(entry);
    }
  }

  #publish(change: Change): Promise<void> {
    for (const listener of this.#listeners) listener(change);
    const waiting = this.#waiting ?? emptyBatch();
    this.#waiting = waiting;
    for (const kind of KINDS) for (const id of change[kind] ?? []) waiting[kind].add(id);
    if (!this.#warnedLarge && this.pending > LARGE_UNION) {
      // The invalidation event has no "drop everything" form, so the union is kept whole.
      this.#warnedLarge = true;
      this.#log.warn({ pending: this.pending }, "more than 10,000 changed ids wait to be published");
    }
    if (this.#closed) return Promise.resolve();
    const landed = this.#failures > 0 ? Promise.resolve() : new Promise<void>((resolve) => this.#waiters.push(resolve));
    this.#running ??= this.#run();
    return landed;
  }

  /** Try a pending retry now instead of after its backoff (the store is back). */
  retryNow(): void {
    this.#wake?.();
  }

  async #run(): Promise<void> {
    while (this.#waiting !== null && !this.#closed) {
      const batch = this.#waiting;
      const waiters = this.#waiters;
      this.#waiting = null;
      this.#waiters = [];
      this.#writing = batch;
      let failed = false;
      try {
        await this.#write(batch);
      } catch (error) {
        failed = true;
        this.#failed(error);
      }
      this.#writing = null;
      if (failed) {
        // Back into the union; the later changes that joined meanwhile are re-read too.
        const waiting = this.#waiting ?? emptyBatch();
        for (const kind of KINDS) for (const id of batch[kind]) waiting[kind].add(id);
        this.#waiting = waiting;
      } else if (this.#failures > 0) {
        this.#log.info({ failures: this.#failures }, "publishing to the store resumed");
        this.#failures = 0;
      }
      for (const resolve of waiters) resolve();
      if (failed && !this.#closed) await this.#sleep(Math.min(this.#retryMs * 2 ** (this.#failures - 1), this.#maxRetryMs));
    }
    this.#running = null;
    if (this.pending < LARGE_UNION) this.#warnedLarge = false;
    if (this.#waiting === null || this.#closed) for (const resolve of this.#idle.splice(0)) resolve(this.#waiting === null);
  }

  #failed(error: unknown): void {
    this.#failures++;
    // The store is down for as long as it is down: say so at the start and then twice a minute.
    if (this.#failures === 1 || Date.now() - this.#lastWarning > 30_000) {
      this.#lastWarning = Date.now();
      this.#log.warn(
        { err: error, failures: this.#failures, pending: this.pending },
        "publishing changes to the store failed; retrying until it lands",
      );
    }
  }

  #sleep(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(done, ms);
      const wake = () => done();
      this.#wake = wake;
      function done() {
        clearTimeout(timer);
        resolve();
      }
    }).finally(() => {
      this.#wake = null;
    });
  }

  async #write(batch: Batch): Promise<void> {
    // Read everything first, then write: a store call that fails must never wait,
    // unobserved, behind a database read (an unhandled rejection ends the process).
    const tombstone = await nextVersion(this.#db);
    const writes: { key: string; value: string; v: number; ttl: number }[] = [];
    const write = (key: string, entry: { v: number }, positive: boolean, ns: CacheNamespace) => {
      const stored = storeRecord(entry, positive, ns);
      writes.push({ key, value: stored.json, v: entry.v, ttl: stored.ttlMs });
    };
    for (const id of batch.tenants) {
      const entry = await tenantEntry(this.#db, id, tombstone);
      write(CACHE.tenant.key(id), entry, Boolean(entry.tenant), CACHE.tenant);
    }
    for (const host of batch.hosts) {
      const entry = await hostEntry(this.#db, host, tombstone);
      write(CACHE.host.key(host), entry, Boolean(entry.tenantId), CACHE.host);
    }
    for (const hash of batch.keys) {
      const entry = await keyEntry(this.#db, hash, tombstone);
      write(CACHE.apiKey.key(hash), entry, Boolean(entry.key), CACHE.apiKey);
    }
    for (const id of batch.sessions) {
      const entry = await sessionEntry(this.#db, id, tombstone);
      write(CACHE.session.key(id), entry, Boolean(entry.session), CACHE.session);
    }
    for (let i = 0; i < writes.length; i += WRITE_CHUNK) {
      await Promise.all(
        writes.slice(i, i + WRITE_CHUNK).map((w) => this.#store.setIfNewer(w.key, w.value, w.v, w.ttl, "authoritative")),
      );
    }
    for (const event of this.#events(batch, tombstone)) await this.#store.publish(INVALIDATION_CHANNEL, JSON.stringify(event));
  }

  /** The union as invalidation events of at most `idsPerEvent` ids each (one event for an ordinary change). */
  *#events(batch: Batch, v: number): Generator<Invalidation> {
    let event: Invalidation = { v, hosts: [], tenants: [], keys: [], sessions: [] };
    let n = 0;
    for (const kind of KINDS) {
      for (const id of batch[kind]) {
        if (n === this.#idsPerEvent) {
          yield event;
          event = { v, hosts: [], tenants: [], keys: [], sessions: [] };
          n = 0;
        }
        event[kind].push(id);
        n++;
      }
    }
    yield event;
  }

  /**
   * Wait until every change published so far is in the store (tests, shutdown).
   * Resolves true when it is, false when `timeoutMs` passed first.
   */
  flush(timeoutMs?: number): Promise<boolean> {
    if (this.#waiting === null && this.#writing === null) return Promise.resolve(true);
    // Closed: nothing retries any more, so what is pending stays pending.
    if (this.#closed && this.#running === null) return Promise.resolve(false);
    return new Promise<boolean>((resolve) => {
      const timer = timeoutMs === undefined ? null : setTimeout(() => resolve(false), timeoutMs);
      this.#idle.push((landed) => {
        if (timer) clearTimeout(timer);
        resolve(landed);
      });
    });
  }

  /**
   * Shutdown: give pending changes `closeTimeoutMs` to land, then stop retrying and
   * name what was not published. Their Redis entries expire by TTL, and a router
   * that reconnects to the store drops its in-process copies.
   */
  async close(timeoutMs = this.#closeTimeoutMs): Promise<void> {
    const landed = await this.flush(timeoutMs);
    this.#closed = true;
    this.#wake?.();
    if (landed) return;
    const left = { ...(this.#waiting ?? emptyBatch()) };
    const sample = (kind: Kind) => [...(this.#writing?.[kind] ?? []), ...left[kind]].slice(0, 20);
    this.#log.error(
      {
        pending: this.pending,
        tenants: sample("tenants"),
        hosts: sample("hosts"),
        keys: sample("keys").map((k) => `${k.slice(0, 12)}…`),
        sessions: sample("sessions"),
      },
      "changes not published to the store at shutdown; their entries expire by TTL",
    );
  }
}
