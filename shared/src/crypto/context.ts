/**
 * The platform's side of the signed tenant context: the per-tenant context keys and
 * the router's signer. What is signed and how it is verified (canonical text, header
 * format, key format, `verifyTenantContext`) live once, in @portcullis/sdk/context,
 * the package tenant apps verify with; they are re-exported here for the services.
 *
 * Each tenant has its own context key, derived from the platform's master secret
 * (CONTEXT_SIGNING_SECRET) by HKDF-SHA256 (RFC 5869) over the tenant id and a key
 * version: an app is handed its own tenant's key only (admin API
 * `GET /v1/tenants/:tenant/context-key`), so a compromised app of one tenant can
 * verify its own context but cannot sign another tenant's. Keys rotate by version;
 * during a rotation's overlap the router signs with both the new and the previous
 * key, so an app still holding the previous one keeps verifying.
 */
import { createSecretKey, hash, hkdfSync, type KeyObject } from "node:crypto";
import { L1_MAX_ENTRIES } from "../cache/keys.ts";
import { canonicalContext, contextMac, formatContextKey, type SignedRequest, type TenantContext } from "@portcullis/sdk/context";

export {
  CONTEXT_FIELDS,
  type ContextField,
  type ContextKeys,
  type ContextVerification,
  type ReceivedRequest,
  SIGNATURE_HEADER,
  type SignedRequest,
  signContext,
  type TenantContext,
  verifyTenantContext,
} from "@portcullis/sdk/context";

/** Which context keys of a tenant sign: the current version and, during a rotation, the previous one until `until` (ms). */
export interface ContextKeyState {
  version: number;
  previous: { version: number; until: number } | null;
}

const KEY_BYTES = 32;
const HKDF_SALT = "portcullis/context-key";

/** The raw key of one tenant and version (HKDF-SHA256 over the master secret). */
export function deriveContextKey(master: string, tenantId: string, version: number): Buffer {
  return Buffer.from(hkdfSync("sha256", master, HKDF_SALT, `${tenantId}\n${version}`, KEY_BYTES));
}

/** The key as handed to the tenant's app: `pctx_<version>_<base64url>`. */
export function contextKeyToken(master: string, tenantId: string, version: number): string {
  return formatContextKey(version, deriveContextKey(master, tenantId, version));
}

/**
 * A key prepared for HMAC-SHA256 by two one-shot hashes (RFC 2104: H(K⊕opad ‖ H(K⊕ipad ‖
 * m))): the padded blocks are computed once per key, and a signature costs two
 * `crypto.hash` calls instead of an Hmac object (≈ 2.2 against 3.1 µs per signature
 * measured here). Equal to `createHmac` for every key of up to 64 bytes (the context
 * keys are 32) and every text; a property test holds them equal.
 *
 * A router holds one per cached tenant, so it is small: the two padded blocks and room
 * for the inner digest in one buffer of its own (never a slice of Node's shared pool,
 * whose other slices any code could reach through `.buffer`), and no key object unless a text too long
 * for the scratch block needs one (a key shorter than a block is zero-padded by HMAC
 * itself, so the padded key recovered from the inner block signs the same).
 */
export class PreparedHmacKey {
  /** Inner block [0, 64), outer block [64, 128), inner digest [128, 160). */
  readonly #pads = Buffer.alloc(64 + 64 + 32);
  #key: KeyObject | undefined;

  constructor(key: Buffer) {
    if (key.length > 64) throw new Error("a prepared HMAC key is at most one block");
    const pads = this.#pads;
    pads.fill(0x36, 0, 64);
    pads.fill(0x5c, 64, 128);
    for (let i = 0; i < key.length; i++) {
      pads[i] = 0x36 ^ (key[i] as number);
      pads[64 + i] = 0x5c ^ (key[i] as number);
    }
  }

  /** HMAC-SHA256 of `text` (UTF-8), hex. */
  mac(text: string): string {
    // UTF-8 takes at most 3 bytes per UTF-16 unit: a text that might not fit the
    // scratch block goes the general way.
    if (text.length * 3 > SCRATCH.length - 64) return contextMac(this.#keyObject(), text);
    const pads = this.#pads;
    pads.copy(SCRATCH, 0, 0, 64);
    const n = SCRATCH.write(text, 64, "utf8");
    hash("sha256", SCRATCH.subarray(0, 64 + n), "buffer").copy(pads, 128);
    pads.copy(OUTER, 0, 64, 160);
    return hash("sha256", OUTER, "hex");
  }

  #keyObject(): KeyObject {
    if (this.#key === undefined) {
      const padded = Buffer.alloc(64);
      for (let i = 0; i < 64; i++) padded[i] = (this.#pads[i] as number) ^ 0x36;
      this.#key = createSecretKey(padded);
    }
    return this.#key;
  }
}

/** Scratch blocks for the inner and the outer hash's input (signing is synchronous). */
const SCRATCH = Buffer.alloc(64 + 16 * 1024);
const OUTER = Buffer.alloc(64 + 32);

interface TenantKeys {
  version: number;
  current: PreparedHmacKey;
  previous: { version: number; key: PreparedHmacKey; until: number } | null;
}

/**
 * Bound of the signer's key table: as many tenants as the router's tenant cache holds,
 * so every tenant it routes keeps its keys. Past it, the longest-held tenant is let go
 * (one derivation when it comes back), never the whole table: a table emptied at once
 * would make every tenant pay a derivation again (≈ 7 µs each), which with more
 * tenants than the bound in rotation is every request.
 */
export const MAX_SIGNER_KEYS = L1_MAX_ENTRIES;

/**
 * The router's signer: derives each tenant's keys once (an HKDF and the padded blocks,
 * ≈ 7 µs; the HMAC per request ≈ 2) and keeps them in a bounded table, so a request
 * pays one HMAC, or two during a rotation's overlap. `held` is the table's size.
 */
export function contextSigner(master: string, maxKeys = MAX_SIGNER_KEYS) {
  const table = new Map<string, TenantKeys>();
  const keyOf = (tenantId: string, version: number) => new PreparedHmacKey(deriveContextKey(master, tenantId, version));
  function keysOf(tenantId: string, state: ContextKeyState): TenantKeys {
    let keys = table.get(tenantId);
    const prev = state.previous;
    if (
      keys === undefined ||
      keys.version !== state.version ||
      (prev === null ? keys.previous !== null : keys.previous?.version !== prev.version || keys.previous.until !== prev.until)
    ) {
      if (keys === undefined && table.size >= maxKeys) table.delete(table.keys().next().value as string);
      keys = {
        version: state.version,
        current: keyOf(tenantId, state.version),
        previous: prev === null ? null : { version: prev.version, key: keyOf(tenantId, prev.version), until: prev.until },
      };
      table.set(tenantId, keys);
    }
    return keys;
  }
  const sign = (tenantId: string, state: ContextKeyState, values: TenantContext, request: SignedRequest, timestamp: number) => {
    const keys = keysOf(tenantId, state);
    const text = canonicalContext(values, request, timestamp);
    let header = `t=${timestamp},k=${keys.version},s=${keys.current.mac(text)}`;
    if (keys.previous !== null && timestamp < keys.previous.until)
      header += `,k=${keys.previous.version},s=${keys.previous.key.mac(text)}`;
    return header;
  };
  return Object.defineProperty(sign, "held", { get: () => table.size }) as typeof sign & { readonly held: number };
}

/** Every tenant's keys, from the master secret: for tools of the platform itself, never for a tenant's app. */
export function contextKeysFrom(master: string): (tenantId: string, version: number) => string {
  return (tenantId, version) => contextKeyToken(master, tenantId, version);
}
