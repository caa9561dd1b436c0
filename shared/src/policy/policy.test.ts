/**
 * Properties of the one decision function, over every combination of host, key and
 * session outcomes and tenant records (fast-check, ≥ 1,000 cases per property):
 * allow(T) only when every presented credential names T, T's binding is consistent
 * with the key's, and T is active with upstreams; and allow(T) whenever that holds.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { DatabaseBinding, TenantRecord } from "../contracts/index.ts";
import { REFUSALS } from "../errors/index.ts";
import {
  type DecisionInput,
  decide,
  type HostOutcome,
  ipAllowed,
  type KeyOutcome,
  type SessionOutcome,
  sameBinding,
} from "./index.ts";

const RUNS = { numRuns: 2_000 };
const IDS = ["ten_a", "ten_b", "ten_c"] as const;
const BINDINGS: DatabaseBinding[] = [
  { server: "pg-a.internal:5432", database: "a" },
  { server: "pg-b.internal:5432", database: "b" },
  { server: "pg-a.internal:5432", database: "b" },
];
const IPS = ["10.1.2.3", "192.168.0.1", "::ffff:10.9.9.9"];

// Fresh objects each time: the decision must compare bindings by value, not identity.
const binding = fc.option(
  fc.constantFrom(...BINDINGS).map((b) => ({ ...b })),
  { nil: null },
);

const tenant = (id: string): fc.Arbitrary<TenantRecord> =>
  fc
    .record({
      status: fc.constantFrom("active" as const, "suspended" as const),
      binding,
      upstreams: fc.constantFrom([] as string[], ["http://10.0.0.5:3000"]),
      apiAccess: fc.constantFrom(true, false, undefined),
      allowedIps: fc.constantFrom([] as string[], ["10.0.0.0/8"], ["192.168.0.1"]),
    })
    .map(
      (t): TenantRecord => ({
        id,
        slug: id.slice(4),
        status: t.status,
        plan: "pro",
        binding: t.binding,
        upstreams: t.upstreams,
        limits: { requestsPerSecond: null, burst: null, monthlyRequests: null, concurrency: null, maxBodyBytes: null },
        features: t.apiAccess === undefined ? ({} as Record<string, boolean>) : { apiAccess: t.apiAccess },
        settings: { allowedIps: t.allowedIps, branding: {} },
      }),
    );

const world = fc.tuple(tenant(IDS[0]), tenant(IDS[1]), tenant(IDS[2]));

function hostOutcome(w: TenantRecord[]): fc.Arbitrary<HostOutcome> {
  return fc.oneof(
    fc.constant<HostOutcome>({ kind: "api", ok: true }),
    fc.constant<HostOutcome>({ kind: "tenant", ok: false, code: "unavailable" }),
    fc.constant<HostOutcome>({ kind: "api", ok: false, code: "unavailable" }),
    fc.constant<HostOutcome>({ kind: "tenant", ok: true, tenant: null }),
    fc.constantFrom(...w).map((t): HostOutcome => ({ kind: "tenant", ok: true, tenant: t })),
  );
}

function keyOutcome(w: TenantRecord[]): fc.Arbitrary<KeyOutcome> {
  const failure = fc
    .constantFrom("key_malformed", "key_unknown", "key_expired", "key_revoked", "unavailable" as const)
    .map((code): KeyOutcome => ({ presented: true, ok: false, code }));
  // Any claimed tenant id, any cached record (possibly of another tenant), any binding.
  const arbitrary = fc
    .record({
      tenantId: fc.constantFrom(...IDS, "ten_gone"),
      tenant: fc.option(fc.constantFrom(...w), { nil: null }),
      binding,
    })
    .map((k): KeyOutcome => ({ presented: true, ok: true, keyId: "key_1", ...k }));
  // A key the key service resolved consistently to one tenant (the common case).
  const consistent = fc.tuple(fc.constantFrom(...w), fc.boolean(), binding).map(
    ([t, same, other]): KeyOutcome => ({
      presented: true,
      ok: true,
      keyId: "key_2",
      tenantId: t.id,
      tenant: t,
      binding: same && t.binding ? { ...t.binding } : other,
    }),
  );
  return fc.oneof(fc.constant<KeyOutcome>({ presented: false }), failure, arbitrary, consistent);
}

const sessionOutcome: fc.Arbitrary<SessionOutcome> = fc.oneof(
  fc.constant<SessionOutcome>({ presented: false }),
  fc
    .constantFrom("session_invalid", "unavailable" as const)
    .map((code): SessionOutcome => ({ presented: true, ok: false, code })),
  fc
    .constantFrom(...IDS, "ten_gone")
    .map((tenantId): SessionOutcome => ({ presented: true, ok: true, tenantId, userId: "usr_1", sessionId: "ses_1" })),
);

const input = world.chain((w) =>
  fc.record({
    host: hostOutcome(w),
    key: keyOutcome(w),
    session: sessionOutcome,
    credentialError: fc.constantFrom(null, null, null, "ambiguous_credentials" as const, "key_in_query" as const),
    clientIp: fc.constantFrom(...IPS),
  }),
);

describe("decide() properties", () => {
  it("allows tenant T only if every presented credential names T, bindings agree, and T is active with upstreams", () => {
    fc.assert(
      fc.property(input, (i: DecisionInput) => {
        const d = decide(i);
        if (!d.allow) return;
        const T = d.tenant;
        expect(i.credentialError).toBeNull();
        // The host names T, or (API hostname) a key does.
        expect(i.host.ok).toBe(true);
        if (i.host.ok && i.host.kind === "tenant") expect(i.host.tenant?.id).toBe(T.id);
        if (i.host.kind === "api") expect(i.key.presented).toBe(true);
        // A presented key: verified, names T, its record is T, its binding is T's.
        if (i.key.presented) {
          expect(i.key.ok).toBe(true);
          if (i.key.ok) {
            expect(i.key.tenantId).toBe(T.id);
            expect(i.key.tenant).toBe(T);
            expect(sameBinding(i.key.binding, T.binding)).toBe(true);
            expect(T.features.apiAccess).not.toBe(false);
            expect(d.auth).toBe("api-key");
            expect(d.keyId).toBe(i.key.keyId);
          }
        }
        // A presented session: valid and names T.
        if (i.session.presented) {
          expect(i.session.ok).toBe(true);
          if (i.session.ok) expect(i.session.tenantId).toBe(T.id);
        }
        // T itself: active, bound, with upstreams, and the client inside its allowlist.
        expect(T.status).toBe("active");
        expect(T.binding).not.toBeNull();
        expect(T.upstreams.length).toBeGreaterThan(0);
        expect(ipAllowed(T, i.clientIp)).toBe(true);
        // T is a record the request named, never another one.
        const named = [
          i.host.ok && i.host.kind === "tenant" ? i.host.tenant : null,
          i.key.presented && i.key.ok ? i.key.tenant : null,
        ];
        expect(named).toContain(T);
      }),
      RUNS,
    );
  });

  it("allows T whenever every credential names T consistently and T is servable (it does not refuse everything)", () => {
    const consistentCase = world.chain((w) =>
      fc.record({
        t: fc.constantFrom(...w),
        viaApi: fc.boolean(),
        withKey: fc.boolean(),
        withSession: fc.boolean(),
        clientIp: fc.constantFrom(...IPS),
      }),
    );
    fc.assert(
      fc.property(consistentCase, ({ t, viaApi, withKey, withSession, clientIp }) => {
        const key: KeyOutcome =
          withKey || viaApi
            ? {
                presented: true,
                ok: true,
                keyId: "key_9",
                tenantId: t.id,
                tenant: t,
                binding: t.binding ? { ...t.binding } : null,
              }
            : { presented: false };
        const session: SessionOutcome = withSession
          ? { presented: true, ok: true, tenantId: t.id, userId: "usr_9", sessionId: "ses_9" }
          : { presented: false };
        const host: HostOutcome = viaApi ? { kind: "api", ok: true } : { kind: "tenant", ok: true, tenant: t };
        const d = decide({ host, key, session, credentialError: null, clientIp });
        const servable =
          t.status === "active" &&
          t.binding !== null &&
          t.upstreams.length > 0 &&
          ipAllowed(t, clientIp) &&
          (!key.presented || t.features.apiAccess !== false);
        expect(d.allow).toBe(servable);
        if (d.allow) {
          expect(d.tenant).toBe(t);
          expect(d.auth).toBe(key.presented ? "api-key" : withSession ? "session" : "hostname");
        }
      }),
      RUNS,
    );
  });

  it("is total: every input ends in allow or a registered refusal, never an exception", () => {
    fc.assert(
      fc.property(input, (i) => {
        const d = decide(i);
        if (!d.allow) expect(Object.keys(REFUSALS)).toContain(d.reason);
      }),
      RUNS,
    );
  });

  it("refuses a credential naming another tenant than the hostname's, even when both tenants are servable", () => {
    // Both tenants fully servable, so only the cross-tenant credential can refuse.
    const servable = (id: string) =>
      tenant(id).map((t) => ({
        ...t,
        status: "active" as const,
        binding: t.binding ?? { ...(BINDINGS[0] as DatabaseBinding) },
        upstreams: ["http://10.0.0.5:3000"],
        features: {},
        settings: { allowedIps: [], branding: {} },
      }));
    const crossCase = fc.record({
      hostTenant: servable("ten_a"),
      other: servable("ten_b"),
      via: fc.constantFrom("key" as const, "session" as const, "both" as const),
      clientIp: fc.constantFrom(...IPS),
    });
    fc.assert(
      fc.property(crossCase, ({ hostTenant, other, via, clientIp }) => {
        const key: KeyOutcome =
          via === "session"
            ? { presented: false }
            : { presented: true, ok: true, keyId: "key_x", tenantId: other.id, tenant: other, binding: other.binding };
        const session: SessionOutcome =
          via === "key"
            ? { presented: false }
            : { presented: true, ok: true, tenantId: other.id, userId: "usr_x", sessionId: "ses_x" };
        const d = decide({
          host: { kind: "tenant", ok: true, tenant: hostTenant },
          key,
          session,
          credentialError: null,
          clientIp,
        });
        expect(d.allow).toBe(false);
        if (!d.allow) {
          expect(d.reason).toBe(via === "session" ? "session_other_tenant" : "key_other_tenant");
          expect(REFUSALS[d.reason].status).toBe(401);
        }
      }),
      RUNS,
    );
  });
});
