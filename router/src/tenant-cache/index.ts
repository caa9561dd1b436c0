/**
 * The router's view of the control plane: host → tenant, tenant records, API keys
 * (by hash) and session states, each a TieredCache, kept coherent by the control
 * plane's invalidation events. Declared TTLs live in shared/src/cache/keys.ts.
 */
import {
  CACHE,
  HostEntry,
  INVALIDATION_CHANNEL,
  Invalidation,
  KeyEntry,
  L1_MAX_ENTRIES,
  SessionEntry,
  type Store,
  TenantEntry,
  type TenantRecord,
} from "@portcullis/shared";
import type { z } from "zod";
import { type KeyServiceClient, KeyServiceError } from "./key-service-client.ts";
import { ReadBatcher } from "./read-batch.ts";
import { type Lookup, type OriginGate, TieredCache } from "./tiered.ts";

export { createKeyServiceClient, type KeyServiceClient } from "./key-service-client.ts";
export type { Lookup } from "./tiered.ts";

type HostE = z.infer<typeof HostEntry>;
type TenantE = z.infer<typeof TenantEntry>;
type KeyE = z.infer<typeof KeyEntry>;
type SessionE = z.infer<typeof SessionEntry>;

function parser<S extends z.ZodType>(schema: S) {
  return (json: string): z.infer<S> | null => {
    try {
      const parsed = schema.safeParse(JSON.parse(json));
      return parsed.success ? parsed.data : null;
    } catch {
      return null;
    }
  };
}

/**
 * A key-service answer names a tenant twice (the key's or host's tenant id, and the
 * tenant record sent along). If they differ the answer is not trusted at all: it
 * would otherwise cache one tenant's record under another's id, and that tenant's
 * hostname would route to the wrong upstream. Throwing makes the lookup
 * "unavailable" (503), never an allow.
 */
function consistent(tenantId: string, answer: TenantE): void {
  if (answer.tenant !== null && answer.tenant.id !== tenantId) {
    throw new KeyServiceError("key service answer names two different tenants");
  }
}

/**
 * Each kind of lookup has its own bound on key-service calls in flight, so a flood of
 * one kind (invented keys or hostnames: every one well-formed, every one a real miss)
 * sheds only its own kind and never turns another kind's real miss into a 503.
 * Together they never exceed `total` (KEY_SERVICE_MAX_PENDING, the router's whole
 * allowance at the key service): hosts and keys, the lookups of nearly every cold
 * request, get 3/8 each; sessions and tenants 1/8 each (a tenant is mostly learned
 * with its host or key). Every share is at least 1 (a kind with no share could never
 * be resolved), so a total under 4 is rounded up to one call per kind.
 */
export function originGates(total: number): Record<"hosts" | "keys" | "sessions" | "tenants", OriginGate> {
  const share = (eighths: number) => ({ inFlight: 0, max: Math.max(1, Math.floor((total * eighths) / 8)) });
  return { hosts: share(3), keys: share(3), sessions: share(1), tenants: share(1) };
}

export type TenantLookup = { ok: true; tenant: TenantRecord | null } | { ok: false; code: "unavailable" };

export interface ResolverOptions {
  store: Store;
  keyService: KeyServiceClient;
  now?: () => number;
  maxEntries?: number;
  /**
   * Most key-service calls in flight from this router, all caches together
   * (KEY_SERVICE_MAX_PENDING); each kind gets its own share (see `originGates`).
   */
  maxOriginInFlight?: number;
  onLookup?: (cache: string, tier: string) => void;
}

export class Resolver {
  readonly hosts: TieredCache<HostE>;
  readonly tenants: TieredCache<TenantE>;
  readonly keys: TieredCache<KeyE>;
  readonly sessions: TieredCache<SessionE>;
  readonly #store: Store;
  #unsubscribe: (() => Promise<void>) | null = null;
  #invalidations = 0;

