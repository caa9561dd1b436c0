/**
 * The strict HTTP/1.1 response parser of the upstream client (h1.ts). It decides which
 * bytes of an upstream connection belong to which response, so it is written to
 * refuse, not to guess: anything RFC 9112 lets a recipient reject, or that two parsers
 * could frame differently, ends the exchange (the client answers 502, or cuts a
 * response that had begun) and the connection is never reused.
 *
 * Refused, and why:
 * - a status line other than `HTTP/1.0|1.1 NNN [reason]` (RFC 9112 §4);
 * - header names that are not tokens, whitespace before the colon (§5.1), obs-fold
 *   (a line starting with SP/HTAB, §5.2), bare CR or LF anywhere in the head, NUL and
 *   other control characters in values (§2.2, RFC 9110 §5.5) — each of these is a
 *   known response-splitting or desync vector;
 * - a head over 64 KiB or with more than 200 field lines (memory and CPU bound);
 * - 101 Switching Protocols (upgrades are not proxied);
 * - Transfer-Encoding other than exactly `chunked`, Transfer-Encoding in an HTTP/1.0
 *   response, Transfer-Encoding together with Content-Length (§6.1, §6.3 item 3);
 * - Content-Length that is not all digits, a list, or repeated (§6.3 item 5 lets a
 *   recipient accept identical copies; undici's llhttp does not, and neither does this);
 * - header fields (names and values) of `http.maxHeaderSize` bytes (16 KiB) or more,
 *   undici's limit, so that both forwarders accept the same responses;
 * - chunk sizes that are not hex, chunk lines or trailers without strict CRLF, chunk
 *   extensions or trailer sections over their limits (§7.1; CVE-2024-22019).
 *
 * Framing follows §6.3: no body for HEAD requests, 1xx, 204 and 304; chunked; then
 * Content-Length; otherwise the body runs to the end of the connection. Bytes after
 * the end of a response make the connection unusable (response queue poisoning):
 * the sink is told the connection may not be reused.
 */

import { maxHeaderSize } from "node:http";

/** The receiving side of the parser: the upstream connection of the h1 client. */
export interface ResponseSink {
  /** The final (non-1xx) response head. Returns false when the sink failed the exchange. */
  onHead(status: number, headers: string[]): boolean;
  onBody(chunk: Buffer): void;
  /** The response ended where its framing says; `reusable` when the connection may carry another. */
  onComplete(reusable: boolean): void;
  onError(reason: ParseError): void;
}

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

export const MAX_HEAD_BYTES = 64 * 1024;
/** Bytes of field names and values in one head, refused from this size on (as undici). */
export const MAX_FIELD_BYTES = maxHeaderSize;
export const MAX_HEADER_LINES = 200;
/** 1xx responses tolerated before the final one (100 Continue, 103 Early Hints …). */
const MAX_INTERIM = 16;
/** A chunk-size line with its extensions (Node limits extensions to 16 KiB: CVE-2024-22019). */
const MAX_CHUNK_LINE = 4096;
const MAX_TRAILER_BYTES = 64 * 1024;

const CR = 0x0d;
const LF = 0x0a;
const SP = 0x20;
const HT = 0x09;
const COLON = 0x3a;
const SEMI = 0x3b;
const CRLFCRLF = Buffer.from("\r\n\r\n", "latin1");

/** RFC 9110 §5.6.2 tchar. */
const TCHAR = new Uint8Array(256);
for (const c of "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") TCHAR[c.charCodeAt(0)] = 1;
/** RFC 9110 §5.5 field-vchar / SP / HTAB (obs-text included: Node passes it as latin1). */
const FIELD = new Uint8Array(256);
FIELD[HT] = 1;
for (let c = 0x20; c <= 0x7e; c++) FIELD[c] = 1;
for (let c = 0x80; c <= 0xff; c++) FIELD[c] = 1;
const HEX = new Int8Array(256).fill(-1);
for (let c = 0; c < 10; c++) HEX[0x30 + c] = c;
for (let c = 0; c < 6; c++) {
  HEX[0x41 + c] = 10 + c;
  HEX[0x61 + c] = 10 + c;
}

