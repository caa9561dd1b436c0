/**
 * Situations for test/policy/explain-agrees.test.ts, as data: the tenants' records
 * (active or suspended, binding, upstreams, the apiAccess feature, an IP allowlist, or
 * gone), the hostname asked for, the API key presented (none, malformed, unknown,
 * revoked, expired, another tenant's, with or without its own limits, by its prefix),
 * the session (none, garbled, forged, expired, revoked, another tenant's or user's)
 * and the client IP. A `World` holds one situation as the control plane's records and
 * answers as explain reads them and as the key service answers a router.
 */
import fc from "fast-check";
import {
  type DatabaseBinding,
  generateApiKey,
  type HostEntry,
  type KeyEntry,
  type KeyLimits,
  ResolveHostResponse,
  SessionEntry,
  signSession,
  TenantEntry,
  type TenantRecord,
  VerifyKeyResponse,
} from "@portcullis/shared";
import type { ExplainRecords } from "../../control-plane/src/explain/index.ts";
import type { KeyServiceClient } from "../../router/src/tenant-cache/index.ts";

export const NOW = 1_800_000_000_000;
export const API_HOSTNAME = "api.portcullis.test";
export const SECRET = "session-secret-of-this-test-0123456789";
export const COOKIE = "pc_session";
const IDS = ["ten_a", "ten_b"] as const;
const HOSTS: Record<string, string | null> = {
  "a.portcullis.test": "ten_a",
  "b.portcullis.test": "ten_b",
  // A name whose tenant has no record (deleted since).
  "gone.portcullis.test": "ten_gone",
  // Pending or failed verification: the record names no tenant.
  "pending.portcullis.test": null,
};
const ASKED = [API_HOSTNAME, ...Object.keys(HOSTS), "nobody.portcullis.test"];
const BINDINGS: DatabaseBinding[] = [
  { server: "pg-a.internal:5432", database: "a" },
  { server: "pg-b.internal:5432", database: "b" },
];
const IPS = ["10.1.2.3", "192.0.2.7", "::ffff:10.9.9.9", "2001:db8::1", "203.0.113.5"];
const MALFORMED = ["pck_nothing", `pck_${"A".repeat(38)}`];
// Keys fixed for the whole run: a case picks one per role.
const KEYS = { known: generateApiKey(), revoked: generateApiKey(), unknown: generateApiKey() };

export interface TenantSpec {
  status: "active" | "suspended";
  binding: number | null;
  upstreams: string[];
  apiAccess: boolean | undefined;
  allowedIps: string[];
}

export type KeySpec =
  | { kind: "absent" }
  | { kind: "malformed"; text: string }
  | { kind: "unknown" | "revoked"; asPrefix: boolean; header: "authorization" | "x-api-key" }
  | {
      kind: "known";
      tenantId: string;
      expiresAt: number | null;
      binding: "own" | "other" | "none";
      limits: KeyLimits | null | undefined;
      asPrefix: boolean;
      header: "authorization" | "x-api-key";
    };

export type SessionSpec =
  | { kind: "absent" }
  | { kind: "token"; token: string }
  | {
      kind: "signed";
      tid: string;
      state: { tenantId: string; userId: string; revoked: boolean; expiresAt: number } | null;
    };

export interface Situation {
  tenants: (TenantSpec | null)[];
  host: string;
  key: KeySpec;
  session: SessionSpec;
  ip: string;
}

const UPSTREAMS = ["http://app-1.internal:8080", "http://app-2.internal:8080"];
// A tenant that would serve (so that allows are frequent), or any mix of its settings.
const HEALTHY: TenantSpec = {
  status: "active",
  binding: 0,
  upstreams: UPSTREAMS.slice(0, 1),
  apiAccess: undefined,
  allowedIps: [],
};
const tenantSpec: fc.Arbitrary<TenantSpec | null> = fc.option(
  fc.oneof(
    fc.constant(HEALTHY),
    fc.record({
      status: fc.constantFrom("active" as const, "active" as const, "suspended" as const),
      binding: fc.constantFrom(0, 1, null),
      upstreams: fc.constantFrom([], UPSTREAMS.slice(0, 1), UPSTREAMS),
      apiAccess: fc.constantFrom(undefined, true, false),
      allowedIps: fc.constantFrom<string[]>([], [], ["10.0.0.0/8"], ["192.0.2.7", "2001:db8::/32"]),
    }),
  ),
  { freq: 6 },
);

