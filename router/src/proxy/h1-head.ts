/**
 * The grammar of one HTTP/1.1 response head, for the response parser (h1-parser.ts):
 * the status line (RFC 9112 §4) and the field lines (§5), read in one pass over bytes
 * the parser has already gathered up to the blank line. Anything a recipient may
 * reject is refused here, at the first bad byte: header names that are not tokens,
 * whitespace before the colon (§5.1), obs-fold (§5.2), a bare CR or LF, control
 * characters in values (§2.2, RFC 9110 §5.5), too many lines or field bytes, and a
 * malformed or repeated Content-Length. What the head means for framing (interim
 * responses, Transfer-Encoding against Content-Length, keep-alive) is the parser's.
 */

import { maxHeaderSize } from "node:http";
import { fieldTable, keepAliveTimeout, type ParseError, parseContentLength, tcharTable } from "./h1-syntax.ts";

/** Bytes of field names and values in one head, refused from this size on (as undici). */
export const MAX_FIELD_BYTES = maxHeaderSize;
export const MAX_HEADER_LINES = 200;

// Module-level and not exported, so that V8 compiles them into the loop (see h1-syntax.ts).
const TCHAR = tcharTable();
const FIELD = fieldTable();
const CR = 0x0d;
const LF = 0x0a;
const SP = 0x20;
const HT = 0x09;
const COLON = 0x3a;

/** A head as read: one record per parser, overwritten by each head (no allocation for it). */
export interface Head {
  status: number;
  /** The x of HTTP/1.x (0 or 1). */
  minor: number;
  /** Names (lower-cased) and values in turn; a new array per head, as it goes to the sink. */
  headers: string[];
  /** Content-Length (-1: none). */
  contentLength: number;
  /** The `Transfer-Encoding` header, joined (null: none). */
  transferEncoding: string | null;
  /** The `Connection` header, joined (null: none). */
  connection: string | null;
  /** `Keep-Alive: timeout=N` in ms (-1: none). */
  keepAlive: number;
}

export function emptyHead(): Head {
  return { status: 0, minor: 0, headers: [], contentLength: -1, transferEncoding: null, connection: null, keepAlive: -1 };
}

type Latin1 = Buffer & { latin1Slice(start: number, end: number): string };

/**
 * Parses one head into `head`: `src[s, e)` is the status line and the field lines, each
 * ending in CRLF (the blank line is not included). Null when it was read, else why it
 * was refused.
 */
export function parseHead(src: Buffer, s: number, e: number, head: Head): ParseError | null {
  const text = src as Latin1;
  // Status line: HTTP/1.x SP 3DIGIT [SP reason] CRLF (a missing reason is tolerated).
  if (
    e - s < 14 ||
    src[s] !== 0x48 ||
    src[s + 1] !== 0x54 ||
    src[s + 2] !== 0x54 ||
    src[s + 3] !== 0x50 ||
    src[s + 4] !== 0x2f ||
    src[s + 5] !== 0x31 ||
    src[s + 6] !== 0x2e ||
    (src[s + 7] !== 0x30 && src[s + 7] !== 0x31) ||
    src[s + 8] !== SP
  ) {
    return "bad_status_line";
  }
  const minor = (src[s + 7] as number) - 0x30;
  const d1 = (src[s + 9] as number) - 0x30;
  const d2 = (src[s + 10] as number) - 0x30;
  const d3 = (src[s + 11] as number) - 0x30;
  if (d1 < 1 || d1 > 9 || d2 < 0 || d2 > 9 || d3 < 0 || d3 > 9) return "bad_status_line";
  const status = d1 * 100 + d2 * 10 + d3;
  let i = s + 12;
  let c = src[i] as number;
  if (c === SP) {
    c = src[++i] as number;
    while (c !== CR) {
      if (FIELD[c] === 0) return "bad_status_line";
      c = src[++i] as number;
    }
  } else if (c !== CR) return "bad_status_line";
  if (src[i + 1] !== LF) return "bad_line_end";
  i += 2;

  const headers: string[] = [];
  let lines = 0;
  let fieldBytes = 0;
  let contentLength = -1;
  let te: string | null = null;
  let connection: string | null = null;
  let keepAlive = -1;
  while (i < e) {
    if (++lines > MAX_HEADER_LINES) return "too_many_headers";
    const ns = i;
    let upper = false;
    c = src[i] as number;
    while (TCHAR[c] === 1) {
      if (c >= 0x41 && c <= 0x5a) upper = true;
      c = src[++i] as number;
    }
    if (c !== COLON || i === ns) {
      return i === ns && (c === SP || c === HT) ? "obs_fold" : i === ns && c === CR ? "bad_line_end" : "bad_header_name";
    }
    const ne = i;
    c = src[++i] as number;
    while (c === SP || c === HT) c = src[++i] as number;
    const vs = i;
    let ve = i;
    while (c !== CR) {
      if (FIELD[c] === 0) return c === LF ? "bad_line_end" : "bad_header_value";
      i++;
      if (c !== SP && c !== HT) ve = i;
      c = src[i] as number;
    }
    if (src[i + 1] !== LF) return "bad_line_end";
    i += 2;
    fieldBytes += ne - ns + (ve - vs);
    if (fieldBytes >= MAX_FIELD_BYTES) return "head_too_large";
    let name = text.latin1Slice(ns, ne);
    if (upper) name = name.toLowerCase();
    const value = text.latin1Slice(vs, ve);
    switch (name.length) {
      case 14:
        if (name === "content-length") {
          // One Content-Length, all digits: a repeated one, even identical, is refused as
          // llhttp (undici) refuses it, so both forwarders frame the same responses.
          const n = parseContentLength(value);
          if (n < 0 || contentLength !== -1) return "bad_content_length";
          contentLength = n;
        }
        break;
      case 17:
        if (name === "transfer-encoding") te = te === null ? value : `${te},${value}`;
        break;
      case 10:
        if (name === "connection") connection = connection === null ? value : `${connection},${value}`;
        else if (name === "keep-alive") keepAlive = keepAliveTimeout(value);
        break;
    }
    headers.push(name, value);
  }

  head.status = status;
  head.minor = minor;
  head.headers = headers;
  head.contentLength = contentLength;
  head.transferEncoding = te;
  head.connection = connection;
  head.keepAlive = keepAlive;
  return null;
}
