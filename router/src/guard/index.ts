/**
 * The edge guard: checks a request's framing, target and Host before anything else
 * looks at it, on the raw header list (where duplicates are visible). Node's parser
 * (llhttp, strict mode) already refuses most smuggling shapes; this adds the rules
 * a tenant router needs on top (RFC 9112 §3.2, §6.1; RFC 9110 §7.2) and refuses
 * anything ambiguous rather than guessing.
 */
import type { IncomingMessage } from "node:http";
import { L1_MAX_ENTRIES, normalizeHostname, type RefusalReason } from "@portcullis/shared";

export type GuardResult = { ok: true; hostname: string; path: string } | { ok: false; reason: RefusalReason; host?: string };

export interface GuardLimits {
  maxHeaderCount: number;
}

const ALLOWED_METHODS = new Set(["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]);
// C0 controls other than HTAB, and DEL (RFC 9110 §5.5: field values are VCHAR, SP, HTAB, obs-text).
const CONTROL = /[\x00-\x08\x0a-\x1f\x7f]/;
// Origin-form target: printable ASCII, no space, no backslash before the query, no fragment.
const TARGET_BAD = /[^\x21-\x7e]|#/;

/**
 * True when the path holds a `.` or `..` segment, literally or percent-encoded
 * (`%2e`), with `/`, `%2f` or `%5c` as separators. A browser never sends one
 * (RFC 3986 §5.2.4 removes them); an attacker sends them so that the edge and the
 * app disagree about the path (Envoy CVE-2019-9901, CVE-2021-29492; nginx
 * alias traversal). Tenant apps never see a traversal from the edge.
 */
const DOT_SEGMENT = /\/\.\.?(?:\/|$)/;
function hasDotSegment(path: string): boolean {
  if (path.indexOf("%") === -1) return path.includes("/.") && DOT_SEGMENT.test(path);
  return DOT_SEGMENT.test(path.replace(/%2e/gi, ".").replace(/%2f|%5c/gi, "/"));
}

/**
 * Host values already normalized, with their hostname: requests repeat the same
 * values, and the one string kept per hostname also spares the cache lookups after the
 * guard from hashing a new string each time. Only valid values are kept
 * (`normalizeHostname` is a pure function of the value), at most `HOST_MEMO` (as many
 * as the host cache holds, so a router's whole rotation of tenants fits); a full memo
 * starts over, so values that never repeat cost one insertion each and no more.
 */
export const HOST_MEMO = L1_MAX_ENTRIES;
const hostMemo = new Map<string, string>();

function hostnameOf(value: string): string | null {
  const known = hostMemo.get(value);
  if (known !== undefined) return known;
  const normalized = normalizeHostname(value, { allowPort: true });
  if (!normalized.ok) return null;
  if (hostMemo.size >= HOST_MEMO) hostMemo.clear();
  hostMemo.set(value, normalized.hostname);
  return normalized.hostname;
}

function refuse(reason: RefusalReason, host?: string): GuardResult {
  return host === undefined ? { ok: false, reason } : { ok: false, reason, host };
}

export function inspectRequest(req: IncomingMessage, limits: GuardLimits): GuardResult {
  const raw = req.rawHeaders;
  if (raw.length > limits.maxHeaderCount * 2) return refuse("headers_too_large");

  let host: string | undefined;
  let hostCount = 0;
  let contentLength = 0;
  let transferEncoding = 0;
  let teValue = "";
  let clValue = "";
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as string;
    const value = raw[i + 1] as string;
    if (CONTROL.test(value)) return refuse("invalid_header");
    switch (name.length) {
      case 4:
        if (name.toLowerCase() === "host") {
          hostCount++;
          host = value;
        }
        break;
      case 14:
        if (name.toLowerCase() === "content-length") {
          contentLength++;
          clValue = value;
        }
        break;
      case 17:
        if (name.toLowerCase() === "transfer-encoding") {
          transferEncoding++;
          teValue = value;
        }
        break;
    }
  }
  if (hostCount === 0) return refuse("missing_host");
  if (hostCount > 1) return refuse("duplicate_host");
  // Framing must be unambiguous (RFC 9112 §6.1, §6.3): one length or chunked, never both.
  if (transferEncoding > 0 && contentLength > 0) return refuse("conflicting_framing", host);
  if (transferEncoding > 1 || contentLength > 1) return refuse("conflicting_framing", host);
  if (transferEncoding === 1 && teValue.trim().toLowerCase() !== "chunked") return refuse("conflicting_framing", host);
  if (contentLength === 1 && !/^[0-9]{1,15}$/.test(clValue)) return refuse("conflicting_framing", host);
  // Chunked framing does not exist in HTTP/1.0: a 1.0 request carrying it is faulty
  // framing, and a downstream 1.0 parser would read the body differently (RFC 9112 §6.1).
  if (transferEncoding === 1 && req.httpVersionMinor === 0) return refuse("conflicting_framing", host);

  const method = req.method ?? "";
  if (!ALLOWED_METHODS.has(method)) return refuse("method_not_allowed", host);

  const hostname = hostnameOf(host as string);
  if (hostname === null) return refuse("invalid_host", host);

  let path = req.url ?? "";
  if (path.charCodeAt(0) !== 0x2f /* / */) {
    // Absolute form (RFC 9112 §3.2.2): allowed only when it names the same host.
    const m = /^https?:\/\/([^/?#]*)(.*)$/i.exec(path);
    if (!m) return refuse("invalid_target", host);
    const named = normalizeHostname(m[1] as string, { allowPort: true });
    if (!named.ok || named.hostname !== hostname) return refuse("absolute_form_mismatch", host);
    path = m[2] === "" ? "/" : (m[2] as string);
    if (path.charCodeAt(0) !== 0x2f) return refuse("invalid_target", host);
  }
  if (path.charCodeAt(1) === 0x2f /* // */) return refuse("invalid_target", host);
  if (TARGET_BAD.test(path)) return refuse("invalid_target", host);
  const q = path.indexOf("?");
  const bs = path.indexOf("\\");
  if (bs !== -1 && (q === -1 || bs < q)) return refuse("invalid_target", host);
  if (hasDotSegment(q === -1 ? path : path.slice(0, q))) return refuse("invalid_target", host);

  return { ok: true, hostname, path };
}
