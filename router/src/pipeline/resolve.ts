/**
 * resolve: the exact Host → its tenant (memory → Redis → key service;
 * `tenant-cache/`), or the API hostname. What is not found is an outcome for
 * `decide`, not a refusal here.
 */
import { API_HOST, tenantHost } from "@portcullis/shared";
import { type Exchange, UNRESOLVED } from "./exchange.ts";
import type { Outcome } from "./run.ts";

export function resolve(x: Exchange): Outcome | Promise<Outcome> {
  const { config, resolver } = x.runtime.deps;
  if (x.hostname === config.apiHostname) {
    x.host = API_HOST;
    return undefined;
  }
  const hit = resolver.peekHost(x.hostname);
  if (hit !== undefined) {
    x.host = tenantHost(hit);
    return undefined;
  }
  return resolver.resolveHost(x.hostname).then((lookup) => {
    x.host = lookup.ok ? tenantHost(lookup.tenant) : UNRESOLVED;
    return undefined;
  });
}
