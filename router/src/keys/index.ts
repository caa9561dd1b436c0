/**
 * API key extraction and verification. A key comes from `Authorization: Bearer pck_…`
 * or `X-API-Key`; two different keys, a repeated header, or a key in the query
 * string make the request ambiguous. Verification goes through the same path for
 * every well-formed key (hash → cache → key service), and every failure maps to
 * one public 401 (see shared/errors).
 */
import { API_KEY_PREFIX, hashApiKey, isWellFormedApiKey, type KeyEntry as KeyE, type TenantRecord } from "@portcullis/shared";
import type { KeyOutcome } from "../policy/index.ts";
import type { Resolver } from "../tenant-cache/index.ts";

export type Extracted =
  | { kind: "none" }
  | { kind: "key"; key: string; fromAuthorization: boolean }
  | { kind: "error"; code: "ambiguous_credentials" | "key_in_query" };

const NONE: Extracted = { kind: "none" };
// Expected outcomes, built once (the hot path allocates nothing to refuse).
const MALFORMED: KeyOutcome = { presented: true, ok: false, code: "key_malformed" };
const UNKNOWN: KeyOutcome = { presented: true, ok: false, code: "key_unknown" };
const REVOKED: KeyOutcome = { presented: true, ok: false, code: "key_revoked" };
const EXPIRED: KeyOutcome = { presented: true, ok: false, code: "key_expired" };
const UNAVAILABLE: KeyOutcome = { presented: true, ok: false, code: "unavailable" };

/**
 * Reads credentials from the raw header list (duplicates are visible there; Node's
 * `headers` object silently keeps the first `authorization`).
 */
export function extractKey(rawHeaders: string[], url: string, requireKey: boolean): Extracted {
  let authorization: string | undefined;
  let apiKey: string | undefined;
  let authCount = 0;
  let apiKeyCount = 0;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i] as string;
    if (name.length === 13 && name.toLowerCase() === "authorization") {
      authCount++;
      authorization = rawHeaders[i + 1];
    } else if (name.length === 9 && name.toLowerCase() === "x-api-key") {
      apiKeyCount++;
      apiKey = rawHeaders[i + 1];
    }
  }
  if (keyInQuery(url)) return { kind: "error", code: "key_in_query" };
  if (authCount > 1 || apiKeyCount > 1) return { kind: "error", code: "ambiguous_credentials" };

  let fromAuth: string | undefined;
  if (authorization !== undefined) {
    // Any whitespace after the scheme, and a bare token: app servers split on any
    // whitespace (RFC 9110 §11.6.2 allows only SP), so to them each spelling is a key.
    const bearer = /^Bearer\s+(\S+)\s*$/i.exec(authorization);
    const token = bearer?.[1] ?? (authorization.startsWith(API_KEY_PREFIX) ? authorization.trim() : undefined);
    // A bearer token that is not a Portcullis key belongs to the tenant's app
    // (its own JWT, say) and passes through on tenant hostnames.
    if (token?.startsWith(API_KEY_PREFIX)) fromAuth = token;
    else if (requireKey && apiKey === undefined) fromAuth = token ?? authorization;
  }
  if (fromAuth !== undefined && apiKey !== undefined) {
    if (fromAuth !== apiKey.trim()) return { kind: "error", code: "ambiguous_credentials" };
  }
  if (fromAuth !== undefined) return { kind: "key", key: fromAuth, fromAuthorization: true };
  if (apiKey !== undefined) return { kind: "key", key: apiKey.trim(), fromAuthorization: false };
  return NONE;
}

/**
 * A key in the URL ends up in access logs, browser history and Referer headers
 * (RFC 6750 §5.3 advises against bearer tokens in page URLs): refuse it, also
 * percent-encoded (`pck%5F…`), which the app would decode into a key.
 */
export function keyInQuery(url: string): boolean {
  const q = url.indexOf("?");
  if (q === -1) return false;
  if (url.includes(API_KEY_PREFIX, q)) return true;
  return url.indexOf("%", q) !== -1 && /pck%5f/i.test(url.slice(q));
}

/**
 * `hostTenantId` is the tenant the hostname names (null on API_HOSTNAME). Another
 * tenant's key is answered after the same one lookup as an unknown, expired or revoked
 * key (its tenant is not loaded), so the refusals cost the same.
 */
