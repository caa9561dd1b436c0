/**
 * branding: an allowed request is first given room for its audit event when audit
 * must not be lost (AUDIT_FAIL_MODE=closed: an allow that could not be audited is
 * not an allow); then the tenant's branding document at BRANDING_PATH on its own
 * hostnames is answered by the router itself (`branding/`).
 */
import { BRANDING_PATH, brandingJson } from "../branding/index.ts";
import type { Allowed, Exchange } from "./exchange.ts";
import { pathOnly } from "./runtime.ts";
import type { Outcome } from "./run.ts";

export function branding(x: Exchange): Outcome {
  const d = x.decision as Allowed;
  const { auditClosed, deps } = x.runtime;
  if (auditClosed) {
    if (!deps.audit.reserveAllow()) return x.refuse("audit_unavailable");
    x.auditReserved = true;
  }
  if (x.host.kind !== "tenant" || pathOnly(x.path) !== BRANDING_PATH) return undefined;
  const method = x.incoming.method;
  if (method !== "GET" && method !== "HEAD") return undefined;
  x.status = 200;
  return x.answer(
    x.c.body(brandingJson(d.tenant), 200, {
      "content-type": "application/json",
      "cache-control": "public, max-age=60",
      "x-request-id": x.requestId,
      ...(x.rateHeaders ?? {}),
    }),
  );
}
