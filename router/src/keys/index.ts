/**
 * API key extraction and verification. A key comes from `Authorization: Bearer pck_…`
 * or `X-API-Key`; two different keys, a repeated header, or a key in the query
 * string make the request ambiguous. A well-formed key anywhere else in the headers
 * (another scheme, junk after it, Basic credentials, another header, a cookie) is
 * "misplaced": an app may read it there, so it is verified like any key and the
 * request refused, never forwarded. Verification goes through the same path for
 * every well-formed key (hash → cache → key service), and every failure maps to
 * one public 401 (see shared/errors).
 */
import {
  API_KEY_LENGTH,
  API_KEY_PREFIX,
  acceptKey,
  hashApiKey,
  isWellFormedApiKey,
  KEY_MALFORMED,
  KEY_UNAVAILABLE,
  type KnownKey,
  screenKey,
} from "@portcullis/shared";
import type { KeyOutcome } from "@portcullis/shared";
import type { Resolver } from "../tenant-cache/index.ts";

export type Extracted =
  | { kind: "none" }
  | { kind: "key"; key: string; fromAuthorization: boolean }
  /** A well-formed key outside the two headers that carry keys: verified, never taken. */
  | { kind: "misplaced"; key: string }
  | { kind: "error"; code: "ambiguous_credentials" | "key_in_query" };

const NONE: Extracted = { kind: "none" };
const AMBIGUOUS: Extracted = { kind: "error", code: "ambiguous_credentials" };

/** More than one distinct key was found. */
const TWO: unique symbol = Symbol("two keys");
/** Keys found outside the key headers so far: none, one, or two different ones. */
type Found = string | null | typeof TWO;

/** `pck%5F…`: an app that percent-decodes a value (cookies, say) reads a key there. */
const ENCODED_PREFIX = /pck%5f/i;
const ENCODED_PREFIXES = /pck%5f/gi;
/** `Basic <credentials>` (RFC 7617 §2), any whitespace after the scheme. */
const BASIC = /^basic\s+(\S+)/i;
/**
 * The prefix in base64, at each of the three byte alignments: only the characters
 * that its bits alone decide. Credentials that contain none of these cannot hold a
 * key, so most Basic credentials are never decoded.
 */
const BASE64_PREFIXES = [0, 1, 2].map((pad) => {
  const encoded = Buffer.concat([Buffer.alloc(pad), Buffer.from(API_KEY_PREFIX)]).toString("base64");
  return encoded.slice(Math.ceil((8 * pad) / 6), Math.floor((8 * (pad + API_KEY_PREFIX.length)) / 6));
});

/**
 * Every well-formed key (shape and checksum) starting anywhere in `text`. The checksum
 * is what tells a key from a look-alike (an app's token that happens to contain
 * `pck_`): 1 in 62⁶ look-alikes pass, so refusing what passes never costs an app its
 * own tokens. Junk glued after a key does not hide it: apps may truncate or split.
 */
function keysIn(text: string, found: Found): Found {
  for (let i = text.indexOf(API_KEY_PREFIX); i !== -1 && found !== TWO; i = text.indexOf(API_KEY_PREFIX, i + 1)) {
    if (text.length - i < API_KEY_LENGTH) break;
    const candidate = text.slice(i, i + API_KEY_LENGTH);
    if (!isWellFormedApiKey(candidate)) continue;
    if (found === null) found = candidate;
    else if (found !== candidate) found = TWO;
  }
  return found;
}

/** Keys in one header value as sent, and with `%5F` decoded. */
function keysInValue(value: string, found: Found): Found {
  if (value.indexOf(API_KEY_PREFIX) !== -1) found = keysIn(value, found);
  if (found !== TWO && value.indexOf("%5") !== -1 && ENCODED_PREFIX.test(value)) {
    found = keysIn(value.replace(ENCODED_PREFIXES, API_KEY_PREFIX), found);
  }
  return found;
}

/** Keys in an Authorization value that is not a key itself: as sent, and inside Basic credentials. */
function keysInAuthorization(value: string, found: Found): Found {
  found = keysInValue(value, found);
  const basic = found === TWO ? null : BASIC.exec(value);
  if (basic === null) return found;
  const credentials = basic[1] as string;
  for (const encoded of BASE64_PREFIXES) {
    if (credentials.indexOf(encoded) !== -1) return keysInValue(Buffer.from(credentials, "base64").toString("latin1"), found);
  }
  return found;
}

