/**
 * DNS TXT verification of custom domains. The record is
 * `_portcullis-verify.<hostname>` with value `portcullis-verify=<token>`; the token
 * is random per (tenant, hostname) claim, so a record published for one hostname or
 * tenant proves nothing for another.
 */
import { Resolver } from "node:dns/promises";

export const VERIFY_LABEL = "_portcullis-verify";
export const verificationName = (hostname: string) => `${VERIFY_LABEL}.${hostname}`;
export const verificationValue = (token: string) => `portcullis-verify=${token}`;

export type TxtLookup = (
  name: string,
) => Promise<{ ok: true; records: string[] } | { ok: false; code: "not_found" | "dns_error" }>;

export function dnsTxtLookup(servers: string[], timeoutMs = 2_000): TxtLookup {
  const resolver = new Resolver({ timeout: timeoutMs, tries: 2 });
  if (servers.length > 0) resolver.setServers(servers);
  return async (name) => {
    try {
      const chunks = await resolver.resolveTxt(name);
      return { ok: true, records: chunks.map((parts) => parts.join("")) };
    } catch (error) {
      const code = (error as { code?: string }).code;
      return { ok: false, code: code === "ENOTFOUND" || code === "ENODATA" ? "not_found" : "dns_error" };
    }
  };
}
