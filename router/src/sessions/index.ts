/**
 * Session cookies: the token's MAC and expiry are checked locally; whether it was
 * revoked comes from the session cache (invalidated on revocation, like keys).
 */
import { judgeSession, SESSION_INVALID, SESSION_UNAVAILABLE, sessionClaims } from "@portcullis/shared";
import type { SessionOutcome } from "@portcullis/shared";
import type { Resolver } from "../tenant-cache/index.ts";

const NOT_PRESENTED: SessionOutcome = { presented: false };

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
  if (values.length > 1) return SESSION_INVALID;
  // The token's MAC and expiry, then the session's state: shared/src/policy/outcomes.ts.
  const claims = sessionClaims(values[0] as string, secret, nowMs);
  if (claims === null) return SESSION_INVALID;
  // Synchronous when the session's state is fresh in memory (the hot path).
  const cached = resolver.sessions.peek(claims.sid);
  if (cached !== undefined) return judgeSession(cached.session, claims, nowMs);
  return resolver
    .session(claims.sid)
    .then((state) => (state.ok ? judgeSession(state.value.session, claims, nowMs) : SESSION_UNAVAILABLE));
}
