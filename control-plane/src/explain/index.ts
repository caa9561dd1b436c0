/**
 * `GET /v1/explain?host=&key=&session=&ip=`: what the router would decide for a
 * request, from the control plane's own records, without sending anything anywhere.
 * The outcomes are built the way the router's resolvers build them and fed to the
 * router's own policy (`decide`), so the answer names the same rule the router
 * would apply. `key` is a full API key or its displayed prefix (`pck_` + 8); only
 * the prefix, never a key, is echoed back. Rate and quota limits are not evaluated
 * (they depend on live traffic).
 */
import { eq } from "drizzle-orm";
import type { Hono } from "hono";
import { z } from "zod";
import {
  API_KEY_PREFIX,
  apiKeyPrefix,
  hashApiKey,
  isWellFormedApiKey,
  normalizeHostname,
  REFUSALS,
  verifySessionToken,
} from "@portcullis/shared";
import { type Decision, decide, type HostOutcome, type KeyOutcome, type SessionOutcome } from "@portcullis/router/policy";
import type { Env } from "../admin/app.ts";
import { adminError } from "../admin/errors.ts";
import type { Db } from "../db/client.ts";
import { apiKeys } from "../db/schema/index.ts";
import { hostEntry, keyEntry, sessionEntry, tenantEntry } from "../records/index.ts";

const Query = z
  .object({
    host: z.string().min(1).max(300),
    key: z.string().min(1).max(200).optional(),
    session: z.string().min(1).max(2000).optional(),
    ip: z.string().min(1).max(100).optional(),
  })
  .strict();

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

export interface ExplainDeps {
  db: Db;
  apiHostname: string;
  sessionSecret: string;
  now?: () => number;
}

type KeyLookup = { outcome: KeyOutcome; prefix?: string; note?: string };

async function keyOutcome(db: Db, key: string, now: number): Promise<KeyLookup> {
  let hash: string;
  let prefix: string;
  if (isWellFormedApiKey(key)) {
    hash = hashApiKey(key);
    prefix = apiKeyPrefix(key);
  } else if (key.startsWith(API_KEY_PREFIX) && key.length === API_KEY_PREFIX.length + 8) {
    const rows = await db.select({ hash: apiKeys.hash }).from(apiKeys).where(eq(apiKeys.prefix, key)).limit(2);
    if (rows.length === 0) return { outcome: { presented: true, ok: false, code: "key_unknown" }, prefix: key };
    if (rows.length > 1) {
      return { outcome: { presented: true, ok: false, code: "key_unknown" }, prefix: key, note: "prefix matches several keys" };
    }
    hash = (rows[0] as { hash: string }).hash;
    prefix = key;
  } else {
    return { outcome: { presented: true, ok: false, code: "key_malformed" } };
  }
  // A revoked key reads as unknown to the router; say which it is.
  const [row] = await db.select({ revokedAt: apiKeys.revokedAt }).from(apiKeys).where(eq(apiKeys.hash, hash));
  if (row?.revokedAt) return { outcome: { presented: true, ok: false, code: "key_revoked" }, prefix };
  const entry = (await keyEntry(db, hash)).key;
  if (entry === null) return { outcome: { presented: true, ok: false, code: "key_unknown" }, prefix };
  if (entry.expiresAt !== null && entry.expiresAt <= now)
    return { outcome: { presented: true, ok: false, code: "key_expired" }, prefix };
  const tenant = await tenantEntry(db, entry.tenantId);
  return {
    outcome: {
      presented: true,
      ok: true,
      keyId: entry.keyId,
      tenantId: entry.tenantId,
      tenant: tenant.tenant,
      binding: entry.binding,
    },
    prefix,
  };
}

async function sessionOutcome(db: Db, token: string, secret: string, now: number): Promise<SessionOutcome> {
  const invalid: SessionOutcome = { presented: true, ok: false, code: "session_invalid" };
  const verified = verifySessionToken(token, secret, Math.floor(now / 1000));
  if (!verified.ok) return invalid;
  const { claims } = verified;
  const s = (await sessionEntry(db, claims.sid)).session;
  if (s === null || s.revoked || s.tenantId !== claims.tid || s.userId !== claims.uid || s.expiresAt <= now) return invalid;
  return { presented: true, ok: true, tenantId: claims.tid, userId: claims.uid, sessionId: claims.sid };
}

export async function explain(deps: ExplainDeps, q: z.infer<typeof Query>) {
  const now = (deps.now ?? Date.now)();
  const n = normalizeHostname(q.host);
  if (!n.ok)
    return { decision: "refuse", reason: "invalid_host", status: REFUSALS.invalid_host.status, rule: RULES.invalid_host };
  let host: HostOutcome;
  if (n.hostname === deps.apiHostname) host = { kind: "api", ok: true };
  else {
    const entry = await hostEntry(deps.db, n.hostname);
    const tenant = entry.tenantId ? (await tenantEntry(deps.db, entry.tenantId)).tenant : null;
    host = { kind: "tenant", ok: true, tenant };
  }
  const key = q.key === undefined ? null : await keyOutcome(deps.db, q.key, now);
  const session = q.session === undefined ? undefined : await sessionOutcome(deps.db, q.session, deps.sessionSecret, now);

  // Without an `ip`, the allowlist is reported rather than applied.
  let allowlist: string[] = [];
  const strip = (t: (HostOutcome & { kind: "tenant"; ok: true })["tenant"]) => {
    if (!t || q.ip !== undefined || t.settings.allowedIps.length === 0) return t;
    allowlist = t.settings.allowedIps;
    return { ...t, settings: { ...t.settings, allowedIps: [] } };
  };
  if (host.kind === "tenant" && host.ok) host = { ...host, tenant: strip(host.tenant) };
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
    ...(decision.userId ? { userId: decision.userId } : {}),
    binding: t.binding,
    upstreams: t.upstreams,
    upstream: t.upstreams[0] ?? null,
    ...(allowlist.length > 0 ? { allowedIps: allowlist, note: "pass ip= to apply the tenant's IP allowlist" } : {}),
  };
}

export function mountExplainRoute(app: Hono<Env>, deps: ExplainDeps) {
  app.get("/v1/explain", async (c) => {
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
