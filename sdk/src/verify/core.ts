/**
 * The verifier every adapter (Hono, Node http, Express) shares: options parsed once,
 * then one function from a received request to a verified tenant or a refusal code.
 */
import { type ContextKeys, DEFAULT_MAX_AGE_MS, type ReceivedRequest, verifyTenantContext } from "../context/index.ts";
import type { ContextRefusal } from "../errors.ts";
import { fieldsOfContext, mintTenant, type Tenant } from "../tenant.ts";

export interface VerifyOptions {
  /** This app's context key (`pctx_…`), several during a rotation, or a key function. */
  keys: ContextKeys;
  /** Replay window either side of this app's clock (default 5 minutes). */
  maxAgeMs?: number;
  /** The clock (default `Date.now`), for tests. */
  now?: () => number;
  /** Called once per refusal, for the app's logs and metrics; the client sees only the code. */
  onRefuse?: (code: ContextRefusal, request: ReceivedRequest) => void;
}

export type Verification = { ok: true; tenant: Tenant } | { ok: false; code: ContextRefusal };

export type Verifier = (request: ReceivedRequest) => Verification;

export function createVerifier(options: VerifyOptions): Verifier {
  if (options.keys === undefined || (Array.isArray(options.keys) && options.keys.length === 0))
    throw new TypeError("verify: `keys` is required (this app's pctx_ context key)");
  const maxAgeMs = options.maxAgeMs ?? DEFAULT_MAX_AGE_MS;
  const now = options.now ?? Date.now;
  const { keys, onRefuse } = options;
  return function verifyRequest(request) {
    const checked = verifyTenantContext(request, keys, { maxAgeMs, now: now() });
    let outcome: Verification;
    if (!checked.ok) outcome = checked;
    else {
      const tenant = mintTenant(fieldsOfContext(checked.context), "request");
      outcome = tenant === null ? { ok: false, code: "malformed_context" } : { ok: true, tenant };
    }
    if (!outcome.ok) onRefuse?.(outcome.code, request);
    return outcome;
  };
}
