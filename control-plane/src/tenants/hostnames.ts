/**
 * A tenant's hostnames: its platform subdomain, registered verified at creation, and
 * custom hostnames, added pending, verified by a DNS TXT record
 * (control-plane/src/domains/verify.ts) and refused when they look like another
 * tenant's (control-plane/src/domains/hostnames.ts).
 */
import { randomBytes } from "node:crypto";
import { and, asc, eq } from "drizzle-orm";
import { confusableSkeleton, newId, normalizeHostname } from "@portcullis/shared";
import { type Executor, nextVersion } from "../db/client.ts";
import { uniqueViolation } from "../db/errors.ts";
import { hostnames } from "../db/schema/index.ts";
import { checkCustomHostname, confusableWith, lockSkeletons } from "../domains/hostnames.ts";
import { verificationName, verificationValue } from "../domains/verify.ts";
import { fail, type Outcome, ok } from "./outcome.ts";
import type { TenantStore } from "./store.ts";
import { findTenant } from "./views.ts";

/**
 * A tenant's branded subdomain: registered and verified when the tenant is created
 * (the platform owns the name), by the admin API and by `portcullis apply` alike.
 */
export async function insertPlatformHostname(tx: Executor, tenantId: string, subdomain: string, version: number, now: Date) {
  await tx.insert(hostnames).values({
    id: newId("hostname"),
    tenantId,
    hostname: subdomain,
    kind: "platform",
    status: "verified",
    verificationToken: randomBytes(16).toString("hex"),
    skeleton: confusableSkeleton(subdomain),
    verifiedAt: now,
    version,
  });
}

/** The normalized form of a custom hostname, or why it cannot be one. */
export function normalizeCustomHostname(s: TenantStore, input: string): Outcome<string> {
  const checked = checkCustomHostname(input, s.config);
  return checked.ok ? ok(checked.hostname) : fail(checked.code, checked.detail);
}

export async function addHostname(s: TenantStore, ref: string, input: string) {
  const name = normalizeCustomHostname(s, input);
  if (!name.ok) return name;
  const hostname = name.value;
  const skeleton = confusableSkeleton(hostname);
  const token = randomBytes(20).toString("hex");
  try {
    const result = await s.db.transaction(async (tx) => {
      const row = await findTenant(s, ref, tx);
      if (!row) return { code: "not_found" as const };
      await lockSkeletons(tx, [hostname]);
      const lookalikes = await tx
        .select({ hostname: hostnames.hostname, tenantId: hostnames.tenantId })
        .from(hostnames)
        .where(eq(hostnames.skeleton, skeleton));
      // A tenant may own look-alikes of its own names; another tenant's is a homoglyph attack.
      const confusable = lookalikes.find((l) => l.tenantId !== row.id && confusableWith(hostname, l.hostname));
      if (confusable) return { code: "hostname_confusable" as const, detail: confusable.hostname };
      await tx.insert(hostnames).values({
        id: newId("hostname"),
        tenantId: row.id,
        hostname,
        kind: "custom",
        status: "pending",
        verificationToken: token,
        skeleton,
        version: await nextVersion(tx),
      });
      return { code: "ok" as const, tenantId: row.id };
    });
    if (result.code !== "ok") return fail(result.code, "detail" in result ? result.detail : undefined);
    await s.publisher.publish({ hosts: [hostname] });
    return ok({
      hostname,
      status: "pending" as const,
      verification: { type: "dns-txt" as const, name: verificationName(hostname), value: verificationValue(token) },
    });
  } catch (error) {
    if (uniqueViolation(error)) return fail("hostname_taken", hostname);
    throw error;
  }
}

/** A tenant's hostnames with the TXT record each custom one is verified by, and when it was checked. */
export async function listHostnames(s: TenantStore, ref: string) {
  const row = await findTenant(s, ref);
  if (!row) return fail<never>("not_found");
  const rows = await s.db
    .select()
    .from(hostnames)
    .where(eq(hostnames.tenantId, row.id))
    .orderBy(asc(hostnames.createdAt), asc(hostnames.hostname));
  const iso = (d: Date | null) => d?.toISOString() ?? null;
  return ok(
    rows.map((h) => ({
      hostname: h.hostname,
      kind: h.kind,
      status: h.status,
      verification:
        h.kind === "custom"
          ? {
              type: "dns-txt" as const,
              name: verificationName(h.hostname),
              value: verificationValue(h.verificationToken),
            }
          : null,
      createdAt: h.createdAt.toISOString(),
      verifiedAt: iso(h.verifiedAt),
      lastCheckedAt: iso(h.lastCheckedAt),
      missingSince: iso(h.missingSince),
    })),
  );
}

async function ownedHostname(s: TenantStore, ref: string, input: string, executor: Executor = s.db) {
  const row = await findTenant(s, ref, executor);
  if (!row) return null;
  const n = normalizeHostname(input, { allowUnicode: true, allowPort: true });
  if (!n.ok) return null;
  const [host] = await executor
    .select()
    .from(hostnames)
    .where(and(eq(hostnames.tenantId, row.id), eq(hostnames.hostname, n.hostname)));
  return host ? { tenant: row, host } : null;
}

export async function verifyHostname(
  s: TenantStore,
  ref: string,
  input: string,
): Promise<Outcome<{ hostname: string; status: "verified" }>> {
  const found = await ownedHostname(s, ref, input);
  if (!found) return fail("not_found");
  const { host } = found;
  if (host.kind === "platform") return ok({ hostname: host.hostname, status: "verified" });
  const answer = await s.txt(verificationName(host.hostname));
  const expected = verificationValue(host.verificationToken);
  if (!answer.ok) return fail("verification_failed", answer.code === "not_found" ? "no TXT record found" : "DNS lookup failed");
  if (!answer.records.includes(expected)) return fail("verification_failed", "the TXT record does not hold the expected value");
  await s.db
    .update(hostnames)
    .set({
      status: "verified",
      verifiedAt: s.now(),
      lastCheckedAt: s.now(),
      missingSince: null,
      version: await nextVersion(s.db),
    })
    .where(eq(hostnames.id, host.id));
  await s.publisher.publish({ hosts: [host.hostname] });
  return ok({ hostname: host.hostname, status: "verified" });
}

export async function deleteHostname(s: TenantStore, ref: string, input: string): Promise<Outcome<null>> {
  const found = await ownedHostname(s, ref, input);
  if (!found) return fail("not_found");
  if (found.host.kind === "platform") return fail("platform_hostname");
  await s.db.delete(hostnames).where(eq(hostnames.id, found.host.id));
  await s.publisher.publish({ hosts: [found.host.hostname] });
  return ok(null);
}
