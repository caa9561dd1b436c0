/**
 * What may be claimed as a custom domain, decided in one place for the admin API and
 * preflight (`portcullis apply`). Names go through the shared normalizer first, so
 * `Shop.Example.COM.`, `shop.example.com:443` and the Unicode and punycode spellings
 * of one IDN are one name everywhere.
 */
import { sql } from "drizzle-orm";
import { confusableSkeleton, isUnder, normalizeHostname } from "@portcullis/shared";
import type { Executor } from "../db/client.ts";

export type CustomHostnameCheck =
  | { ok: true; hostname: string }
  | { ok: false; code: "hostname_invalid" | "hostname_reserved"; detail: string };

export interface PlatformNames {
  platformDomain: string;
  apiHostname: string;
}

export function checkCustomHostname(input: string, platform: PlatformNames | null): CustomHostnameCheck {
  const n = normalizeHostname(input, { allowUnicode: true, allowPort: true });
  if (!n.ok) return { ok: false, code: "hostname_invalid", detail: `${JSON.stringify(input)}: ${n.code.replace(/_/g, " ")}` };
  // A single label (`localhost`, `intranet`) is not a public name anyone can prove control of.
  if (!n.hostname.includes(".")) {
    return {
      ok: false,
      code: "hostname_invalid",
      detail: `${JSON.stringify(input)}: a custom hostname needs at least two labels`,
    };
  }
  if (platform) {
    // Names under the platform domain are the platform's (tenants' branded subdomains);
    // the API hostname and anything under it route by key, never by Host.
    if (isUnder(n.hostname, platform.platformDomain)) {
      return {
        ok: false,
        code: "hostname_reserved",
        detail: `${n.hostname} is under the platform domain ${platform.platformDomain}`,
      };
    }
    if (isUnder(n.hostname, platform.apiHostname)) {
      return { ok: false, code: "hostname_reserved", detail: `${n.hostname} is the API hostname ${platform.apiHostname}` };
    }
  }
  return { ok: true, hostname: n.hostname };
}

const hasIdnLabel = (hostname: string) => hostname.startsWith("xn--") || hostname.includes(".xn--");

/**
 * Two different names that look alike. Only pairs where Unicode is involved count
 * (Unicode TR #39 "whole-script/mixed-script confusables"): `аcme.com` with a
 * Cyrillic а against `acme.com`. Pure-ASCII near-misses (`modern.com` and
 * `modem.com` share a skeleton) are distinct registrable domains whose owners each
 * proved control, so refusing them would only lock out a legitimate customer.
 */
export function confusableWith(hostname: string, other: string): boolean {
  if (hostname === other) return false;
  if (!hasIdnLabel(hostname) && !hasIdnLabel(other)) return false;
  return confusableSkeleton(hostname) === confusableSkeleton(other);
}

/**
 * Serialize claims of look-alike names for the rest of the transaction: two
 * simultaneous claims of `acme.com` and `аcme.com` (Cyrillic а) both see no look-alike
 * before either commits; with the skeleton locked, the second waits and sees the first.
 * (Identical names need no lock: the unique constraint settles those.) Skeletons are
 * locked in sorted order so two multi-name claims cannot deadlock.
 */
export async function lockSkeletons(tx: Executor, hostnamesToClaim: string[]): Promise<void> {
  const skeletons = [...new Set(hostnamesToClaim.map(confusableSkeleton))].sort();
  for (const skeleton of skeletons) {
    await tx.execute(sql`select pg_advisory_xact_lock(hashtext(${`portcullis:skeleton:${skeleton}`}))`);
  }
}
