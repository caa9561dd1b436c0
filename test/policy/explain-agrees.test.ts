/**
 * The control plane's explain call and the router decide alike. Each case is a
 * situation given as data (test/policy/situations.ts), written once as the records
 * the key service answers with. Explain reads them as it reads the database
 * (`ExplainRecords`); the router reads them through its resolver (memory → store →
 * key service) and its request path's own stages (resolve, credentials, decide), cold
 * and then warm. Both must reach the same decision, and explain must report the key's
 * limits the router would apply.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { type Decision, type KeyOutcome, MemoryStore, normalizeHostname, REFUSALS } from "@portcullis/shared";
import { explainFrom } from "../../control-plane/src/explain/index.ts";
import { credentials } from "../../router/src/pipeline/credentials.ts";
import { decide } from "../../router/src/pipeline/decide.ts";
import { type Exchange, NOT_PRESENTED, UNRESOLVED } from "../../router/src/pipeline/exchange.ts";
import { resolve } from "../../router/src/pipeline/resolve.ts";
import type { Stage } from "../../router/src/pipeline/run.ts";
import { Resolver } from "../../router/src/tenant-cache/index.ts";
import { API_HOSTNAME, COOKIE, NOW, SECRET, type Situation, situation, World } from "./situations.ts";

const STAGES: Stage[] = [resolve, credentials, decide];

/** One request through the router's resolve, credentials and decide stages. */
async function routerDecides(resolver: Resolver, w: World, s: Situation): Promise<{ decision: Decision; key: KeyOutcome }> {
  const rawHeaders = ["host", s.host];
  if (w.presented.key !== null) {
    rawHeaders.push(w.presented.header, w.presented.header === "authorization" ? `Bearer ${w.presented.key}` : w.presented.key);
  }
  const cookie = w.presented.token === null ? undefined : `theme=dark; ${COOKIE}=${w.presented.token}`;
  if (cookie !== undefined) rawHeaders.push("cookie", cookie);
  let decision: Decision | null = null;
  // A stand-in exchange: only what these three stages read and write.
  const x = {
    runtime: {
      deps: { config: { apiHostname: API_HOSTNAME, sessionCookie: COOKIE, sessionSecret: SECRET }, resolver },
      now: () => NOW,
    },
    incoming: { rawHeaders, headers: cookie === undefined ? {} : { cookie } },
    // As the guard stage leaves it: the normalized Host.
    hostname: (normalizeHostname(s.host) as { hostname: string }).hostname,
    path: "/",
    clientIp: s.ip,
    host: UNRESOLVED,
    extracted: { kind: "none" },
    key: NOT_PRESENTED,
    session: NOT_PRESENTED,
    decide(d: Decision) {
      decision = d;
      return undefined;
    },
  } as unknown as Exchange;
  for (const stage of STAGES) {
    const out = await stage(x);
    expect(out).toBeUndefined();
  }
  if (decision === null) throw new Error("the decide stage decided nothing");
  return { decision, key: x.key };
}

/** What explain answers for a decision, as the router decided it. */
function asExplained(d: Decision, key: KeyOutcome): Record<string, unknown> {
  if (!d.allow) {
    return {
      decision: "refuse",
      reason: d.reason,
      status: REFUSALS[d.reason].status,
      ...(d.tenantId ? { tenantId: d.tenantId } : {}),
    };
  }
  const t = d.tenant;
  return {
    decision: "allow",
    tenant: { id: t.id, slug: t.slug, status: t.status, plan: t.plan },
    auth: d.auth,
    ...(d.keyId ? { keyId: d.keyId } : {}),
    // As router/src/pipeline/limits.ts takes the key's own limits.
    ...(d.keyId && key.presented && key.ok ? { keyLimits: key.limits ?? null } : {}),
    ...(d.userId ? { userId: d.userId } : {}),
    binding: t.binding,
    upstreams: t.upstreams,
  };
}

const COMPARED = [
  "decision",
  "reason",
  "status",
  "tenantId",
  "tenant",
  "auth",
  "keyId",
  "keyLimits",
  "userId",
  "binding",
  "upstreams",
];

function compared(answer: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(COMPARED.filter((k) => answer[k] !== undefined).map((k) => [k, answer[k]]));
}

describe("explain and the router", () => {
  it("reach the same decision from the same records, cold and warm", async () => {
    const seen = new Set<string>();
    await fc.assert(
      fc.asyncProperty(situation, async (s) => {
        const w = new World(s);
        const explained = await explainFrom(
          { records: w.records(), apiHostname: API_HOSTNAME, sessionSecret: SECRET, now: () => NOW },
          {
            host: s.host,
            ip: s.ip,
            ...(w.presented.asked === null ? {} : { key: w.presented.asked }),
            ...(w.presented.token === null ? {} : { session: w.presented.token }),
          },
        );
        const resolver = new Resolver({ store: new MemoryStore({ now: () => NOW }), keyService: w.keyService(), now: () => NOW });
        const cold = await routerDecides(resolver, w, s);
        expect(compared(explained as Record<string, unknown>)).toEqual(asExplained(cold.decision, cold.key));
        // Warm: host, key, tenant and session now answered from memory.
        const warm = await routerDecides(resolver, w, s);
        expect(warm.decision).toEqual(cold.decision);
        seen.add(cold.decision.allow ? `allow:${cold.decision.auth}` : cold.decision.reason);
      }),
      { numRuns: 3_000 },
    );
    // The situations reach every outcome both sides can produce.
    for (const outcome of [
      "allow:hostname",
      "allow:api-key",
      "allow:session",
      "unknown_host",
      "key_missing",
      "key_malformed",
      "key_unknown",
      "key_revoked",
      "key_expired",
      "key_other_tenant",
      "api_access_disabled",
      "binding_missing",
      "binding_mismatch",
      "session_invalid",
      "session_other_tenant",
      "tenant_suspended",
      "no_upstream",
      "ip_not_allowed",
    ]) {
      expect(seen, outcome).toContain(outcome);
    }
  });

  it("a key's own limits reach explain as the router applies them", async () => {
    const s: Situation = {
      tenants: [
        { status: "active", binding: 0, upstreams: ["http://app-1.internal:8080"], apiAccess: true, allowedIps: [] },
        null,
      ],
      host: API_HOSTNAME,
      key: {
        kind: "known",
        tenantId: "ten_a",
        expiresAt: null,
        binding: "own",
        limits: { requestsPerSecond: 5, burst: 10 },
        asPrefix: false,
        header: "authorization",
      },
      session: { kind: "absent" },
      ip: "10.1.2.3",
    };
    const w = new World(s);
    const explained = await explainFrom(
      { records: w.records(), apiHostname: API_HOSTNAME, sessionSecret: SECRET, now: () => NOW },
      { host: s.host, ip: s.ip, key: w.presented.asked as string },
    );
    const resolver = new Resolver({ store: new MemoryStore({ now: () => NOW }), keyService: w.keyService(), now: () => NOW });
    const { decision, key } = await routerDecides(resolver, w, s);
    expect(decision).toMatchObject({ allow: true, auth: "api-key", keyId: "key_1" });
    expect(key).toMatchObject({ limits: { requestsPerSecond: 5, burst: 10 } });
    expect(explained).toMatchObject({ decision: "allow", keyId: "key_1", keyLimits: { requestsPerSecond: 5, burst: 10 } });
  });
});
