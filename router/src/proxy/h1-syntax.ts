/**
 * What the parts of the HTTP/1.1 response parser (h1-parser.ts, h1-head.ts,
 * h1-chunked.ts) share: the reasons it refuses a response, the byte classes of the
 * grammar, and the interpretation of the header values that decide framing and
 * connection reuse (Content-Length, Connection, Keep-Alive).
 *
 * The byte classes are handed out as tables built on request, not as shared constants:
 * each byte loop keeps its own tables, byte codes and per-byte limits in module-level
 * `const`s that are not exported, which V8 compiles into the loop as constants; an
 * imported or exported binding is loaded from its cell on every use. Measured on a
 * chunked body of small chunks, sharing them instead made the decoder ≈ 25% slower.
 */

/** Why a response was refused (reported to the sink, which fails the exchange). */
export type ParseError =
  | "head_too_large"
  | "too_many_headers"
  | "too_many_interim"
  | "bad_status_line"
  | "bad_header_name"
  | "bad_header_value"
  | "obs_fold"
  | "bad_line_end"
  | "upgrade"
  | "bad_content_length"
  | "bad_transfer_encoding"
  | "length_and_chunked"
  | "bad_chunk"
  | "bad_trailer";

/** RFC 9110 §5.6.2 tchar: 1 for the bytes of a token. */
export function tcharTable(): Uint8Array {
  const table = new Uint8Array(256);
  for (const c of "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") table[c.charCodeAt(0)] = 1;
  return table;
}

/** RFC 9110 §5.5 field-vchar / SP / HTAB: 1 for the bytes of a field value (obs-text included: Node passes it as latin1). */
export function fieldTable(): Uint8Array {
  const table = new Uint8Array(256);
  table[0x09] = 1;
  for (let c = 0x20; c <= 0x7e; c++) table[c] = 1;
  for (let c = 0x80; c <= 0xff; c++) table[c] = 1;
  return table;
}

/** The value of each hex digit, -1 for other bytes (chunk sizes, RFC 9112 §7.1). */
export function hexTable(): Int8Array {
  const table = new Int8Array(256).fill(-1);
  for (let c = 0; c < 10; c++) table[0x30 + c] = c;
  for (let c = 0; c < 6; c++) {
    table[0x41 + c] = 10 + c;
    table[0x61 + c] = 10 + c;
  }
  return table;
}

/** Content-Length: 1 to 15 digits, nothing else (no sign, no space, no list). -1: invalid. */
export function parseContentLength(value: string): number {
  const len = value.length;
  if (len === 0 || len > 15) return -1;
  let n = 0;
  for (let i = 0; i < len; i++) {
    const c = value.charCodeAt(i) - 0x30;
    if (c < 0 || c > 9) return -1;
    n = n * 10 + c;
  }
  return n;
}

/** Whether a `Connection` value (joined) carries the `close` option. */
export function hasClose(connection: string): boolean {
  // The common values, without splitting.
  if (connection.length === 10 && connection.toLowerCase() === "keep-alive") return false;
  if (connection.length === 5) return connection.toLowerCase() === "close";
  for (const token of connection.split(",")) if (token.trim().toLowerCase() === "close") return true;
  return false;
}

const KEEP_ALIVE_TIMEOUT = /timeout=(\d{1,9})/i;
// An upstream sends the same Keep-Alive value on every response: parse it once.
let lastKeepAlive = "";
let lastTimeout = -1;
/** `Keep-Alive: timeout=N` in ms (-1: none). */
export function keepAliveTimeout(value: string): number {
  if (value !== lastKeepAlive) {
    const m = KEEP_ALIVE_TIMEOUT.exec(value);
    lastTimeout = m === null ? -1 : Number(m[1]) * 1000;
    lastKeepAlive = value;
  }
  return lastTimeout;
}