// Parser states.
const HEAD = 0;
const BODY_LENGTH = 1;
const BODY_EOF = 2;
const CHUNK_SIZE = 3;
const CHUNK_SIZE_WS = 4;
const CHUNK_EXT = 5;
const CHUNK_SIZE_LF = 6;
const CHUNK_DATA = 7;
const CHUNK_DATA_CR = 8;
const CHUNK_DATA_LF = 9;
const TRAILER_START = 10;
const TRAILER_NAME = 11;
const TRAILER_VALUE = 12;
const TRAILER_LF = 13;
const TRAILER_END_LF = 14;
const DONE = 15;
const STOPPED = 16;
/** A head without a body was parsed: the response ends with it. */
const HEAD_DONE = 17;

type Latin1 = Buffer & { latin1Slice(start: number, end: number): string };

export class ResponseParser {
  readonly sink: ResponseSink;
  #state = DONE;
  #noBody = false;
  /** The head so far, when it did not arrive in one piece. */
  #acc: Buffer | null = null;
  #accLen = 0;
  #interim = 0;
  #remaining = 0;
  #digits = 0;
  #lineLen = 0;
  #trailerBytes = 0;
  #trailerLines = 0;
  #keepAlive = false;
  /** Content-Length of the current response (-1: none). */
  contentLength = -1;
  /** The `Connection` header of the current response, joined (null: none). */
  connection: string | null = null;
  /** `Keep-Alive: timeout=N` of the current response in ms (-1: none). */
  keepAliveHint = -1;

  constructor(sink: ResponseSink) {
    this.sink = sink;
  }

  /** Ready for the response to a new request; `head` when that request is a HEAD. */
  reset(head: boolean): void {
    this.#state = HEAD;
    this.#noBody = head;
    this.#accLen = 0;
    this.#interim = 0;
  }

  /** No further byte is parsed (the connection failed or was given up). */
  stop(): void {
    this.#state = STOPPED;
  }

  /** True while a response is being read (between reset and its end). */
  get busy(): boolean {
    return this.#state !== DONE && this.#state !== STOPPED && this.#state !== HEAD_DONE;
  }