const header = fc.constantFrom("authorization" as const, "x-api-key" as const);
const keySpec: fc.Arbitrary<KeySpec> = fc.oneof(
  { weight: 2, arbitrary: fc.constant<KeySpec>({ kind: "absent" }) },
  fc.constantFrom(...MALFORMED).map((text): KeySpec => ({ kind: "malformed", text })),
  fc.record({ kind: fc.constantFrom("unknown" as const, "revoked" as const), asPrefix: fc.boolean(), header }),
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant("known" as const),
      tenantId: fc.constantFrom(...IDS, "ten_gone"),
      expiresAt: fc.constantFrom(null, null, NOW - 1, NOW, NOW + 60_000),
      binding: fc.constantFrom("own" as const, "own" as const, "other" as const, "none" as const),
      limits: fc.constantFrom<KeyLimits | null | undefined>(
        undefined,
        null,
        { requestsPerSecond: 5, burst: 10 },
        { requestsPerSecond: 2.5, burst: null },
      ),
      asPrefix: fc.boolean(),
      header,
    }),
  },
);

const sessionSpec: fc.Arbitrary<SessionSpec> = fc.oneof(
  fc.constant<SessionSpec>({ kind: "absent" }),
  fc
    .constantFrom(
      "not-a-token",
      signSession({ sid: "ses_1", tid: "ten_a", uid: "usr_1", exp: NOW / 1000 + 3600 }, "another secret entirely"),
      signSession({ sid: "ses_1", tid: "ten_a", uid: "usr_1", exp: NOW / 1000 }, SECRET),
    )
    .map((token): SessionSpec => ({ kind: "token", token })),
  {
    weight: 2,
    arbitrary: fc
      .record({
        tid: fc.constantFrom(...IDS),
        // The session's recorded state against the token's claims (sid ses_1, uid usr_1).
        state: fc.constantFrom(
          "valid",
          "valid",
          "valid",
          "none",
          "revoked",
          "expired",
          "ended now",
          "other user",
          "other tenant",
        ),
      })
      .map(({ tid, state }): SessionSpec => {
        const valid = { tenantId: tid, userId: "usr_1", revoked: false, expiresAt: NOW + 60_000 };
        const other = tid === "ten_a" ? "ten_b" : "ten_a";
        const states: Record<string, (SessionSpec & { kind: "signed" })["state"]> = {
          valid,
          none: null,
          revoked: { ...valid, revoked: true },
          expired: { ...valid, expiresAt: NOW - 1 },
          "ended now": { ...valid, expiresAt: NOW },
          "other user": { ...valid, userId: "usr_2" },
          "other tenant": { ...valid, tenantId: other },
        };
        return { kind: "signed", tid, state: states[state] ?? null };
      }),
  },
);

export const situation: fc.Arbitrary<Situation> = fc.record({
  tenants: fc.tuple(tenantSpec, tenantSpec),
  host: fc.constantFrom(...ASKED),
  key: keySpec,
  session: sessionSpec,
  ip: fc.constantFrom(...IPS),
});

/** The situation as the control plane's records: what the key service would answer. */
export class World {
  readonly tenants = new Map<string, TenantRecord>();
  readonly keys = new Map<string, KeyEntry>();
  /** Displayed prefix → hashes of the stored keys (revoked ones included). */
  readonly prefixes = new Map<string, string[]>();
  readonly sessions = new Map<string, SessionEntry>();
  /** What the request carries: the key as the router sees it, as explain is asked, and the token. */
  readonly presented: { key: string | null; asked: string | null; header: string; token: string | null };

