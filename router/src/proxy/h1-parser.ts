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
 *
 * This module is the state machine: gathering the head, the framing decision, passing
 * body bytes to the sink. The head grammar is in h1-head.ts, the chunked coding in
 * h1-chunked.ts, what they share (refusal reasons, byte classes, header values) in
 * h1-syntax.ts; each limit sits with the code that enforces it.
 */

import { ChunkedDecoder } from "./h1-chunked.ts";
import { emptyHead, parseHead } from "./h1-head.ts";
import { hasClose, type ParseError } from "./h1-syntax.ts";

export { MAX_FIELD_BYTES, MAX_HEADER_LINES } from "./h1-head.ts";
export { type ParseError, parseContentLength } from "./h1-syntax.ts";

export const MAX_HEAD_BYTES = 64 * 1024;
/** 1xx responses tolerated before the final one (100 Continue, 103 Early Hints …). */
const MAX_INTERIM = 16;
const CRLFCRLF = Buffer.from("\r\n\r\n", "latin1");

/** The receiving side of the parser: the upstream connection of the h1 client. */
export interface ResponseSink {
  /** The final (non-1xx) response head. Returns false when the sink failed the exchange. */
  onHead(status: number, headers: string[]): boolean;
  onBody(chunk: Buffer): void;
  /** The response ended where its framing says; `reusable` when the connection may carry another. */
  onComplete(reusable: boolean): void;
  onError(reason: ParseError): void;
}

// Parser states.
const HEAD = 0;
const BODY_LENGTH = 1;
const BODY_EOF = 2;
/** A chunked body: where in it is the decoder's state. */
const CHUNKED = 3;
const DONE = 4;
const STOPPED = 5;
/** A head without a body was parsed: the response ends with it. */
const HEAD_DONE = 6;

export class ResponseParser {
  readonly sink: ResponseSink;
  #state = DONE;
  #noBody = false;
  /** The head so far, when it did not arrive in one piece. */
  #acc: Buffer | null = null;
  #accLen = 0;
  #head = emptyHead();
  #chunk = new ChunkedDecoder();
  #interim = 0;
  #remaining = 0;
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
          i = this.#readHead(buf, i);
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
        case CHUNKED: {
          const chunk = this.#chunk;
          if (chunk.data) {
            const n = Math.min(chunk.remaining, len - i);
            this.sink.onBody(buf.subarray(i, i + n));
            i += n;
            chunk.remaining -= n;
            if (chunk.remaining === 0 && this.#state === CHUNKED) chunk.dataEnd();
            break;
          }
          i = chunk.decode(buf, i);
          if (i < 0) {
            this.#fail(chunk.error);
            return;
          }
          if (chunk.done) this.#complete(this.#keepAlive, i < len);
          break;
        }
        case DONE:
          // Bytes after the end of the response: never parsed as the next one.
          return;
        default:
          // STOPPED (HEAD_DONE never gets here: the HEAD case completes it at once).
          return;
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
  #readHead(buf: Buffer, off: number): number {
    const len = buf.length;
    if (this.#accLen === 0) {
      const end = buf.indexOf(CRLFCRLF, off);
      if (end === -1) {
        if (len - off >= MAX_HEAD_BYTES) return this.#fail("head_too_large");
        this.#stash(buf, off, len);
        return len;
      }
      if (end + 4 - off > MAX_HEAD_BYTES) return this.#fail("head_too_large");
      return this.#onHead(buf, off, end + 2) ? end + 4 : -1;
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
    return this.#onHead(acc, 0, end + 2) ? off + (end + 4 - before) : -1;
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
   * Parses one head (`src[s, e)`, see parseHead) and decides how the response is
   * framed. False when it was refused.
   */
  #onHead(src: Buffer, s: number, e: number): boolean {
    const head = this.#head;
    const error = parseHead(src, s, e, head);
    if (error !== null) {
      this.#fail(error);
      return false;
    }
    const { status, minor, contentLength, connection } = head;
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
    const te = head.transferEncoding;
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
    this.keepAliveHint = head.keepAlive;
    // HTTP/1.0 connections are not kept, whatever they announce.
    this.#keepAlive = minor === 1 && (connection === null || !hasClose(connection));

    if (!this.sink.onHead(status, head.headers) || this.#state !== HEAD) return false;
    if (this.#noBody || status === 204 || status === 304) this.#state = HEAD_DONE;
    else if (chunked) {
      this.#state = CHUNKED;
      this.#chunk.start();
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
}
