/**
 * What `npm run faults` checks on every answer, shared by the load process and the
 * harness's own probes: a 2xx must come from the upstream of the tenant the request
 * named (by Host or by API key) with a valid context signature; anything else must be
 * a refusal (its JSON body and one of its status codes, docs/errors.md). Plus the
 * statistics the report is made of.
 */

/** Status codes a refusal may have (the refusals table, shared/src/errors). */
export const CONTRACT_STATUSES = new Set([400, 401, 403, 404, 421, 429, 502, 503, 504]);

/** One answer (or failure) as the report sees it. */
export interface Sample {
  /** Load-process sequence number (or -1 for a probe). */
  seq: number;
  /** Lane name (`host:alpha`, `key:bravo#1`, …) or probe name. */
  lane: string;
  /** Index of the router it was sent to. */
  router: number;
  /** Epoch ms when it was sent. */
  t: number;
  /** ms until the whole answer was read (or the error). */
  ms: number;
  status: number;
  /** ok: correct 2xx; wrong: 2xx naming another tenant; refusal: a contract refusal; bad: neither; error: no answer. */
  cls: "ok" | "wrong" | "refusal" | "bad" | "error";
  /** Refusal code, error code, or what was wrong. */
  code: string;
  /** The router's request id (x-request-id), when it answered. */
  rid: string;
  /** The upstream app that answered a 2xx. */
  app: string;
  /** Delay asked of the upstream (ms; 0: none): such answers are left out of latency figures. */
  delay: number;
}

export interface Expected {
  tenantId: string;
  slug: string;
}

/** Classifies an HTTP answer for a request that should reach `expected`'s upstream. */
export function classify(
  expected: Expected,
  status: number,
  body: string,
  headers: Record<string, string | string[] | undefined>,
): Pick<Sample, "cls" | "code" | "rid" | "app"> {
  const ridHeader = headers["x-request-id"];
  const rid = typeof ridHeader === "string" ? ridHeader : "";
  if (status >= 200 && status < 300) {
    let echo: { app?: unknown; signatureValid?: unknown; context?: Record<string, unknown> };
    try {
      echo = JSON.parse(body);
    } catch {
      return { cls: "bad", code: "2xx_not_echo", rid, app: "" };
    }
    const app = typeof echo.app === "string" ? echo.app : "";
    const ctx = echo.context ?? {};
    const id = ctx["x-tenant-id"];
    const slug = ctx["x-tenant-slug"];
    if (id !== expected.tenantId || slug !== expected.slug) return { cls: "wrong", code: `got:${String(slug)}`, rid, app };
    if (echo.signatureValid !== true) return { cls: "bad", code: "2xx_bad_signature", rid, app };
    return { cls: "ok", code: "", rid, app };
  }
  if (!CONTRACT_STATUSES.has(status)) return { cls: "bad", code: `status_${status}`, rid, app: "" };
  try {
    const parsed = JSON.parse(body) as { error?: { code?: unknown; message?: unknown; requestId?: unknown } };
    const e = parsed.error;
    if (e && typeof e.code === "string" && typeof e.message === "string" && typeof e.requestId === "string")
      return { cls: "refusal", code: e.code, rid: rid || e.requestId, app: "" };
  } catch {}
  return { cls: "bad", code: `status_${status}_not_json_refusal`, rid, app: "" };
}

/** Percentile (nearest rank) of unsorted values; NaN when empty. */
export function percentile(values: number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = Float64Array.from(values).sort();
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank] as number;
}

export interface Latency {
  n: number;
  p50: number;
  p95: number;
  p99: number;
  max: number;
}

export function latency(samples: Sample[]): Latency {
  const ms = samples.map((s) => s.ms);
  return {
    n: ms.length,
    p50: percentile(ms, 50),
    p95: percentile(ms, 95),
    p99: percentile(ms, 99),
    max: ms.length === 0 ? Number.NaN : Math.max(...ms),
  };
}

/** `12.3` / `1,234` / `–` for a latency in ms. */
export function fmtMs(ms: number): string {
  if (!Number.isFinite(ms)) return "–";
  if (ms >= 1000) return Math.round(ms).toLocaleString("en-US");
  if (ms >= 100) return ms.toFixed(0);
  return ms.toFixed(1);
}

/** Counts of each class and code, for the notes: `refusal resolution_unavailable ×12`. */
export function tally(samples: Sample[], filter: (s: Sample) => boolean = () => true): Map<string, number> {
  const counts = new Map<string, number>();
  for (const s of samples) {
    if (!filter(s)) continue;
    const key = s.cls === "ok" ? "ok" : `${s.cls} ${s.status || ""}${s.code ? ` ${s.code}` : ""}`.replace(/\s+/g, " ").trim();
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  return counts;
}

export function tallyText(counts: Map<string, number>): string {
  return [...counts.entries()]
    .sort((a, b) => b[1] - a[1])
    .map(([k, n]) => `${k} ×${n}`)
    .join(", ");
}