  constructor(s: Situation) {
    s.tenants.forEach((spec, i) => {
      if (spec === null) return;
      const id = IDS[i] as string;
      this.tenants.set(id, {
        id,
        slug: id.slice(4),
        status: spec.status,
        plan: "pro",
        binding: spec.binding === null ? null : { ...(BINDINGS[spec.binding] as DatabaseBinding) },
        upstreams: spec.upstreams,
        limits: { requestsPerSecond: 100, burst: 200, monthlyRequests: null, concurrency: null, maxBodyBytes: 1_048_576 },
        features: spec.apiAccess === undefined ? {} : { apiAccess: spec.apiAccess },
        settings: { allowedIps: spec.allowedIps, branding: { displayName: id } },
      });
    });

    const k = s.key;
    let key: string | null = null;
    let asked: string | null = null;
    let headerName = "x-api-key";
    if (k.kind === "malformed") key = asked = k.text;
    else if (k.kind !== "absent") {
      const chosen = KEYS[k.kind];
      key = chosen.key;
      asked = k.asPrefix ? chosen.prefix : chosen.key;
      headerName = k.header;
      if (k.kind === "revoked") this.store(chosen, { v: 1, revoked: true, key: null });
      if (k.kind === "known") {
        const own = this.tenants.get(k.tenantId)?.binding ?? (BINDINGS[0] as DatabaseBinding);
        const binding =
          k.binding === "none" ? null : k.binding === "own" ? { ...own } : { server: "pg-c.internal:5432", database: "c" };
        this.store(chosen, {
          v: 1,
          key: {
            keyId: "key_1",
            tenantId: k.tenantId,
            expiresAt: k.expiresAt,
            binding,
            ...(k.limits === undefined ? {} : { limits: k.limits }),
          },
        });
      }
    }

    const ses = s.session;
    let token: string | null = null;
    if (ses.kind === "token") token = ses.token;
    if (ses.kind === "signed") {
      token = signSession({ sid: "ses_1", tid: ses.tid, uid: "usr_1", exp: NOW / 1000 + 3600 }, SECRET);
      if (ses.state !== null) this.sessions.set("ses_1", { v: 1, session: ses.state });
    }
    this.presented = { key, asked, header: headerName, token };
  }

  private store(k: { prefix: string; hash: string }, entry: KeyEntry): void {
    this.keys.set(k.hash, entry);
    this.prefixes.set(k.prefix, [...(this.prefixes.get(k.prefix) ?? []), k.hash]);
  }

  host(hostname: string): HostEntry {
    return { v: 1, tenantId: HOSTS[hostname] ?? null };
  }

  tenant(id: string): TenantEntry {
    return { v: 1, tenant: this.tenants.get(id) ?? null };
  }

  key(hash: string): KeyEntry {
    return this.keys.get(hash) ?? { v: 1, key: null };
  }

  session(id: string): SessionEntry {
    return this.sessions.get(id) ?? { v: 1, session: null };
  }

  /** Explain's reading: as control-plane/src/records/ reads the database. */
  records(): ExplainRecords {
    return {
      host: async (hostname) => this.host(hostname),
      tenant: async (id) => this.tenant(id),
      key: async (hash) => this.key(hash),
      keyHashes: async (prefix) => (this.prefixes.get(prefix) ?? []).slice(0, 2),
      session: async (id) => this.session(id),
    };
  }

  /** The router's key service: answers as control-plane/src/key-service/app.ts does, parsed as its client parses them. */
  keyService(): KeyServiceClient {
    return {
      resolveHost: async (hostname) => {
        const host = this.host(hostname);
        return ResolveHostResponse.parse({ host, tenant: host.tenantId ? this.tenant(host.tenantId) : null });
      },
      tenant: async (id) => TenantEntry.parse(this.tenant(id)),
      verifyKey: async (hash) => {
        const entry = this.key(hash);
        return VerifyKeyResponse.parse({ entry, tenant: entry.key ? this.tenant(entry.key.tenantId) : null });
      },
      session: async (id) => SessionEntry.parse(this.session(id)),
      reportUsed: async () => {},
      healthy: async () => true,
      close: async () => {},
    };
  }
}
