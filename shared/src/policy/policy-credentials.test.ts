/**
 * Property tests of the one decision point: whatever the resolvers report, an allow
 * always names the hostname's tenant (or, on API_HOSTNAME, the key's), with every
 * presented credential valid and belonging to that tenant, an active tenant, its own
 * binding, and nothing else. Refusals always carry a registered reason.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { TenantRecord } from "../contracts/index.ts";
import { REFUSALS } from "../errors/index.ts";
import { type DecisionInput, decide, ipAllowed, type KeyOutcome, sameBinding, type SessionOutcome } from "./index.ts";

const IDS = ["ten_a", "ten_b", "ten_c"] as const;
const BINDINGS = [
  { server: "pg-a:5432", database: "a" },
  { server: "pg-b:5432", database: "b" },
  { server: "pg-a:5432", database: "other" },
];

const tenant: fc.Arbitrary<TenantRecord> = fc
  .record({
    id: fc.constantFrom(...IDS),
    status: fc.constantFrom("active" as const, "suspended" as const),
    binding: fc.option(fc.constantFrom(...BINDINGS), { nil: null }),
    upstreams: fc.constantFrom<string[][]>([], ["http://127.0.0.1:1"]),
    apiAccess: fc.constantFrom(true, false, undefined),
    allowedIps: fc.constantFrom<string[][]>([], ["10.0.0.0/8"]),
  })
  .map(
    (t): TenantRecord => ({
      id: t.id,
      slug: t.id.slice(4),
      status: t.status,
      plan: "free",
      binding: t.binding,
      upstreams: t.upstreams,
      limits: { requestsPerSecond: null, burst: null, monthlyRequests: null, concurrency: null, maxBodyBytes: null },
      features: t.apiAccess === undefined ? ({} as Record<string, boolean>) : { apiAccess: t.apiAccess },
      settings: { allowedIps: t.allowedIps, branding: {} },
    }),
  );

const key: fc.Arbitrary<KeyOutcome> = fc.oneof(
  fc.constant({ presented: false } as const),
  fc.record({
    presented: fc.constant(true as const),
    ok: fc.constant(true as const),
    keyId: fc.constantFrom("key_1", "key_2"),
    tenantId: fc.constantFrom(...IDS),
    tenant: fc.option(tenant, { nil: null }),
    binding: fc.option(fc.constantFrom(...BINDINGS), { nil: null }),
  }),
  fc.record({
    presented: fc.constant(true as const),
    ok: fc.constant(false as const),
    code: fc.constantFrom("key_malformed", "key_unknown", "key_expired", "key_revoked", "unavailable") as fc.Arbitrary<
      "key_malformed" | "key_unknown" | "key_expired" | "key_revoked" | "unavailable"
    >,
  }),
);

const session: fc.Arbitrary<SessionOutcome> = fc.oneof(
  fc.constant({ presented: false } as const),
  fc.record({
    presented: fc.constant(true as const),
    ok: fc.constant(true as const),
    tenantId: fc.constantFrom(...IDS),
    userId: fc.constantFrom("usr_1", "usr_2"),
    sessionId: fc.constant("ses_1"),
  }),
  fc.record({
    presented: fc.constant(true as const),
    ok: fc.constant(false as const),
    code: fc.constantFrom("session_invalid", "unavailable") as fc.Arbitrary<"session_invalid" | "unavailable">,
  }),
);

const input: fc.Arbitrary<DecisionInput> = fc.record({
  host: fc.oneof(
    fc.constant({ kind: "api", ok: true } as const),
    fc.record({ kind: fc.constant("tenant" as const), ok: fc.constant(true as const), tenant: fc.option(tenant, { nil: null }) }),
    fc.record({
      kind: fc.constantFrom("tenant" as const, "api" as const),
      ok: fc.constant(false as const),
      code: fc.constant("unavailable" as const),
    }),
  ),
  key,
  session,
  credentialError: fc.constantFrom(null, "ambiguous_credentials" as const, "key_in_query" as const),
  keyMisplaced: fc.constantFrom(false, false, true),
  clientIp: fc.constantFrom("127.0.0.1", "10.1.2.3", "::ffff:10.1.2.3", "not-an-ip"),
});

describe("decide", () => {
  it("allows only a request whose every credential names the one active, bound tenant it is routed to", () => {
    fc.assert(
      fc.property(input, (i) => {
        const d = decide(i);
        if (!d.allow) {
          expect(REFUSALS[d.reason]).toBeDefined();
          return;
        }
        const t = d.tenant;
        expect(i.credentialError).toBeNull();
        expect(i.keyMisplaced).toBe(false);
        expect(i.host.ok).toBe(true);
        if (i.host.ok && i.host.kind === "tenant") expect(i.host.tenant?.id).toBe(t.id);
        if (i.host.kind === "api") expect(i.key.presented).toBe(true);
        if (i.key.presented) {
          expect(i.key.ok).toBe(true);
          if (i.key.ok) {
            expect(i.key.tenantId).toBe(t.id);
            expect(sameBinding(i.key.binding, t.binding)).toBe(true);
            expect(d.auth).toBe("api-key");
            expect(d.keyId).toBe(i.key.keyId);
          }
          expect(t.features.apiAccess).not.toBe(false);
        } else expect(d.keyId).toBeUndefined();
        if (i.session.presented) {
          expect(i.session.ok).toBe(true);
          if (i.session.ok) {
            expect(i.session.tenantId).toBe(t.id);
            expect(d.userId).toBe(i.session.userId);
          }
        } else expect(d.userId).toBeUndefined();
        expect(t.status).toBe("active");
        expect(t.binding).not.toBeNull();
        expect(t.upstreams.length).toBeGreaterThan(0);
        expect(ipAllowed(t, i.clientIp)).toBe(true);
      }),
      { numRuns: 5_000 },
    );
  });

  it("names every invalid key by its own reason, and all of them share one public answer", () => {
    fc.assert(
      fc.property(input, (i) => {
        if (i.credentialError !== null || !i.host.ok) return;
        if (i.host.kind === "tenant" && i.host.tenant === null) return;
        const d = decide(i);
        if (i.key.presented && !i.key.ok) {
          expect(d.allow).toBe(false);
          if (!d.allow) expect(d.reason).toBe(i.key.code === "unavailable" ? "resolution_unavailable" : i.key.code);
        }
        if (!d.allow && d.reason.startsWith("key_")) {
          expect(REFUSALS[d.reason].code).toBe("invalid_api_key");
          expect(REFUSALS[d.reason].status).toBe(401);
        }
      }),
      { numRuns: 2_000 },
    );
  });

  it("refuses a misplaced key however valid: as the key alone would be refused, else misplaced_key", () => {
    fc.assert(
      fc.property(input, (i) => {
        if (!i.keyMisplaced || !i.key.presented) return;
        const d = decide(i);
        expect(d.allow).toBe(false);
        const placed = decide({ ...i, keyMisplaced: false });
        // Whatever refuses the key where keys belong refuses it first; only a key that
        // would be taken there is refused for where it was found.
        if (!placed.allow && placed.reason.startsWith("key_")) expect(d).toEqual(placed);
        if (placed.allow) expect(d).toMatchObject({ allow: false, reason: "misplaced_key", tenantId: placed.tenant.id });
      }),
      { numRuns: 2_000 },
    );
  });

  it("refuses another tenant's key on a tenant hostname even when its tenant record was not loaded", () => {
    const [a] = fc.sample(tenant, { numRuns: 1, seed: 1 }) as [TenantRecord];
    const host = { kind: "tenant" as const, ok: true as const, tenant: { ...a, id: "ten_a" } };
    const d = decide({
      host,
      key: { presented: true, ok: true, keyId: "key_1", tenantId: "ten_b", tenant: null, binding: BINDINGS[1]! },
      session: { presented: false },
      credentialError: null,
      clientIp: "127.0.0.1",
    });
    expect(d).toEqual({ allow: false, reason: "key_other_tenant", tenantId: "ten_a" });
  });
});
