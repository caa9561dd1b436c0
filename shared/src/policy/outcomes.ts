/**
 * Outcomes from records: what a cached or freshly loaded key entry or session state
 * (shared/src/contracts/records.ts) says of the credential presented. The router's
 * resolvers (router/src/keys/, router/src/sessions/) and the control plane's explain
 * call build their outcomes here, so `decide` is fed the same values by both.
 * Expected refusals are built once: refusing allocates nothing.
 */
import type { KeyEntry, SessionEntry, TenantRecord } from "../contracts/index.ts";
import { type SessionClaims, verifySessionToken } from "../crypto/index.ts";
import type { HostOutcome, KeyOutcome, SessionOutcome } from "./decide.ts";

/** A key the key service knows and has not revoked. */
export type KnownKey = NonNullable<KeyEntry["key"]>;
/** A session's state as the control plane records it (null: no such session). */
export type SessionState = SessionEntry["session"];

export const API_HOST: HostOutcome = { kind: "api", ok: true };

export const KEY_MALFORMED: KeyOutcome = { presented: true, ok: false, code: "key_malformed" };
export const KEY_UNKNOWN: KeyOutcome = { presented: true, ok: false, code: "key_unknown" };
export const KEY_REVOKED: KeyOutcome = { presented: true, ok: false, code: "key_revoked" };
export const KEY_EXPIRED: KeyOutcome = { presented: true, ok: false, code: "key_expired" };
export const KEY_UNAVAILABLE: KeyOutcome = { presented: true, ok: false, code: "unavailable" };

export const SESSION_INVALID: SessionOutcome = { presented: true, ok: false, code: "session_invalid" };
export const SESSION_UNAVAILABLE: SessionOutcome = { presented: true, ok: false, code: "unavailable" };

/** The host outcome of a resolved hostname: its tenant, or null for a name no tenant owns. */
export function tenantHost(tenant: TenantRecord | null): HostOutcome {
  return { kind: "tenant", ok: true, tenant };
}

/**
 * The outcome decided by the key's own entry, or null when its tenant's record is
 * needed (then `acceptKey`). `hostTenantId` is the tenant the hostname names (null on
 * the API hostname): another tenant's key is answered without loading its tenant, so
 * it costs what an unknown, expired or revoked key costs; `decide` refuses it as
 * key_other_tenant (the tenant ids differ).
 */
export function screenKey(value: KeyEntry, now: number, hostTenantId: string | null): KeyOutcome | null {
  const entry = value.key;
  if (entry === null) return value.revoked ? KEY_REVOKED : KEY_UNKNOWN;
  if (entry.expiresAt !== null && entry.expiresAt <= now) return KEY_EXPIRED;
  if (hostTenantId !== null && entry.tenantId !== hostTenantId) {
    return { presented: true, ok: true, keyId: entry.keyId, tenantId: entry.tenantId, tenant: null, binding: entry.binding };
  }
  return null;
}

/** A key `screenKey` let through, with its tenant's record (null: the tenant is gone). */
export function acceptKey(entry: KnownKey, tenant: TenantRecord | null): KeyOutcome {
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

/** A session token's claims when its MAC holds and it has not expired; null otherwise. */
export function sessionClaims(token: string, secret: string, nowMs: number): SessionClaims | null {
  const verified = verifySessionToken(token, secret, Math.floor(nowMs / 1000));
  return verified.ok ? verified.claims : null;
}

/**
 * A verified token's outcome given the session's recorded state: valid only while the
 * session exists, is not revoked or expired, and is the tenant's and user's the token
 * names.
 */
export function judgeSession(
  state: SessionState,
  claims: Pick<SessionClaims, "sid" | "tid" | "uid">,
  nowMs: number,
): SessionOutcome {
  if (
    state === null ||
    state.revoked ||
    state.tenantId !== claims.tid ||
    state.userId !== claims.uid ||
    state.expiresAt <= nowMs
  ) {
    return SESSION_INVALID;
  }
  return { presented: true, ok: true, tenantId: claims.tid, userId: claims.uid, sessionId: claims.sid };
}
