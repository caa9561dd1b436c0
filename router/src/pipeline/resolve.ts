/**
 * resolve: the exact Host → its tenant (memory → Redis → key service;
 * `tenant-cache/`), or the API hostname. What is not found is an outcome for
 * `decide`, not a refusal here.
 */
import type { HostOutcome } from "../policy/index.ts";
import { type Exchange, UNRESOLVED } from "./exchange.ts";
import type { Outcome } from "./run.ts";

const API_HOST: HostOutcome = { kind: "api", ok: true };

export function resolve(x: Exchange): Outcome | Promise<Outcome> {
  const { config, resolver } = x.runtime.deps;
  if (x.hostname === config.apiHostname) {
    x.host = API_HOST;
    return undefined;
  }
  const hit = resolver.peekHost(x.hostname);
  if (hit !== undefined) {
    x.host = { kind: "tenant", ok: true, tenant: hit };
    return undefined;
  }
  return resolver.resolveHost(x.hostname).then((lookup) => {
    x.host = lookup.ok ? { kind: "tenant", ok: true, tenant: lookup.tenant } : UNRESOLVED;
    return undefined;
  });
}
