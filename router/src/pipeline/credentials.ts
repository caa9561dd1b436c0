/**
 * credentials: the API key (Authorization / X-API-Key; `keys/`) and the session cookie
 * (`sessions/`), each verified into an outcome for `decide`; both lookups start before
 * either is awaited. An unknown host's request has its credentials neither read nor
 * looked up: `decide` refuses it first.
 */
import { extractKey, verifyKey } from "../keys/index.ts";
import { verifySession } from "../sessions/index.ts";
import { type Exchange, NOT_PRESENTED } from "./exchange.ts";
import type { Outcome } from "./run.ts";

export function credentials(x: Exchange): Outcome | Promise<Outcome> {
  if (x.host.ok && x.host.kind === "tenant" && x.host.tenant === null) return undefined;
  const { config, resolver } = x.runtime.deps;
  const incoming = x.incoming;
  x.extracted = extractKey(incoming.rawHeaders, x.path, x.host.kind === "api");
  const t = x.runtime.now();
  const cookie = incoming.headers.cookie;
  const hostTenant = x.host.ok && x.host.kind === "tenant" ? (x.host.tenant?.id ?? null) : null;
  // A misplaced key is verified like any other: another tenant's is the same 401.
  const found = x.extracted.kind === "key" || x.extracted.kind === "misplaced" ? x.extracted.key : null;
  const key = found !== null ? verifyKey(resolver, found, t, hostTenant) : NOT_PRESENTED;
  const session = cookie?.includes(config.sessionCookie)
    ? verifySession(resolver, cookie, config.sessionCookie, config.sessionSecret, t)
    : NOT_PRESENTED;
  if (key instanceof Promise || session instanceof Promise) {
    return Promise.all([key, session]).then(([k, v]) => {
      x.key = k;
      x.session = v;
      return undefined;
    });
  }
  x.key = key;
  x.session = session;
  return undefined;
}
