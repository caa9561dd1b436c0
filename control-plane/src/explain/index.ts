/**
 * `GET /v1/explain?host=&key=&session=&ip=`: what the router would decide for a
 * request, from the control plane's own records, without sending anything anywhere.
 * The records are the ones the key service answers a router with
 * (control-plane/src/records/), turned into outcomes by the same builders and decided
 * by the same `decide` as the router's (shared/src/policy/), so the answer names the
 * rule the router would apply. `key` is a full API key or its displayed prefix
 * (`pck_` + 8); only the prefix, never a key, is echoed back. A key's own rate limit
 * is reported (`keyLimits`, null: the tenant's); rate and quota are not evaluated
 * (they depend on live traffic).
 */
import { eq } from "drizzle-orm";
import type { Hono } from "hono";
import {
  API_HOST,
  API_KEY_PREFIX,
  acceptKey,
  apiKeyPrefix,
  type Decision,
  decide,
  type HostEntry,
  type HostOutcome,
  hashApiKey,
  isWellFormedApiKey,
  judgeSession,
  KEY_MALFORMED,
  KEY_UNKNOWN,
  type KeyEntry,
  type KeyOutcome,
  type KnownKey,
  normalizeHostname,
  REFUSALS,
  SESSION_INVALID,
  type SessionEntry,
  type SessionOutcome,
  screenKey,
  sessionClaims,
  type TenantEntry,
  type TenantRecord,
  tenantHost,
} from "@portcullis/shared";
import type { Env } from "../admin/app.ts";
import { OPERATIONS as OP, route } from "../admin/operations.ts";
import { type ExplainQuery, explainQuery } from "../admin/schemas.ts";
import { adminError } from "../admin/errors.ts";
import type { Db } from "../db/client.ts";
import { apiKeys } from "../db/schema/index.ts";
import { hostEntry, keyEntry, sessionEntry, tenantEntry } from "../records/index.ts";

const Query = explainQuery;
export type { ExplainQuery };

/** Which rule of the contract's isolation list a refusal applies. */
const RULES: Partial<Record<string, string>> = {
  invalid_host: "8: the Host is malformed",
  unknown_host: "1: the host is not a verified hostname of an active tenant",
  key_missing: "2: an API key is required on the API hostname",
  key_malformed: "2: the API key is malformed",
  key_unknown: "2: the API key is unknown or revoked",
  key_expired: "2: the API key has expired",
  key_revoked: "2: the API key was revoked",
  key_other_tenant: "3: the API key belongs to another tenant than the hostname's",
  api_access_disabled: "6: the tenant's apiAccess feature is off",
  session_invalid: "4: the session is invalid, expired or revoked",
  session_other_tenant: "4: the session belongs to another tenant than the hostname's",
  tenant_suspended: "6: the tenant is suspended",
  binding_missing: "5: the tenant has no database binding",
  binding_mismatch: "5: the key service's binding differs from the tenant's",
  no_upstream: "the tenant has no upstream",
  ip_not_allowed: "6: the client IP is outside the tenant's allowlist",
  resolution_unavailable: "7: resolution cannot be completed",
};

/** The records explain reads: those the key service answers a router's misses with. */
export interface ExplainRecords {
  host(hostname: string): Promise<HostEntry>;
  tenant(id: string): Promise<TenantEntry>;
  key(hash: string): Promise<KeyEntry>;
  /** Hashes of the keys displayed as `prefix`; two are enough to tell one from several. */
  keyHashes(prefix: string): Promise<string[]>;
  session(id: string): Promise<SessionEntry>;
}

export function databaseRecords(db: Db): ExplainRecords {
  return {
    host: (hostname) => hostEntry(db, hostname),
    tenant: (id) => tenantEntry(db, id),
    key: (hash) => keyEntry(db, hash),
    keyHashes: async (prefix) =>
      (await db.select({ hash: apiKeys.hash }).from(apiKeys).where(eq(apiKeys.prefix, prefix)).limit(2)).map((r) => r.hash),
    session: (id) => sessionEntry(db, id),
  };
}

export interface ExplainDeps {
  db: Db;
  apiHostname: string;
  sessionSecret: string;
  now?: () => number;
}

export type ExplainSource = Omit<ExplainDeps, "db"> & { records: ExplainRecords };

type KeyLookup = { outcome: KeyOutcome; prefix?: string; note?: string };

/** As the key service answers a host: the name's tenant, if a verified name of one. */
async function hostOutcome(records: ExplainRecords, hostname: string): Promise<HostOutcome> {
  const entry = await records.host(hostname);
  return tenantHost(entry.tenantId ? (await records.tenant(entry.tenantId)).tenant : null);
}

