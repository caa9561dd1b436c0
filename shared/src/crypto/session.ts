/**
 * Session tokens: `<base64url(payload)>.<base64url(HMAC-SHA256(SESSION_SECRET, payload))>`
 * with payload `{v:1, sid, tid, uid, exp}` (exp in seconds). The router verifies
 * the MAC locally; revocation is a cache record keyed by session id.
 */
import { createHmac, timingSafeEqual } from "node:crypto";

export interface SessionClaims {
  sid: string;
  tid: string;
  uid: string;
  exp: number;
}

export function signSession(claims: SessionClaims, secret: string): string {
  const payload = Buffer.from(JSON.stringify({ v: 1, ...claims })).toString("base64url");
  const mac = createHmac("sha256", secret).update(payload).digest("base64url");
  return `${payload}.${mac}`;
}

export type SessionVerification =
  | { ok: true; claims: SessionClaims }
  | { ok: false; code: "session_malformed" | "session_forged" | "session_expired" };

const TOKEN = /^[A-Za-z0-9_-]{16,1024}\.[A-Za-z0-9_-]{43}$/;

export function verifySessionToken(token: string, secret: string, nowSeconds: number): SessionVerification {
  if (!TOKEN.test(token)) return { ok: false, code: "session_malformed" };
  const dot = token.indexOf(".");
  const payload = token.slice(0, dot);
  const expected = createHmac("sha256", secret).update(payload).digest();
  const given = Buffer.from(token.slice(dot + 1), "base64url");
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
    return { ok: false, code: "session_forged" };
  }
  let claims: SessionClaims & { v?: number };
  try {
    claims = JSON.parse(Buffer.from(payload, "base64url").toString("utf8"));
  } catch {
    return { ok: false, code: "session_malformed" };
  }
  if (
    claims.v !== 1 ||
    typeof claims.sid !== "string" ||
    typeof claims.tid !== "string" ||
    typeof claims.uid !== "string" ||
    typeof claims.exp !== "number"
  ) {
    return { ok: false, code: "session_malformed" };
  }
  if (claims.exp <= nowSeconds) return { ok: false, code: "session_expired" };
  return { ok: true, claims: { sid: claims.sid, tid: claims.tid, uid: claims.uid, exp: claims.exp } };
}