/**
 * Reads credentials from the raw header list (duplicates are visible there; Node's
 * `headers` object silently keeps the first `authorization`). Every other header is
 * searched for keys with one `indexOf` of the prefix per name and value: a request
 * without a key anywhere else allocates nothing here.
 */
export function extractKey(rawHeaders: string[], url: string, requireKey: boolean): Extracted {
  let authorization: string | undefined;
  let apiKey: string | undefined;
  let authCount = 0;
  let apiKeyCount = 0;
  let elsewhere: Found = null;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i] as string;
    const value = rawHeaders[i + 1] as string;
    if (name.length === 13 && name.toLowerCase() === "authorization") {
      authCount++;
      authorization = value;
    } else if (name.length === 9 && name.toLowerCase() === "x-api-key") {
      apiKeyCount++;
      apiKey = value;
    } else {
      elsewhere = keysInValue(value, elsewhere);
      // A key as a header name is still a key forwarded.
      if (name.length >= API_KEY_LENGTH) elsewhere = keysIn(name, elsewhere);
    }
  }
  if (keyInQuery(url)) return { kind: "error", code: "key_in_query" };
  if (authCount > 1 || apiKeyCount > 1) return AMBIGUOUS;

  let fromAuth: string | undefined;
  if (authorization !== undefined) {
    // Any whitespace after the scheme, and a bare token: app servers split on any
    // whitespace (RFC 9110 §11.6.2 allows only SP), so to them each spelling is a key.
    const bearer = /^Bearer\s+(\S+)\s*$/i.exec(authorization);
    const token = bearer?.[1] ?? (authorization.startsWith(API_KEY_PREFIX) ? authorization.trim() : undefined);
    // A bearer token that is not a Portcullis key belongs to the tenant's app
    // (its own JWT, say) and passes through on tenant hostnames — unless a key hides
    // elsewhere in the value: another scheme (`Token pck_…`), words after the token,
    // Basic credentials.
    if (token?.startsWith(API_KEY_PREFIX)) fromAuth = token;
    else {
      elsewhere = keysInAuthorization(authorization, elsewhere);
      if (requireKey && apiKey === undefined && elsewhere === null) fromAuth = token ?? authorization;
    }
  }
  if (elsewhere === TWO) return AMBIGUOUS;
  const trimmedApiKey = apiKey?.trim();
  if (fromAuth !== undefined && trimmedApiKey !== undefined && fromAuth !== trimmedApiKey) return AMBIGUOUS;
  if (elsewhere !== null) {
    // A second, different key is a second credential; the same key also in a key
    // header is still misplaced (its other copy would be forwarded).
    const placed = fromAuth ?? trimmedApiKey;
    if (placed !== undefined && placed !== elsewhere) return AMBIGUOUS;
    return { kind: "misplaced", key: elsewhere };
  }
  if (fromAuth !== undefined) return { kind: "key", key: fromAuth, fromAuthorization: true };
  if (trimmedApiKey !== undefined) return { kind: "key", key: trimmedApiKey, fromAuthorization: false };
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
 * key (its tenant is not loaded), so the refusals cost the same. The outcomes are
 * built from the key's entry by shared/src/policy/outcomes.ts.
 */
export function verifyKey(
  resolver: Resolver,
  key: string,
  now: number,
  hostTenantId: string | null = null,
): KeyOutcome | Promise<KeyOutcome> {
  if (!isWellFormedApiKey(key)) return KEY_MALFORMED;
  const hash = hashApiKey(key);
  // Synchronous when the key and its tenant are fresh in memory (the hot path).
  const cached = resolver.keys.peek(hash);
  if (cached !== undefined) {
    const early = screenKey(cached, now, hostTenantId);
    if (early !== null) return early;
    const tenant = resolver.tenants.peek((cached.key as KnownKey).tenantId);
    if (tenant !== undefined) return acceptKey(cached.key as KnownKey, tenant.tenant);
  }
  return verifyLoaded(resolver, hash, now, hostTenantId);
}

async function verifyLoaded(resolver: Resolver, hash: string, now: number, hostTenantId: string | null): Promise<KeyOutcome> {
  const lookup = await resolver.key(hash);
  if (!lookup.ok) return KEY_UNAVAILABLE;
  const early = screenKey(lookup.value, now, hostTenantId);
  if (early !== null) return early;
  const entry = lookup.value.key as KnownKey;
  const tenant = await resolver.tenant(entry.tenantId);
  if (!tenant.ok) return KEY_UNAVAILABLE;
  return acceptKey(entry, tenant.tenant);
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