  /**
   * The connection reached end of file. A body delimited by the close completes
   * (and the connection is gone); anything else was truncated: false.
   */
  eof(): boolean {
    if (this.#state !== BODY_EOF) return false;
    this.#state = DONE;
    this.sink.onComplete(false);
    return true;
  }

  execute(buf: Buffer): void {
    const len = buf.length;
    let i = 0;
    while (i < len) {
      switch (this.#state) {
        case HEAD: {
          i = this.#head(buf, i);
          if (i < 0) return;
          if ((this.#state as number) === HEAD_DONE) this.#complete(this.#keepAlive, i < len);
          break;
        }
        case BODY_LENGTH: {
          const n = Math.min(this.#remaining, len - i);
          this.sink.onBody(i === 0 && n === len ? buf : buf.subarray(i, i + n));
          i += n;
          this.#remaining -= n;
          if (this.#remaining === 0 && this.#state === BODY_LENGTH) this.#complete(this.#keepAlive, i < len);
          break;
        }
        case BODY_EOF: {
          this.sink.onBody(i === 0 ? buf : buf.subarray(i));
          return;
        }
        case CHUNK_DATA: {
          const n = Math.min(this.#remaining, len - i);
          this.sink.onBody(buf.subarray(i, i + n));
          i += n;
          this.#remaining -= n;
          if (this.#remaining === 0 && this.#state === CHUNK_DATA) this.#state = CHUNK_DATA_CR;
          break;
        }
        case DONE:
          // Bytes after the end of the response: never parsed as the next one.
          return;
        case STOPPED:
          return;
        default: {
          i = this.#chunked(buf, i);
          if (i < 0) return;
        }
      }
    }
  }

  #fail(reason: ParseError): number {
    this.#state = STOPPED;
    this.sink.onError(reason);
    return -1;
  }

  #complete(reusable: boolean, extra: boolean): void {
    this.#state = DONE;
    this.sink.onComplete(reusable && !extra);
  }

  /** Finds the end of the head (in `buf`, or across pieces) and parses it. */
  #head(buf: Buffer, off: number): number {
    const len = buf.length;
    if (this.#accLen === 0) {
      const end = buf.indexOf(CRLFCRLF, off);
      if (end === -1) {
        if (len - off >= MAX_HEAD_BYTES) return this.#fail("head_too_large");
        this.#stash(buf, off, len);
        return len;
      }
      if (end + 4 - off > MAX_HEAD_BYTES) return this.#fail("head_too_large");
      return this.#parseHead(buf, off, end + 2) ? end + 4 : -1;
    }
    // The head came in pieces: gather it (bounded) and look again across the seam.
    const before = this.#accLen;
    const take = Math.min(len - off, MAX_HEAD_BYTES - before);
    this.#stash(buf, off, off + take);
    const acc = this.#acc as Buffer;
    const end = acc.subarray(0, this.#accLen).indexOf(CRLFCRLF, Math.max(0, before - 3));
    if (end === -1) {
      if (this.#accLen >= MAX_HEAD_BYTES) return this.#fail("head_too_large");
      return off + take;
    }
    this.#accLen = 0;
    return this.#parseHead(acc, 0, end + 2) ? off + (end + 4 - before) : -1;
  }

  #stash(buf: Buffer, from: number, to: number): void {
    const need = this.#accLen + (to - from);
    let acc = this.#acc;
    if (acc === null || acc.length < need) {
      let size = acc === null ? 1024 : acc.length * 2;
      while (size < need) size *= 2;
      const grown = Buffer.allocUnsafe(size);
      if (acc !== null) acc.copy(grown, 0, 0, this.#accLen);
      acc = grown;
      this.#acc = acc;
    }
    buf.copy(acc, this.#accLen, from, to);
    this.#accLen = need;
  }

  /**
   * Parses one head: `src[s, e)` is the status line and the field lines, each ending in
   * CRLF (the blank line is not included). False when it was refused.
   */
  #parseHead(src: Buffer, s: number, e: number): boolean {
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
      this.#fail("bad_status_line");
      return false;
    }
    const minor = (src[s + 7] as number) - 0x30;
    const d1 = (src[s + 9] as number) - 0x30;
    const d2 = (src[s + 10] as number) - 0x30;
    const d3 = (src[s + 11] as number) - 0x30;
    if (d1 < 1 || d1 > 9 || d2 < 0 || d2 > 9 || d3 < 0 || d3 > 9) {
      this.#fail("bad_status_line");
      return false;
    }
    const status = d1 * 100 + d2 * 10 + d3;
    let i = s + 12;
    let c = src[i] as number;
    if (c === SP) {
      c = src[++i] as number;
      while (c !== CR) {
        if (FIELD[c] === 0) {
          this.#fail("bad_status_line");
          return false;
        }
        c = src[++i] as number;
      }
    } else if (c !== CR) {
      this.#fail("bad_status_line");
      return false;
    }
    if (src[i + 1] !== LF) {
      this.#fail("bad_line_end");
      return false;
    }
    i += 2;

    const headers: string[] = [];
    let lines = 0;
    let fieldBytes = 0;
    let contentLength = -1;
    let te: string | null = null;
    let connection: string | null = null;
    let keepAlive = -1;
    while (i < e) {
      if (++lines > MAX_HEADER_LINES) {
        this.#fail("too_many_headers");
        return false;
      }
      const ns = i;
      let upper = false;
      c = src[i] as number;
      while (TCHAR[c] === 1) {
        if (c >= 0x41 && c <= 0x5a) upper = true;
        c = src[++i] as number;
      }
      if (c !== COLON || i === ns) {
        this.#fail(i === ns && (c === SP || c === HT) ? "obs_fold" : i === ns && c === CR ? "bad_line_end" : "bad_header_name");
        return false;
      }
      const ne = i;
      c = src[++i] as number;
      while (c === SP || c === HT) c = src[++i] as number;
      const vs = i;
      let ve = i;
      while (c !== CR) {
        if (FIELD[c] === 0) {
          this.#fail(c === LF ? "bad_line_end" : "bad_header_value");
          return false;
        }
        i++;
        if (c !== SP && c !== HT) ve = i;
        c = src[i] as number;
      }
      if (src[i + 1] !== LF) {
        this.#fail("bad_line_end");
        return false;
      }
      i += 2;
      fieldBytes += ne - ns + (ve - vs);
      if (fieldBytes >= MAX_FIELD_BYTES) {
        this.#fail("head_too_large");
        return false;
      }
      let name = text.latin1Slice(ns, ne);
      if (upper) name = name.toLowerCase();
      const value = text.latin1Slice(vs, ve);
      switch (name.length) {
        case 14:
          if (name === "content-length") {
            // One Content-Length, all digits: a repeated one, even identical, is refused as
            // llhttp (undici) refuses it, so both forwarders frame the same responses.
            const n = parseContentLength(value);
            if (n < 0 || contentLength !== -1) {
              this.#fail("bad_content_length");
              return false;
            }
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

    if (status < 200) {
      // Interim responses are not forwarded; the final one follows (RFC 9110 §15.2).
      if (status === 101) {
        this.#fail("upgrade");
        return false;
      }
      if (++this.#interim > MAX_INTERIM) {
        this.#fail("too_many_interim");
        return false;
      }
      return true;
    }
    let chunked = false;
    if (te !== null) {
      if (minor === 0 || te.trim().toLowerCase() !== "chunked") {
        this.#fail("bad_transfer_encoding");
        return false;
      }
      if (contentLength !== -1) {
        this.#fail("length_and_chunked");
        return false;
      }
      chunked = true;
    }
    this.contentLength = contentLength;
    this.connection = connection;
    this.keepAliveHint = keepAlive;
    // HTTP/1.0 connections are not kept, whatever they announce.
    this.#keepAlive = minor === 1 && (connection === null || !hasClose(connection));

    if (!this.sink.onHead(status, headers) || this.#state !== HEAD) return false;
    if (this.#noBody || status === 204 || status === 304) this.#state = HEAD_DONE;
    else if (chunked) {
      this.#state = CHUNK_SIZE;
      this.#remaining = 0;
      this.#digits = 0;
      this.#lineLen = 0;
      this.#trailerBytes = 0;
      this.#trailerLines = 0;
    } else if (contentLength > 0) {
      this.#state = BODY_LENGTH;
      this.#remaining = contentLength;
    } else if (contentLength === 0) this.#state = HEAD_DONE;
    else {
      this.#state = BODY_EOF;
      this.#keepAlive = false;
    }
    return true;
  }

  /** The chunked body, byte by byte outside chunk data (RFC 9112 §7.1). */
  #chunked(buf: Buffer, off: number): number {
    const len = buf.length;
    let i = off;
    while (i < len) {
      const c = buf[i] as number;
      switch (this.#state) {
        case CHUNK_SIZE: {
          const h = HEX[c] as number;
          if (++this.#lineLen > MAX_CHUNK_LINE) return this.#fail("bad_chunk");
          if (h >= 0) {
            // Beyond 2^53 - 1 the size is not exact: no upstream sends such a chunk.
            if (this.#remaining > (Number.MAX_SAFE_INTEGER - h) / 16) return this.#fail("bad_chunk");
            this.#remaining = this.#remaining * 16 + h;
            this.#digits++;
          } else if (this.#digits === 0) return this.#fail("bad_chunk");
          else if (c === CR) this.#state = CHUNK_SIZE_LF;
          else if (c === SEMI) this.#state = CHUNK_EXT;
          else if (c === SP || c === HT) this.#state = CHUNK_SIZE_WS;
          else return this.#fail("bad_chunk");
          i++;
          break;
        }
        case CHUNK_SIZE_WS: {
          // BWS is allowed only before a chunk extension.
          if (++this.#lineLen > MAX_CHUNK_LINE) return this.#fail("bad_chunk");
          if (c === SEMI) this.#state = CHUNK_EXT;
          else if (c !== SP && c !== HT) return this.#fail("bad_chunk");
          i++;
          break;
        }
        case CHUNK_EXT: {
          // Extensions are read and ignored; only their bytes and length are checked.
          if (++this.#lineLen > MAX_CHUNK_LINE) return this.#fail("bad_chunk");
          if (c === CR) this.#state = CHUNK_SIZE_LF;
          else if (FIELD[c] === 0) return this.#fail("bad_chunk");
          i++;
          break;
        }
        case CHUNK_SIZE_LF: {
          if (c !== LF) return this.#fail("bad_chunk");
          i++;
          this.#lineLen = 0;
          this.#digits = 0;
          if (this.#remaining === 0) this.#state = TRAILER_START;
          else {
            this.#state = CHUNK_DATA;
            return i;
          }
          break;
        }
        case CHUNK_DATA_CR: {
          if (c !== CR) return this.#fail("bad_chunk");
          this.#state = CHUNK_DATA_LF;
          i++;
          break;
        }
        case CHUNK_DATA_LF: {
          if (c !== LF) return this.#fail("bad_chunk");
          this.#state = CHUNK_SIZE;
          i++;
          break;
        }
        case TRAILER_START: {
          // Trailer fields are read and dropped (RFC 9110 §6.5: a proxy may discard them).
          if (++this.#trailerBytes > MAX_TRAILER_BYTES) return this.#fail("bad_trailer");
          if (c === CR) this.#state = TRAILER_END_LF;
          else if (TCHAR[c] === 1) {
            if (++this.#trailerLines > MAX_HEADER_LINES) return this.#fail("bad_trailer");
            this.#state = TRAILER_NAME;
          } else return this.#fail(c === SP || c === HT ? "obs_fold" : "bad_trailer");
          i++;
          break;
        }
        case TRAILER_NAME: {
          if (++this.#trailerBytes > MAX_TRAILER_BYTES) return this.#fail("bad_trailer");
          if (c === COLON) this.#state = TRAILER_VALUE;
          else if (TCHAR[c] !== 1) return this.#fail("bad_trailer");
          i++;
          break;
        }
        case TRAILER_VALUE: {
          if (++this.#trailerBytes > MAX_TRAILER_BYTES) return this.#fail("bad_trailer");
          if (c === CR) this.#state = TRAILER_LF;
          else if (FIELD[c] === 0) return this.#fail("bad_trailer");
          i++;
          break;
        }
        case TRAILER_LF: {
          if (c !== LF) return this.#fail("bad_trailer");
          this.#state = TRAILER_START;
          i++;
          break;
        }
        case TRAILER_END_LF: {
          if (c !== LF) return this.#fail("bad_trailer");
          i++;
          this.#complete(this.#keepAlive, i < len);
          return i;
        }
        default:
          return i;
      }
    }
    return i;
  }
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

function hasClose(connection: string): boolean {
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
function keepAliveTimeout(value: string): number {
  if (value !== lastKeepAlive) {
    const m = KEEP_ALIVE_TIMEOUT.exec(value);
    lastTimeout = m === null ? -1 : Number(m[1]) * 1000;
    lastKeepAlive = value;
  }
  return lastTimeout;
}
