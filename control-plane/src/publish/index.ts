/**
 * After every committed write that changes routing, the publisher writes the new
 * records into the shared store (authoritatively: a newer version always wins) and
 * publishes one invalidation event, so every router drops its in-process copies at
 * once. If the store is unreachable the change is retried in the background; the
 * Redis TTLs bound how long a stale entry can live meanwhile.
 */
import { CACHE, INVALIDATION_CHANNEL, type Invalidation, type Store } from "@portcullis/shared";
import type { Logger } from "pino";
import { nextVersion, type Db } from "../db/client.ts";
import { hostEntry, keyEntry, sessionEntry, tenantEntry } from "../records/index.ts";

export interface Change {
  tenants?: string[];
  hosts?: string[];
  keys?: string[];
  sessions?: string[];
}

export class Publisher {
  readonly #db: Db;
  readonly #store: Store;
  readonly #log: Logger;
  #pending: Promise<void> = Promise.resolve();
  #retrying = new Set<Change>();
  #listeners: ((change: Change) => void)[] = [];

  constructor(db: Db, store: Store, log: Logger) {
    this.#db = db;
    this.#store = store;
    this.#log = log;
  }

  /**
   * Run `listener` synchronously on every change as it is published, before the
   * store is written: in-process caches of the control plane (the TLS ask answers)
   * are coherent with its own writes by the time the admin call returns.
   */
  onPublish(listener: (change: Change) => void): void {
    this.#listeners.push(listener);
  }

  /** Publish a change; resolves when the store has it (or the retry is scheduled). */
  publish(change: Change): Promise<void> {
    for (const listener of this.#listeners) listener(change);
    // Serialized so events leave in commit order.
    this.#pending = this.#pending.then(() => this.#attempt(change, 0));
    return this.#pending;
  }

  async #attempt(change: Change, attempt: number): Promise<void> {
    try {
      await this.#write(change);
      this.#retrying.delete(change);
    } catch (error) {
      if (attempt >= 20) {
        this.#log.error({ err: error, change }, "giving up publishing a change; Redis TTLs bound its staleness");
        this.#retrying.delete(change);
        return;
      }
      this.#log.warn({ err: error, attempt }, "publishing a change failed; retrying");
      this.#retrying.add(change);
      const delay = Math.min(100 * 2 ** attempt, 3_000);
      setTimeout(() => {
        this.#pending = this.#pending.then(() => this.#attempt(change, attempt + 1));
      }, delay).unref();
    }
  }

  async #write(change: Change): Promise<void> {
    const tombstone = await nextVersion(this.#db);
    const writes: Promise<boolean>[] = [];
    for (const id of change.tenants ?? []) {
      const entry = await tenantEntry(this.#db, id, tombstone);
      const ttl = entry.tenant ? CACHE.tenant.redisTtlMs : CACHE.tenant.redisNegativeTtlMs;
      writes.push(this.#store.setIfNewer(CACHE.tenant.key(id), JSON.stringify(entry), entry.v, ttl, "authoritative"));
    }
    for (const host of change.hosts ?? []) {
      const entry = await hostEntry(this.#db, host, tombstone);
      const ttl = entry.tenantId ? CACHE.host.redisTtlMs : CACHE.host.redisNegativeTtlMs;
      writes.push(this.#store.setIfNewer(CACHE.host.key(host), JSON.stringify(entry), entry.v, ttl, "authoritative"));
    }
    for (const hash of change.keys ?? []) {
      const entry = await keyEntry(this.#db, hash, tombstone);
      const ttl = entry.key ? CACHE.apiKey.redisTtlMs : CACHE.apiKey.redisNegativeTtlMs;
      writes.push(this.#store.setIfNewer(CACHE.apiKey.key(hash), JSON.stringify(entry), entry.v, ttl, "authoritative"));
    }
    for (const id of change.sessions ?? []) {
      const entry = await sessionEntry(this.#db, id, tombstone);
      writes.push(
        this.#store.setIfNewer(CACHE.session.key(id), JSON.stringify(entry), entry.v, CACHE.session.redisTtlMs, "authoritative"),
      );
    }
    await Promise.all(writes);
    const event: Invalidation = {
      v: tombstone,
      hosts: change.hosts ?? [],
      tenants: change.tenants ?? [],
      keys: change.keys ?? [],
      sessions: change.sessions ?? [],
    };
    await this.#store.publish(INVALIDATION_CHANNEL, JSON.stringify(event));
  }

  /** Wait for queued publications (tests, shutdown). */
  async flush(): Promise<void> {
    await this.#pending;
  }
}