  constructor(options: ResolverOptions) {
    const now = options.now ?? Date.now;
    const max = options.maxEntries ?? L1_MAX_ENTRIES;
    const ks = options.keyService;
    this.#store = options.store;
    const gates = originGates(options.maxOriginInFlight ?? 256);
    // Every cache's store reads of one turn go out together.
    const reads = new ReadBatcher(options.store);
    const common = { store: options.store, read: (key: string) => reads.get(key), now, maxEntries: max };
    this.tenants = new TieredCache<TenantE>({
      ...common,
      gate: gates.tenants,
      name: "tenant",
      ttl: CACHE.tenant,
      // Routing records: revocations and deletions arrive as invalidation events,
      // which drop the entry outright; refresh-ahead only hides the periodic re-read.
      refreshAhead: true,
      storeKey: CACHE.tenant.key,
      parse: parser(TenantEntry),
      load: async (id) => {
        const answer = await ks.tenant(id);
        consistent(id, answer);
        return answer;
      },
      isNegative: (e) => e.tenant === null,
      onLookup: (tier) => options.onLookup?.("tenant", tier),
    });
    this.hosts = new TieredCache<HostE>({
      ...common,
      gate: gates.hosts,
      name: "host",
      ttl: CACHE.host,
      refreshAhead: true,
      storeKey: CACHE.host.key,
      parse: parser(HostEntry),
      load: async (hostname) => {
        const epoch = this.tenants.epoch;
        const answer = await ks.resolveHost(hostname);
        const id = answer.host.tenantId;
        if (id !== null && answer.tenant) {
          consistent(id, answer.tenant);
          this.tenants.prime(id, answer.tenant, epoch);
        }
        return answer.host;
      },
      isNegative: (e) => e.tenantId === null,
      onLookup: (tier) => options.onLookup?.("host", tier),
    });
    this.keys = new TieredCache<KeyE>({
      ...common,
      gate: gates.keys,
      name: "key",
      ttl: CACHE.apiKey,
      storeKey: CACHE.apiKey.key,
      parse: parser(KeyEntry),
      load: async (hash) => {
        const epoch = this.tenants.epoch;
        const answer = await ks.verifyKey(hash);
        const id = answer.entry.key?.tenantId;
        if (id !== undefined && answer.tenant) {
          consistent(id, answer.tenant);
          this.tenants.prime(id, answer.tenant, epoch);
        }
        return answer.entry;
      },
      isNegative: (e) => e.key === null,
      onLookup: (tier) => options.onLookup?.("key", tier),
    });
    this.sessions = new TieredCache<SessionE>({
      ...common,
      gate: gates.sessions,
      name: "session",
      ttl: CACHE.session,
      storeKey: CACHE.session.key,
      parse: parser(SessionEntry),
      load: (id) => ks.session(id),
      isNegative: (e) => e.session === null,
      onLookup: (tier) => options.onLookup?.("session", tier),
    });
  }

  /** Invalidation events applied so far (for tests and metrics). */
  get invalidations(): number {
    return this.#invalidations;
  }

  async start(): Promise<void> {
    this.#unsubscribe = await this.#store.subscribe(
      INVALIDATION_CHANNEL,
      (message) => this.apply(message),
      () => this.clear(),
    );
  }

  apply(message: string): void {
    let event: Invalidation;
    try {
      event = Invalidation.parse(JSON.parse(message));
    } catch {
      // An event we cannot read may have been about anything: drop everything.
      this.clear();
      return;
    }
    for (const h of event.hosts) this.hosts.invalidate(h);
    for (const t of event.tenants) this.tenants.invalidate(t);
    for (const k of event.keys) this.keys.invalidate(k);
    for (const s of event.sessions) this.sessions.invalidate(s);
    this.#invalidations++;
  }

  clear(): void {
    this.hosts.clear();
    this.tenants.clear();
    this.keys.clear();
    this.sessions.clear();
  }

  /** Synchronous hot path: host → tenant from memory only; undefined when not fresh. */
  peekHost(hostname: string): TenantRecord | null | undefined {
    const host = this.hosts.peek(hostname);
    if (host === undefined) return undefined;
    if (host.tenantId === null) return null;
    const tenant = this.tenants.peek(host.tenantId);
    return tenant === undefined ? undefined : tenant.tenant;
  }

  async resolveHost(hostname: string): Promise<TenantLookup> {
    const host = await this.hosts.get(hostname);
    if (!host.ok) return host;
    if (host.value.tenantId === null) return { ok: true, tenant: null };
    return this.tenant(host.value.tenantId);
  }

  async tenant(id: string): Promise<TenantLookup> {
    const tenant = await this.tenants.get(id);
    if (!tenant.ok) return tenant;
    return { ok: true, tenant: tenant.value.tenant };
  }

  key(hash: string): Promise<Lookup<KeyE>> {
    return this.keys.get(hash);
  }

  session(id: string): Promise<Lookup<SessionE>> {
    return this.sessions.get(id);
  }

  async close(): Promise<void> {
    await this.#unsubscribe?.();
  }
}
