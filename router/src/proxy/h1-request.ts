/**
 * The request side of the upstream client (h1.ts): the head, written as one latin1
 * string, and the framing of the body that follows it.
 *
 * Framing headers are the router's, never the client's: the router's own server has
 * already parsed the client's body (Node refuses conflicting or malformed
 * Content-Length and Transfer-Encoding), so the client's framing headers are dropped
 * and the body is framed again here — with its declared `content-length` when the
 * client gave one, otherwise `transfer-encoding: chunked` (client trailers are not
 * forwarded). A body-less request carries no framing header, except
 * `content-length: 0` for the methods that expect a body (RFC 9110 §8.6).
 */
import type { IncomingMessage } from "node:http";

/** Methods sent with `content-length: 0` when they have no body (RFC 9110 §8.6). */
const EXPECTS_PAYLOAD = new Set(["PUT", "POST", "PATCH", "QUERY", "PROPFIND", "PROPPATCH"]);

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const BAD_VALUE = /[^\t\x20-\x7e\x80-\xff]/;
const BAD_PATH = /[^\x21-\xff]/;
const DIGITS = /^\d{1,15}$/;

/** A transfer coding other than `chunked` alone: nothing is forwarded (the edge refuses it first). */
const UNSUPPORTED = -2;

/**
 * How a client body is framed upstream: its length (a non-negative number) when the
 * client declared one, -1 for chunked, null for no body, -2 for a coding the router
 * does not forward.
 */
export function bodyLength(body: IncomingMessage | null): number | null {
  if (body === null) return null;
  const coding = body.headers["transfer-encoding"];
  if (coding !== undefined) return coding.trim().toLowerCase() === "chunked" ? -1 : UNSUPPORTED;
  const declared = body.headers["content-length"];
  // Node has validated it; anything else would be a body of unknown length.
  return declared !== undefined && DIGITS.test(declared) ? Number(declared) : -1;
}

/**
 * The request head, or null when a name, value or the target could break the framing
 * (CR, LF, NUL, controls): nothing is sent then. `length` is `bodyLength`'s answer.
 */
export function requestHead(
  method: string,
  path: string,
  headers: readonly string[],
  length: number | null = null,
): string | null {
  if (path.charCodeAt(0) !== 0x2f || BAD_PATH.test(path) || !TOKEN.test(method) || (length !== null && length < -1)) return null;
  let head = `${method} ${path} HTTP/1.1\r\n`;
  for (let i = 0; i < headers.length; i += 2) {
    const name = headers[i] as string;
    const value = headers[i + 1] as string;
    if (!TOKEN.test(name) || BAD_VALUE.test(value)) return null;
    if (name.length === 14 || name.length === 17) {
      const lower = name.toLowerCase();
      if (lower === "content-length" || lower === "transfer-encoding") continue;
    }
    head += `${name}: ${value}\r\n`;
  }
  if (length === null) {
    if (EXPECTS_PAYLOAD.has(method)) head += "content-length: 0\r\n";
  } else if (length === -1) head += "transfer-encoding: chunked\r\n";
  else head += `content-length: ${length}\r\n`;
  return `${head}\r\n`;
}

/** The line that starts a chunk of `size` bytes. */
export function chunkLine(size: number): string {
  return `${size.toString(16)}\r\n`;
}

/** The last chunk, with no trailer section. */
export const LAST_CHUNK = "0\r\n\r\n";