export function verifyKey(
  resolver: Resolver,
  key: string,
  now: number,
  hostTenantId: string | null = null,
): KeyOutcome | Promise<KeyOutcome> {
  if (!isWellFormedApiKey(key)) return MALFORMED;
  const hash = hashApiKey(key);
  // Synchronous when the key and its tenant are fresh in memory (the hot path).
  const cached = resolver.keys.peek(hash);
  if (cached !== undefined) {
    const early = screen(cached, now, hostTenantId);
    if (early !== null) return early;
    const tenant = resolver.tenants.peek((cached.key as NonNullable<KeyE["key"]>).tenantId);
    if (tenant !== undefined) return accepted(cached.key as NonNullable<KeyE["key"]>, tenant.tenant);
  }
  return verifyLoaded(resolver, hash, now, hostTenantId);
}

async function verifyLoaded(resolver: Resolver, hash: string, now: number, hostTenantId: string | null): Promise<KeyOutcome> {
  const lookup = await resolver.key(hash);
  if (!lookup.ok) return UNAVAILABLE;
  const early = screen(lookup.value, now, hostTenantId);
  if (early !== null) return early;
  const entry = lookup.value.key as NonNullable<KeyE["key"]>;
  const tenant = await resolver.tenant(entry.tenantId);
  if (!tenant.ok) return UNAVAILABLE;
  return accepted(entry, tenant.tenant);
}

/** The outcome decided by the key's own entry, or null when its tenant is needed. */
function screen(value: KeyE, now: number, hostTenantId: string | null): KeyOutcome | null {
  const entry = value.key;
  if (entry === null) return value.revoked ? REVOKED : UNKNOWN;
  if (entry.expiresAt !== null && entry.expiresAt <= now) return EXPIRED;
  if (hostTenantId !== null && entry.tenantId !== hostTenantId) {
    // decide() refuses it as key_other_tenant (the tenant ids differ).
    return { presented: true, ok: true, keyId: entry.keyId, tenantId: entry.tenantId, tenant: null, binding: entry.binding };
  }
  return null;
}

function accepted(entry: NonNullable<KeyE["key"]>, tenant: TenantRecord | null): KeyOutcome {
  return {
    presented: true,
    ok: true,
    keyId: entry.keyId,
    tenantId: entry.tenantId,
    tenant,
    binding: entry.binding,
    limits: entry.limits ?? null,
  };
}

export interface KeyUsageOptions {
  /** Sends one batch of key ids (the key service's `POST /v1/keys/used`). */
  report: (ids: string[]) => Promise<void>;
  intervalMs: number;
  /** Most distinct ids held between reports; more are dropped until the next one. */
  maxPending?: number;
  /** Most ids in one call (the key service reads at most 10,000 per call). */
  batchSize?: number;
}

/**
 * Last use of API keys without a write per request: the request path adds the id of
 * an accepted key to a set (no I/O), and a timer sends the set to the key service in
 * one call, which in turn writes its own batch to the database. A failed report is
 * kept for the next one; `close` sends what is left.
 */
export class KeyUsageReporter {
  readonly #o: Required<KeyUsageOptions>;
  #pending = new Set<string>();
  #sending: Promise<void> | null = null;
  readonly #timer: NodeJS.Timeout;

  constructor(options: KeyUsageOptions) {
    this.#o = { maxPending: 100_000, batchSize: 5_000, ...options };
    this.#timer = setInterval(() => void this.flush(), this.#o.intervalMs);
    this.#timer.unref();
  }

  get pending(): number {
    return this.#pending.size;
  }

  record(keyId: string): void {
    if (this.#pending.size < this.#o.maxPending) this.#pending.add(keyId);
  }

  flush(): Promise<void> {
    if (this.#sending) return this.#sending;
    if (this.#pending.size === 0) return Promise.resolve();
    const ids = [...this.#pending];
    this.#pending = new Set();
    this.#sending = (async () => {
      try {
        for (let i = 0; i < ids.length; i += this.#o.batchSize) {
          const batch = ids.slice(i, i + this.#o.batchSize);
          try {
            await this.#o.report(batch);
          } catch {
            // Keep them for the next report (still bounded).
            for (const id of batch) this.record(id);
          }
        }
      } finally {
        this.#sending = null;
      }
    })();
    return this.#sending;
  }

  async close(): Promise<void> {
    clearInterval(this.#timer);
    await this.#sending;
    await this.flush();
  }
}
