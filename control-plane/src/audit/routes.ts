/**
 * The operator's view of the trail (contract: "Admin API"):
 *   GET /v1/tenants/:tenant/audit   one tenant's decisions
 *   GET /v1/audit                   every decision, including refusals that matched no tenant
 *   GET /v1/changes, GET /v1/tenants/:tenant/changes   configuration changes
 * Filters `decision`, `reason`, `since`, `until`, `requestId`, `limit` (≤ 1000, default
 * 100); newest first; `next` is an opaque cursor for the following page
 * (`?cursor=<next>`), keyset-paginated on (time, id) so pages stay stable while
 * events arrive.
 */
import { and, desc, eq, gte, lt, lte, or, type SQL } from "drizzle-orm";
import type { Hono } from "hono";
import type { Env } from "../admin/app.ts";
import { adminError } from "../admin/errors.ts";
import { OPERATIONS as OP, route } from "../admin/operations.ts";
import { type AuditQuery, auditQuery } from "../admin/schemas.ts";
import type { Db } from "../db/client.ts";
import { adminChanges, auditEvents } from "../db/schema/index.ts";
import type { TenantService } from "../tenants/service.ts";

const Query = auditQuery;
type Query = AuditQuery;

interface Cursor {
  time: Date;
  id: number;
}

function encodeCursor(time: Date, id: number): string {
  return Buffer.from(JSON.stringify([time.toISOString(), id])).toString("base64url");
}

function decodeCursor(value: string): Cursor | null {
  try {
    const [time, id] = JSON.parse(Buffer.from(value, "base64url").toString("utf8")) as [unknown, unknown];
    if (typeof time !== "string" || typeof id !== "number" || !Number.isSafeInteger(id)) return null;
    const t = new Date(time);
    return Number.isNaN(t.getTime()) ? null : { time: t, id };
  } catch {
    return null;
  }
}

type Parsed = { ok: true; query: Query; cursor: Cursor | null } | { ok: false; detail: string };

function parse(raw: Record<string, string>): Parsed {
  const parsed = Query.safeParse(raw);
  if (!parsed.success) {
    return { ok: false, detail: parsed.error.issues.map((i) => `${i.path.join(".") || "query"}: ${i.message}`).join("; ") };
  }
  const cursor = parsed.data.cursor === undefined ? null : decodeCursor(parsed.data.cursor);
  if (parsed.data.cursor !== undefined && cursor === null) return { ok: false, detail: "cursor: not a cursor from this API" };
  return { ok: true, query: parsed.data, cursor };
}

export interface AuditEventView {
  time: string;
  requestId: string;
  decision: string;
  reason: string;
  tenantId: string | null;
  host: string;
  method: string;
  path: string;
  credential: string;
  keyId?: string;
  userId?: string;
  clientIp: string;
  status: number;
  /** An aggregate of refusals under a flood: how many refusals this event stands for. */
  count?: number;
}

/** A stored audit event as the API shows it (the live console view adds its id). */
export function auditEventView(r: typeof auditEvents.$inferSelect): AuditEventView {
  const e: AuditEventView = {
    time: r.time.toISOString(),
    requestId: r.requestId,
    decision: r.decision,
    reason: r.reason,
    tenantId: r.tenantId,
    host: r.host,
    method: r.method,
    path: r.path,
    credential: r.credential,
    clientIp: r.clientIp,
    status: r.status,
  };
  if (r.keyId) e.keyId = r.keyId;
  if (r.userId) e.userId = r.userId;
  if (r.count !== 1) e.count = r.count;
  return e;
}

