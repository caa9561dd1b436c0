/**
 * The chunked transfer coding (RFC 9112 §7.1) for the response parser (h1-parser.ts):
 * a byte-at-a-time state machine over the framing around the chunk data — chunk-size
 * lines with their extensions, the CRLF after each chunk, the trailer section. The
 * chunk data itself is not copied or looked at: the decoder stops where it begins and
 * the parser hands it to the sink, so every call out of the parser stays in one place.
 * Refused: chunk sizes that are not hex, chunk lines or trailers without strict CRLF,
 * obs-fold in trailers, chunk lines or trailer sections over their limits
 * (CVE-2024-22019).
 */

import { MAX_HEADER_LINES } from "./h1-head.ts";
import { fieldTable, hexTable, type ParseError, tcharTable } from "./h1-syntax.ts";

// Module-level and not exported, so that V8 compiles them into the loop (see h1-syntax.ts).
/** A chunk-size line with its extensions (Node limits extensions to 16 KiB: CVE-2024-22019). */
const MAX_CHUNK_LINE = 4096;
const MAX_TRAILER_BYTES = 64 * 1024;
const TCHAR = tcharTable();
const FIELD = fieldTable();
const HEX = hexTable();
const CR = 0x0d;
const LF = 0x0a;
const SP = 0x20;
const HT = 0x09;
const COLON = 0x3a;
const SEMI = 0x3b;

// Decoder states.
const SIZE = 0;
const SIZE_WS = 1;
const EXT = 2;
const SIZE_LF = 3;
const DATA = 4;
const DATA_CR = 5;
const DATA_LF = 6;
const TRAILER_START = 7;
const TRAILER_NAME = 8;
const TRAILER_VALUE = 9;
const TRAILER_LF = 10;
const TRAILER_END_LF = 11;
/** The last CRLF of the trailer section was read: the body is complete. */
const END = 12;

export class ChunkedDecoder {
  /** The chunk size being read, then the bytes of its data still to pass on. */
  remaining = 0;
  /** Why `decode` refused the body (set when it returns -1). */
  error: ParseError = "bad_chunk";
  #state = SIZE;
  #digits = 0;
  #lineLen = 0;
  #trailerBytes = 0;
  #trailerLines = 0;

  /** Ready for a new chunked body. */
  start(): void {
    this.#state = SIZE;
    this.remaining = 0;
    this.#digits = 0;
    this.#lineLen = 0;
    this.#trailerBytes = 0;
    this.#trailerLines = 0;
  }

  /** True while chunk data is due: the parser passes `remaining` bytes on, then calls `dataEnd`. */
  get data(): boolean {
    return this.#state === DATA;
  }

  dataEnd(): void {
    this.#state = DATA_CR;
  }

  /** True once the body, trailers included, was read to its end. */
  get done(): boolean {
    return this.#state === END;
  }

  #fail(reason: ParseError): number {
    this.error = reason;
    return -1;
  }

  /**
   * Reads framing bytes from `buf[off]` on. Returns the index where chunk data begins
   * (`data`), where the body ended (`done`), or the end of `buf`; -1 when refused.
   */
  decode(buf: Buffer, off: number): number {
    const len = buf.length;
    let i = off;
    while (i < len) {
      const c = buf[i] as number;
      switch (this.#state) {
        case SIZE: {
          const h = HEX[c] as number;
          if (++this.#lineLen > MAX_CHUNK_LINE) return this.#fail("bad_chunk");
          if (h >= 0) {
            // Beyond 2^53 - 1 the size is not exact: no upstream sends such a chunk.
            if (this.remaining > (Number.MAX_SAFE_INTEGER - h) / 16) return this.#fail("bad_chunk");
            this.remaining = this.remaining * 16 + h;
            this.#digits++;
          } else if (this.#digits === 0) return this.#fail("bad_chunk");
          else if (c === CR) this.#state = SIZE_LF;
          else if (c === SEMI) this.#state = EXT;
          else if (c === SP || c === HT) this.#state = SIZE_WS;
          else return this.#fail("bad_chunk");
          i++;
          break;
        }
        case SIZE_WS: {
          // BWS is allowed only before a chunk extension.
          if (++this.#lineLen > MAX_CHUNK_LINE) return this.#fail("bad_chunk");
          if (c === SEMI) this.#state = EXT;
          else if (c !== SP && c !== HT) return this.#fail("bad_chunk");
          i++;
          break;
        }
        case EXT: {
          // Extensions are read and ignored; only their bytes and length are checked.
          if (++this.#lineLen > MAX_CHUNK_LINE) return this.#fail("bad_chunk");
          if (c === CR) this.#state = SIZE_LF;
          else if (FIELD[c] === 0) return this.#fail("bad_chunk");
          i++;
          break;
        }
        case SIZE_LF: {
          if (c !== LF) return this.#fail("bad_chunk");
          i++;
          this.#lineLen = 0;
          this.#digits = 0;
          if (this.remaining === 0) this.#state = TRAILER_START;
          else {
            this.#state = DATA;
            return i;
          }
          break;
        }
        case DATA_CR: {
          if (c !== CR) return this.#fail("bad_chunk");
          this.#state = DATA_LF;
          i++;
          break;
        }
        case DATA_LF: {
          if (c !== LF) return this.#fail("bad_chunk");
          this.#state = SIZE;
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
          this.#state = END;
          return i + 1;
        }
        default:
          // DATA or END: nothing more to read here.
          return i;
      }
    }
    return i;
  }
}
