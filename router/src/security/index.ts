/**
 * Security signals: cross-tenant attempts — a request on one tenant's host with
 * another tenant's API key (`key_other_tenant`: from the key owner's side, a
 * domain of another tenant) or session (`session_other_tenant`). Each is counted
 * for both tenants (metrics, bounded labels) and, when ALERT_WEBHOOK_URL is set,
 * posted there as JSON — at most one alert per reason and target tenant per
 * `minIntervalMs`; the next alert says how many were suppressed meanwhile. Posting
 * happens off the request path with a bounded queue. Alerts never carry the key
 * or the session token (only key ids).
 */
import type { Logger } from "pino";
import { request } from "undici";
import type { RouterMetrics } from "../ops/index.ts";

export type CrossTenantReason = "key_other_tenant" | "session_other_tenant";

export interface CrossTenantAttempt {
  reason: CrossTenantReason;
  /** The tenant whose host was addressed. */
  tenantId: string;
  /** The tenant that owns the presented credential. */
  credentialTenantId: string | null;
  requestId: string;
  host: string;
  path: string;
  clientIp: string;
  keyId?: string;
  time: string;
}

export interface SecuritySignals {
  crossTenant(attempt: CrossTenantAttempt): void;
  flush(): Promise<void>;
}

const MAX_TRACKED = 10_000;
const MAX_QUEUED = 100;

export function createSecuritySignals(deps: {
  metrics: RouterMetrics;
  log: Logger;
  webhookUrl: string | undefined;
  minIntervalMs: number;
  now?: () => number;
}): SecuritySignals {
  const { metrics, log, webhookUrl, minIntervalMs } = deps;
  const now = deps.now ?? Date.now;
  const last = new Map<string, { at: number; suppressed: number }>();
  const inFlight = new Set<Promise<void>>();
  let lastFailureLog = 0;

  async function post(body: unknown): Promise<void> {
    try {
      const res = await request(webhookUrl as string, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(body),
        headersTimeout: 5_000,
        bodyTimeout: 5_000,
      });
      await res.body.dump();
      metrics.alerts.inc({ outcome: res.statusCode < 300 ? "sent" : "failed" });
    } catch (error) {
      metrics.alerts.inc({ outcome: "failed" });
      if (now() - lastFailureLog > 60_000) {
        lastFailureLog = now();
        log.warn({ err: error }, "security alert webhook failed");
      }
    }
  }

  return {
    crossTenant(a) {
      metrics.crossTenant.inc({ reason: a.reason, tenant: metrics.tenantLabel(a.tenantId), side: "target" });
      if (a.credentialTenantId) {
        metrics.crossTenant.inc({ reason: a.reason, tenant: metrics.tenantLabel(a.credentialTenantId), side: "credential" });
      }
      if (!webhookUrl) return;
      const key = `${a.reason}|${a.tenantId}`;
      const t = now();
      const seen = last.get(key);
      if (seen && t - seen.at < minIntervalMs) {
        seen.suppressed++;
        metrics.alerts.inc({ outcome: "suppressed" });
        return;
      }
      if (inFlight.size >= MAX_QUEUED) {
        metrics.alerts.inc({ outcome: "suppressed" });
        return;
      }
      const suppressed = seen?.suppressed ?? 0;
      if (!seen && last.size >= MAX_TRACKED) {
        // Forget the oldest entry (Map keeps insertion order): memory stays bounded.
        const oldest = last.keys().next().value;
        if (oldest !== undefined) last.delete(oldest);
      }
      last.delete(key);
      last.set(key, { at: t, suppressed: 0 });
      const body = { type: "cross_tenant_attempt", ...a, suppressedSinceLastAlert: suppressed };
      const p = post(body).finally(() => inFlight.delete(p));
      inFlight.add(p);
    },
    async flush() {
      await Promise.all([...inFlight]);
    },
  };
}