export async function listAuditEvents(
  db: Db,
  q: Query,
  cursor: Cursor | null,
  tenantId?: string,
): Promise<{ events: AuditEventView[]; next?: string }> {
  const where: (SQL | undefined)[] = [];
  if (tenantId !== undefined) where.push(eq(auditEvents.tenantId, tenantId));
  if (q.decision) where.push(eq(auditEvents.decision, q.decision));
  if (q.reason) where.push(eq(auditEvents.reason, q.reason));
  if (q.requestId) where.push(eq(auditEvents.requestId, q.requestId));
  if (q.since) where.push(gte(auditEvents.time, new Date(q.since)));
  if (q.until) where.push(lte(auditEvents.time, new Date(q.until)));
  if (cursor) {
    where.push(or(lt(auditEvents.time, cursor.time), and(eq(auditEvents.time, cursor.time), lt(auditEvents.id, cursor.id))));
  }
  const rows = await db
    .select()
    .from(auditEvents)
    .where(and(...where))
    .orderBy(desc(auditEvents.time), desc(auditEvents.id))
    .limit(q.limit + 1);
  const page = rows.slice(0, q.limit);
  const events = page.map(auditEventView);
  const last = page.at(-1);
  return rows.length > q.limit && last ? { events, next: encodeCursor(last.time, last.id) } : { events };
}

export async function listChanges(db: Db, q: Query, cursor: Cursor | null, tenantId?: string) {
  const where: (SQL | undefined)[] = [];
  if (tenantId !== undefined) where.push(eq(adminChanges.tenantId, tenantId));
  if (q.action) where.push(eq(adminChanges.action, q.action));
  if (q.since) where.push(gte(adminChanges.time, new Date(q.since)));
  if (q.until) where.push(lte(adminChanges.time, new Date(q.until)));
  if (cursor) {
    where.push(or(lt(adminChanges.time, cursor.time), and(eq(adminChanges.time, cursor.time), lt(adminChanges.id, cursor.id))));
  }
  const rows = await db
    .select()
    .from(adminChanges)
    .where(and(...where))
    .orderBy(desc(adminChanges.time), desc(adminChanges.id))
    .limit(q.limit + 1);
  const page = rows.slice(0, q.limit);
  const changes = page.map((r) => ({
    time: r.time.toISOString(),
    actor: r.actor,
    requestId: r.requestId,
    action: r.action,
    tenantId: r.tenantId,
    target: r.target,
    before: r.before,
    after: r.after,
  }));
  const last = page.at(-1);
  return rows.length > q.limit && last ? { changes, next: encodeCursor(last.time, last.id) } : { changes };
}

export function mountAuditRoutes(app: Hono<Env>, deps: { db: Db; tenants: TenantService }) {
  const { db, tenants } = deps;
  const eventsOnly = (q: Query) => q.action === undefined;
  const changesOnly = (q: Query) => q.decision === undefined && q.reason === undefined && q.requestId === undefined;

  route(app, OP.audit, async (c) => {
    const p = parse(c.req.query());
    if (!p.ok || !eventsOnly(p.query)) return adminError(c, "validation_failed", p.ok ? "action: not an audit filter" : p.detail);
    return c.json(await listAuditEvents(db, p.query, p.cursor));
  });
  route(app, OP.tenantAudit, async (c) => {
    const p = parse(c.req.query());
    if (!p.ok || !eventsOnly(p.query)) return adminError(c, "validation_failed", p.ok ? "action: not an audit filter" : p.detail);
    const row = await tenants.find(c.req.param("tenant"));
    if (!row) return adminError(c, "not_found");
    return c.json(await listAuditEvents(db, p.query, p.cursor, row.id));
  });
  route(app, OP.changes, async (c) => {
    const p = parse(c.req.query());
    if (!p.ok || !changesOnly(p.query)) return adminError(c, "validation_failed", p.ok ? "not a change filter" : p.detail);
    return c.json(await listChanges(db, p.query, p.cursor));
  });
  route(app, OP.tenantChanges, async (c) => {
    const p = parse(c.req.query());
    if (!p.ok || !changesOnly(p.query)) return adminError(c, "validation_failed", p.ok ? "not a change filter" : p.detail);
    // A deleted tenant's history stays readable by id.
    const ref = c.req.param("tenant");
    const row = await tenants.find(ref);
    if (!row && !ref.startsWith("ten_")) return adminError(c, "not_found");
    return c.json(await listChanges(db, p.query, p.cursor, row?.id ?? ref));
  });
}
