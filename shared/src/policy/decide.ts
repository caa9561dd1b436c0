/**
 * The one decision point. Every resolver reports an outcome; this pure function
 * turns them into allow (tenant T) or refuse (reason). It is total and fails
 * closed: an outcome it does not recognise, a credential naming another tenant, or
 * anything unresolved ends in a refusal. The router's request path and the control
 * plane's explain call (control-plane/src/explain/) both decide here. Property-tested
 * in router/src/policy/policy.test.ts and policy-credentials.test.ts; explain's
 * agreement with the router in test/policy/explain-agrees.test.ts.
 */
import { BlockList, isIP } from "node:net";
import type { DatabaseBinding, KeyLimits, TenantRecord } from "../contracts/index.ts";
import type { RefusalReason } from "../errors/index.ts";

export type HostOutcome =
  | { kind: "tenant"; ok: true; tenant: TenantRecord | null }
  | { kind: "api"; ok: true }
  | { kind: "tenant" | "api"; ok: false; code: "unavailable" };

export type KeyOutcome =
  | { presented: false }
  | {
      presented: true;
      ok: true;
      keyId: string;
      tenant: TenantRecord | null;
      tenantId: string;
      binding: DatabaseBinding | null;
      /** The key's own rate limit (absent or null: the tenant's numbers). */
      limits?: KeyLimits | null;
    }
  | { presented: true; ok: false; code: "key_malformed" | "key_unknown" | "key_expired" | "key_revoked" | "unavailable" };

export type SessionOutcome =
  | { presented: false }
  | { presented: true; ok: true; tenantId: string; userId: string; sessionId: string }
  | { presented: true; ok: false; code: "session_invalid" | "unavailable" };

export interface DecisionInput {
  host: HostOutcome;
  key: KeyOutcome;
  session: SessionOutcome;
  /** Set by the credential parser for requests that are ambiguous before any lookup. */
  credentialError: "ambiguous_credentials" | "key_in_query" | null;
  /**
   * The key was found outside the headers that carry keys (another scheme, a cookie,
   * Basic credentials, …): verified like any key, then refused even when valid.
   */
  keyMisplaced?: boolean;
  clientIp: string;
}

export type Decision =
  | { allow: true; tenant: TenantRecord; auth: "hostname" | "api-key" | "session"; keyId?: string; userId?: string }
  | { allow: false; reason: RefusalReason; tenantId?: string };

export function sameBinding(a: DatabaseBinding | null, b: DatabaseBinding | null): boolean {
  return a !== null && b !== null && a.server === b.server && a.database === b.database;
}

const allowLists = new WeakMap<TenantRecord, BlockList | null>();

/** The tenant's IP allowlist, compiled once per record. Empty list: everyone. */
export function ipAllowed(tenant: TenantRecord, ip: string): boolean {
  let list = allowLists.get(tenant);
  if (list === undefined) {
    list = null;
    if (tenant.settings.allowedIps.length > 0) {
      list = new BlockList();
      for (const entry of tenant.settings.allowedIps) {
        const [addr, bits] = entry.split("/") as [string, string | undefined];
        const family = isIP(addr) === 6 ? "ipv6" : "ipv4";
        if (bits === undefined) list.addAddress(addr, family);
        else list.addSubnet(addr, Number(bits), family);
      }
    }
    allowLists.set(tenant, list);
  }
  if (list === null) return true;
  const family = isIP(ip);
  if (family === 0) return false;
  if (list.check(ip, family === 6 ? "ipv6" : "ipv4")) return true;
  // An IPv4 client seen through a dual-stack socket (::ffff:a.b.c.d).
  if (family === 6 && ip.toLowerCase().startsWith("::ffff:") && isIP(ip.slice(7)) === 4) return list.check(ip.slice(7), "ipv4");
  return false;
}

export function decide(input: DecisionInput): Decision {
  if (input.credentialError !== null) return { allow: false, reason: input.credentialError };

  const { host, key, session } = input;
  if (!host.ok) return { allow: false, reason: "resolution_unavailable" };

  // 1. Who does the hostname name?
  let tenant: TenantRecord | null = null;
  if (host.kind === "tenant") {
    if (host.tenant === null) return { allow: false, reason: "unknown_host" };
    tenant = host.tenant;
  }

  // 2. API key: on the API hostname it alone selects the tenant; on a tenant
  //    hostname it must belong to that tenant.
  let keyId: string | undefined;
  if (key.presented) {
    if (!key.ok) {
      return {
        allow: false,
        reason: key.code === "unavailable" ? "resolution_unavailable" : key.code,
        ...(tenant ? { tenantId: tenant.id } : {}),
      };
    }
    if (tenant !== null && key.tenantId !== tenant.id) return { allow: false, reason: "key_other_tenant", tenantId: tenant.id };
    if (key.tenant === null || key.tenant.id !== key.tenantId) return { allow: false, reason: "key_unknown" };
    // Valid and of this tenant, but where an app may read it: never forwarded, never
    // taken (the edge and the app must agree on the one credential). Checked after
    // verification so another tenant's or an invalid key gets the one 401 above.
    if (input.keyMisplaced === true) return { allow: false, reason: "misplaced_key", tenantId: key.tenantId };
    tenant = key.tenant;
    if (tenant.features.apiAccess === false) return { allow: false, reason: "api_access_disabled", tenantId: tenant.id };
    // The key service's binding must be the tenant's binding (contract rule 5).
    if (tenant.binding === null) return { allow: false, reason: "binding_missing", tenantId: tenant.id };
    if (!sameBinding(key.binding, tenant.binding)) return { allow: false, reason: "binding_mismatch", tenantId: tenant.id };
    keyId = key.keyId;
  } else if (host.kind === "api") {
    return { allow: false, reason: "key_missing" };
  } else if (input.keyMisplaced === true) {
    // A misplaced key with no outcome of its own: not one the parser can produce; fail closed.
    return { allow: false, reason: "misplaced_key", ...(tenant ? { tenantId: tenant.id } : {}) };
  }
  if (tenant === null) return { allow: false, reason: "unknown_host" };

  // 3. Session: must name the same tenant.
  let userId: string | undefined;
  if (session.presented) {
    if (!session.ok) {
      return {
        allow: false,
        reason: session.code === "unavailable" ? "resolution_unavailable" : "session_invalid",
        tenantId: tenant.id,
      };
    }
    if (session.tenantId !== tenant.id) return { allow: false, reason: "session_other_tenant", tenantId: tenant.id };
    userId = session.userId;
  }

  // 4. The tenant's own state.
  if (tenant.status !== "active") return { allow: false, reason: "tenant_suspended", tenantId: tenant.id };
  if (tenant.binding === null) return { allow: false, reason: "binding_missing", tenantId: tenant.id };
  if (tenant.upstreams.length === 0) return { allow: false, reason: "no_upstream", tenantId: tenant.id };
  if (!ipAllowed(tenant, input.clientIp)) return { allow: false, reason: "ip_not_allowed", tenantId: tenant.id };

  const auth = keyId !== undefined ? "api-key" : userId !== undefined ? "session" : "hostname";
  return {
    allow: true,
    tenant,
    auth,
    ...(keyId !== undefined ? { keyId } : {}),
    ...(userId !== undefined ? { userId } : {}),
  };
}
