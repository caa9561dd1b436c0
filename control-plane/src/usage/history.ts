/**
 * `GET /v1/tenants/:tenant/usage/hourly?hours=`: a tenant's requests and refusals per
 * hour, for the console's charts. Counted from the audit trail (one row per decision,
 * an aggregated flood row standing for `count` refusals), not from metered usage,
 * which is kept per month only (usage/index.ts); hours with no decision are zeros.
 */
import { and, eq, gte, sql } from "drizzle-orm";
import type { Hono } from "hono";
import type { Env } from "../admin/app.ts";
import { adminError } from "../admin/errors.ts";
import { OPERATIONS as OP, route } from "../admin/operations.ts";
import { usageHourlyQuery } from "../admin/schemas.ts";
import type { Db } from "../db/client.ts";
import { auditEvents } from "../db/schema/index.ts";
import type { TenantService } from "../tenants/service.ts";

const HOUR = 3_600_000;

export async function hourlyDecisions(db: Db, tenantId: string, hours: number, now = Date.now()) {
  const end = Math.floor(now / HOUR) * HOUR + HOUR;
  const start = end - hours * HOUR;
  const bucket = sql<string>`date_trunc('hour', ${auditEvents.time})`;
  const rows = await db
    .select({
      hour: bucket,
      requests: sql<string>`coalesce(sum(${auditEvents.count}), 0)`,
      refused: sql<string>`coalesce(sum(${auditEvents.count}) filter (where ${auditEvents.decision} = 'refuse'), 0)`,
    })
    .from(auditEvents)
    .where(and(eq(auditEvents.tenantId, tenantId), gte(auditEvents.time, new Date(start))))
    .groupBy(bucket);
  const byHour = new Map(rows.map((r) => [new Date(r.hour).getTime(), r]));
  const out: { start: string; requests: number; refused: number }[] = [];
  for (let t = start; t < end; t += HOUR) {
    const r = byHour.get(t);
    out.push({ start: new Date(t).toISOString(), requests: Number(r?.requests ?? 0), refused: Number(r?.refused ?? 0) });
  }
  return out;
}

export function mountUsageHistoryRoute(app: Hono<Env>, deps: { db: Db; tenants: TenantService }): void {
  route(app, OP.usageHourly, async (c) => {
    const q = usageHourlyQuery.safeParse({ hours: c.req.query("hours") });
    if (!q.success) {
      return adminError(c, "validation_failed", q.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; "));
    }
    const tenant = await deps.tenants.find(c.req.param("tenant"));
    if (!tenant) return adminError(c, "not_found");
    return c.json({ hours: await hourlyDecisions(deps.db, tenant.id, q.data.hours) });
  });
}
