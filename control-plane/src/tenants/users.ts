/**
 * A tenant's users and their sessions: a user is an email unique within the tenant;
 * a session is a signed cookie token (shared `signSession`) whose row can be revoked.
 */
import { and, eq } from "drizzle-orm";
import { newId, signSession } from "@portcullis/shared";
import { nextVersion } from "../db/client.ts";
import { uniqueViolation } from "../db/errors.ts";
import { sessions, users } from "../db/schema/index.ts";
import { fail, type Outcome, ok } from "./outcome.ts";
import type { TenantStore } from "./store.ts";
import { findTenant } from "./views.ts";

export async function createUser(s: TenantStore, ref: string, input: { email: string }) {
  const row = await findTenant(s, ref);
  if (!row) return fail<never>("not_found");
  const email = input.email.trim().toLowerCase();
  const id = newId("user");
  try {
    await s.db.insert(users).values({ id, tenantId: row.id, email });
  } catch (error) {
    if (uniqueViolation(error)) return fail<never>("email_taken");
    throw error;
  }
  return ok({ id, tenantId: row.id, email });
}

export async function createSession(s: TenantStore, ref: string, userId: string) {
  const row = await findTenant(s, ref);
  if (!row) return fail<never>("not_found");
  const [user] = await s.db
    .select()
    .from(users)
    .where(and(eq(users.id, userId), eq(users.tenantId, row.id)));
  if (!user) return fail<never>("not_found");
  const id = newId("session");
  const expiresAt = new Date(s.now().getTime() + s.config.sessionTtlSeconds * 1000);
  await s.db.insert(sessions).values({
    id,
    tenantId: row.id,
    userId: user.id,
    expiresAt,
    version: await nextVersion(s.db),
  });
  await s.publisher.publish({ sessions: [id] });
  const token = signSession(
    { sid: id, tid: row.id, uid: user.id, exp: Math.floor(expiresAt.getTime() / 1000) },
    s.config.sessionSecret,
  );
  return ok({ id, token, cookie: `${s.config.sessionCookie}=${token}`, expiresAt: expiresAt.toISOString() });
}

export async function revokeSession(s: TenantStore, ref: string, sessionId: string): Promise<Outcome<null>> {
  const row = await findTenant(s, ref);
  if (!row) return fail("not_found");
  const [session] = await s.db
    .select()
    .from(sessions)
    .where(and(eq(sessions.id, sessionId), eq(sessions.tenantId, row.id)));
  if (!session) return fail("not_found");
  await s.db
    .update(sessions)
    .set({ revokedAt: s.now(), version: await nextVersion(s.db) })
    .where(eq(sessions.id, session.id));
  await s.publisher.publish({ sessions: [session.id] });
  return ok(null);
}
