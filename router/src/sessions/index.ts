/**
 * Session cookies: the token's MAC and expiry are checked locally; whether it was
 * revoked comes from the session cache (invalidated on revocation, like keys).
 */
import { verifySessionToken } from "@portcullis/shared";
import type { SessionOutcome } from "../policy/index.ts";
import type { Resolver } from "../tenant-cache/index.ts";

const NOT_PRESENTED: SessionOutcome = { presented: false };
const INVALID: SessionOutcome = { presented: true, ok: false, code: "session_invalid" };

/** The session cookie's value(s) in a Cookie header (RFC 6265 §4.2.1). */
export function findSessionCookies(cookieHeader: string | undefined, name: string): string[] {
  if (cookieHeader === undefined || !cookieHeader.includes(name)) return [];
  const out: string[] = [];
  for (const part of cookieHeader.split(";")) {
    const eq = part.indexOf("=");
    if (eq === -1) continue;
    if (part.slice(0, eq).trim() === name) out.push(part.slice(eq + 1).trim());
  }
  return out;
}

/** The Cookie header without the session cookie (the token stays at the edge). */
export function withoutSessionCookie(cookieHeader: string, name: string): string {
  return cookieHeader
    .split(";")
    .filter((part) => {
      const eq = part.indexOf("=");
      return eq === -1 || part.slice(0, eq).trim() !== name;
    })
    .map((p) => p.trim())
    .join("; ");
}

export function verifySession(
  resolver: Resolver,
  cookieHeader: string | undefined,
  cookieName: string,
  secret: string,
  nowMs: number,
): SessionOutcome | Promise<SessionOutcome> {
  const values = findSessionCookies(cookieHeader, cookieName);
  if (values.length === 0) return NOT_PRESENTED;
  if (values.length > 1) return INVALID;
  const verified = verifySessionToken(values[0] as string, secret, Math.floor(nowMs / 1000));
  if (!verified.ok) return INVALID;
  const { claims } = verified;
  // Synchronous when the session's state is fresh in memory (the hot path).
  const cached = resolver.sessions.peek(claims.sid);
  if (cached !== undefined) return judge(cached.session, claims, nowMs);
  return resolver.session(claims.sid).then((state) => (state.ok ? judge(state.value.session, claims, nowMs) : UNAVAILABLE));
}

const UNAVAILABLE: SessionOutcome = { presented: true, ok: false, code: "unavailable" };

function judge(
  s: { tenantId: string; userId: string; revoked: boolean; expiresAt: number } | null,
  claims: { sid: string; tid: string; uid: string },
  nowMs: number,
): SessionOutcome {
  if (s === null || s.revoked || s.tenantId !== claims.tid || s.userId !== claims.uid || s.expiresAt <= nowMs) return INVALID;
  return { presented: true, ok: true, tenantId: claims.tid, userId: claims.uid, sessionId: claims.sid };
}
