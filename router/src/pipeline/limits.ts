/**
 * limits: the declared body size, then the tenant's (and the key's) rate, monthly
 * quota and concurrency (`limits/`: leased from the shared store, so a warm tenant is
 * admitted without a round trip). Admitted, the exchange holds a concurrency slot
 * until it ends and carries the rate headers to its response.
 */
import { declaredTooLarge, type LimitOutcome } from "../limits/index.ts";
import type { Allowed, Exchange } from "./exchange.ts";
import type { Outcome } from "./run.ts";

export function limits(x: Exchange): Outcome | Promise<Outcome> {
  const d = x.decision as Allowed;
  if (declaredTooLarge(d.tenant.limits.maxBodyBytes, x.incoming.headers["content-length"])) return x.refuse("body_too_large");
  const limiter = x.runtime.deps.limiter;
  if (limiter === undefined) return undefined;
  const keyLimits = d.keyId !== undefined && x.key.presented && x.key.ok ? x.key.limits : undefined;
  const limit = limiter.check(d.tenant, d.keyId, keyLimits ?? null);
  return limit instanceof Promise ? limit.then((l) => admitted(x, d, l)) : admitted(x, d, limit);
}

function admitted(x: Exchange, d: Allowed, limit: LimitOutcome): Outcome {
  if (!limit.ok) return x.refuse(limit.reason, limit.headers);
  if (d.tenant.limits.concurrency !== null) x.slot = d.tenant.id;
  x.rateHeaders = limit.headers;
  return undefined;
}