/** As router/src/keys/ verifies a key, from its entry and its tenant's record. */
async function keyOutcome(records: ExplainRecords, key: string, now: number, hostTenantId: string | null): Promise<KeyLookup> {
  let hash: string;
  let prefix: string;
  if (isWellFormedApiKey(key)) {
    hash = hashApiKey(key);
    prefix = apiKeyPrefix(key);
  } else if (key.startsWith(API_KEY_PREFIX) && key.length === API_KEY_PREFIX.length + 8) {
    const hashes = await records.keyHashes(key);
    if (hashes.length === 0) return { outcome: KEY_UNKNOWN, prefix: key };
    if (hashes.length > 1) return { outcome: KEY_UNKNOWN, prefix: key, note: "prefix matches several keys" };
    hash = hashes[0] as string;
    prefix = key;
  } else {
    return { outcome: KEY_MALFORMED };
  }
  const value = await records.key(hash);
  const early = screenKey(value, now, hostTenantId);
  if (early !== null) return { outcome: early, prefix };
  const entry = value.key as KnownKey;
  return { outcome: acceptKey(entry, (await records.tenant(entry.tenantId)).tenant), prefix };
}

/** As router/src/sessions/ verifies a session cookie's token. */
async function sessionOutcome(records: ExplainRecords, token: string, secret: string, now: number): Promise<SessionOutcome> {
  const claims = sessionClaims(token, secret, now);
  if (claims === null) return SESSION_INVALID;
  return judgeSession((await records.session(claims.sid)).session, claims, now);
}

export function explain(deps: ExplainDeps, q: ExplainQuery) {
  const { db, ...rest } = deps;
  return explainFrom({ ...rest, records: databaseRecords(db) }, q);
}

export async function explainFrom(source: ExplainSource, q: ExplainQuery) {
  const { records } = source;
  const now = (source.now ?? Date.now)();
  const n = normalizeHostname(q.host);
  if (!n.ok)
    return { decision: "refuse", reason: "invalid_host", status: REFUSALS.invalid_host.status, rule: RULES.invalid_host };
  let host = n.hostname === source.apiHostname ? API_HOST : await hostOutcome(records, n.hostname);
  // The tenant the hostname names, as the router's credentials stage passes it on.
  const hostTenantId = host.ok && host.kind === "tenant" ? (host.tenant?.id ?? null) : null;
  const key = q.key === undefined ? null : await keyOutcome(records, q.key, now, hostTenantId);
  const session = q.session === undefined ? undefined : await sessionOutcome(records, q.session, source.sessionSecret, now);

  // Without an `ip`, the allowlist is reported rather than applied.
  let allowlist: string[] = [];
  const strip = (t: TenantRecord | null) => {
    if (!t || q.ip !== undefined || t.settings.allowedIps.length === 0) return t;
    allowlist = t.settings.allowedIps;
    return { ...t, settings: { ...t.settings, allowedIps: [] } };
  };
  if (host.kind === "tenant" && host.ok) host = tenantHost(strip(host.tenant));
  const keyIn = key?.outcome ?? { presented: false as const };
  const keyForDecision: KeyOutcome = keyIn.presented && keyIn.ok ? { ...keyIn, tenant: strip(keyIn.tenant) } : keyIn;

  const decision: Decision = decide({
    host,
    key: keyForDecision,
    session: session ?? { presented: false },
    credentialError: null,
    clientIp: q.ip ?? "",
  });
  const base = {
    host: n.hostname,
    ...(key?.prefix ? { keyPrefix: key.prefix } : {}),
    ...(key?.note ? { note: key.note } : {}),
  };
  if (!decision.allow) {
    return {
      ...base,
      decision: "refuse",
      reason: decision.reason,
      status: REFUSALS[decision.reason].status,
      code: REFUSALS[decision.reason].code,
      rule: RULES[decision.reason] ?? REFUSALS[decision.reason].message,
      ...(decision.tenantId ? { tenantId: decision.tenantId } : {}),
    };
  }
  const t = decision.tenant;
  return {
    ...base,
    decision: "allow",
    tenant: { id: t.id, slug: t.slug, status: t.status, plan: t.plan },
    auth: decision.auth,
    ...(decision.keyId ? { keyId: decision.keyId } : {}),
    // The key's own rate limit, as the router's limits stage takes it from the key's outcome.
    ...(decision.keyId && keyIn.presented && keyIn.ok ? { keyLimits: keyIn.limits ?? null } : {}),
    ...(decision.userId ? { userId: decision.userId } : {}),
    binding: t.binding,
    upstreams: t.upstreams,
    upstream: t.upstreams[0] ?? null,
    ...(allowlist.length > 0 ? { allowedIps: allowlist, note: "pass ip= to apply the tenant's IP allowlist" } : {}),
  };
}

export function mountExplainRoute(app: Hono<Env>, deps: ExplainDeps) {
  route(app, OP.explain, async (c) => {
    const parsed = Query.safeParse(c.req.query());
    if (!parsed.success) {
      return adminError(
        c,
        "validation_failed",
        parsed.error.issues.map((i) => `${i.path.join(".") || "query"}: ${i.message}`).join("; "),
      );
    }
    return c.json(await explain(deps, parsed.data));
  });
}
