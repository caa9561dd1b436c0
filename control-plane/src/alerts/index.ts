/**
 * Operator alerts: one JSON document POSTed to `ALERT_WEBHOOK_URL` (Slack-style
 * incoming webhooks, PagerDuty Events bridges, or anything that takes JSON). Sending
 * never throws: an unreachable webhook is reported as a value, so the caller's own
 * outcome (a failed domain, a preflight conflict) is never lost to it.
 */
import { request } from "undici";

export interface Alert {
  /** Stable machine-readable kind, e.g. `custom_domains_failed`, `preflight_conflicts`. */
  type: string;
  severity: "warning" | "critical";
  /** One human sentence, for chat-style receivers that show `text`. */
  text: string;
  time: string;
  [key: string]: unknown;
}

export type AlertResult = { ok: true; status: number } | { ok: false; code: "not_configured" | "send_failed"; detail: string };

export type AlertSender = (alert: Alert) => Promise<AlertResult>;

export function webhookAlerts(url: string | undefined, timeoutMs = 5_000): AlertSender {
  return async (alert) => {
    if (!url) return { ok: false, code: "not_configured", detail: "ALERT_WEBHOOK_URL is not set" };
    try {
      const res = await request(url, {
        method: "POST",
        headers: { "content-type": "application/json", "user-agent": "portcullis-alerts" },
        body: JSON.stringify({ source: "portcullis", ...alert }),
        headersTimeout: timeoutMs,
        bodyTimeout: timeoutMs,
      });
      await res.body.dump();
      if (res.statusCode >= 300) return { ok: false, code: "send_failed", detail: `webhook answered ${res.statusCode}` };
      return { ok: true, status: res.statusCode };
    } catch (error) {
      return { ok: false, code: "send_failed", detail: (error as Error).message };
    }
  };
}
