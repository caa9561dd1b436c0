import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  MAX_FIELD_BYTES,
  MAX_HEAD_BYTES,
  MAX_HEADER_LINES,
  type ParseError,
  parseContentLength,
  ResponseParser,
} from "./h1-parser.ts";

interface Parsed {
  status: number;
  headers: string[];
  body: string;
  /** null: not complete; else whether the connection may be reused. */
  complete: boolean | null;
  error: ParseError | null;
  parser: ResponseParser;
}

/** Feeds the pieces to a fresh parser and records what it reported. */
function parse(pieces: readonly (string | Buffer)[], options: { head?: boolean; eof?: boolean } = {}): Parsed {
  const out: Omit<Parsed, "parser"> = { status: 0, headers: [], body: "", complete: null, error: null };
  let heads = 0;
  const parser = new ResponseParser({
    onHead(status, headers) {
      heads++;
      out.status = status;
      out.headers = headers;
      return true;
    },
    onBody(chunk) {
      if (out.complete !== null) throw new Error("body after the end");
      out.body += chunk.toString("latin1");
    },
    onComplete(reusable) {
      if (out.complete !== null) throw new Error("completed twice");
      out.complete = reusable;
    },
    onError(reason) {
      out.error = reason;
    },
  });
  parser.reset(options.head === true);
  for (const piece of pieces) parser.execute(typeof piece === "string" ? Buffer.from(piece, "latin1") : piece);
  if (options.eof) parser.eof();
  if (heads > 1) throw new Error("more than one final head");
  return { ...out, parser };
}

/** Every split of `text` into pieces at the given cut points. */
function split(text: string, cuts: number[]): string[] {
  const points = [...new Set(cuts.map((c) => c % (text.length + 1)))].sort((a, b) => a - b);
  const pieces: string[] = [];
  let last = 0;
  for (const p of points) {
    pieces.push(text.slice(last, p));
    last = p;
  }
  pieces.push(text.slice(last));
  return pieces.filter((p) => p.length > 0);
}

describe("response head (RFC 9112 §4, §5)", () => {
  it("parses status, lower-cased names and trimmed values", () => {
    const r = parse(["HTTP/1.1 201 Created\r\nContent-Type: text/plain\r\nX-Two:  a b \t\r\ncontent-length: 2\r\n\r\nok"]);
    expect(r.status).toBe(201);
    expect(r.headers).toEqual(["content-type", "text/plain", "x-two", "a b", "content-length", "2"]);
    expect(r.body).toBe("ok");
    expect(r.complete).toBe(true);
  });

  it("accepts a status line without a reason phrase, and obs-text in values", () => {
    const r = parse(["HTTP/1.1 200\r\nX-Latin: caf\xe9\r\nContent-Length: 0\r\n\r\n"]);
    expect(r.status).toBe(200);
    expect(r.headers).toEqual(["x-latin", "caf\xe9", "content-length", "0"]);
    expect(r.complete).toBe(true);
  });

  const refused: [string, string, ParseError][] = [
    ["HTTP/2 status line", "HTTP/2 200 OK\r\n\r\n", "bad_status_line"],
    ["HTTP/1.2", "HTTP/1.2 200 OK\r\n\r\n", "bad_status_line"],
    ["two-digit status", "HTTP/1.1 20 OK\r\n\r\n", "bad_status_line"],
    ["status below 100", "HTTP/1.1 099 OK\r\n\r\n", "bad_status_line"],
    ["no space after the status", "HTTP/1.1 200OK\r\n\r\n", "bad_status_line"],
    ["not HTTP", "ICY 200 OK\r\n\r\n", "bad_status_line"],
    ["lower-case protocol", "http/1.1 200 OK\r\n\r\n", "bad_status_line"],
    ["control character in the reason", "HTTP/1.1 200 O\x01K\r\n\r\n", "bad_status_line"],
    ["obs-fold", "HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 0\r\n\r\n", "obs_fold"],
    ["obs-fold with a tab", "HTTP/1.1 200 OK\r\nX-A: a\r\n\tb\r\n\r\n", "obs_fold"],
    ["bare LF inside the head", "HTTP/1.1 200 OK\r\nX-A: a\nSet-Cookie: x=y\r\nContent-Length: 0\r\n\r\n", "bad_line_end"],
    ["bare LF ending the status line", "HTTP/1.1 200 OK\nX-A: a\r\n\r\n", "bad_status_line"],
    ["bare CR inside a value", "HTTP/1.1 200 OK\r\nX-A: a\rSet-Cookie: x=y\r\n\r\n", "bad_line_end"],
    ["NUL in a value", "HTTP/1.1 200 OK\r\nX-A: a\x00b\r\n\r\n", "bad_header_value"],
    ["DEL in a value", "HTTP/1.1 200 OK\r\nX-A: a\x7fb\r\n\r\n", "bad_header_value"],
    ["space before the colon", "HTTP/1.1 200 OK\r\nX-A : b\r\n\r\n", "bad_header_name"],
    ["space inside a name", "HTTP/1.1 200 OK\r\nX A: b\r\n\r\n", "bad_header_name"],
    ["empty name", "HTTP/1.1 200 OK\r\n: b\r\n\r\n", "bad_header_name"],
    ["line without a colon", "HTTP/1.1 200 OK\r\nX-A\r\n\r\n", "bad_header_name"],
    ["NUL in a name", "HTTP/1.1 200 OK\r\nX-\x00A: b\r\n\r\n", "bad_header_name"],
    ["101 Switching Protocols", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n", "upgrade"],
    ["two different Content-Length", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok", "bad_content_length"],
    ["a Content-Length list that differs", "HTTP/1.1 200 OK\r\nContent-Length: 2, 3\r\n\r\nok", "bad_content_length"],
    ["a Content-Length list of one value", "HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\nok", "bad_content_length"],
    ["a signed Content-Length", "HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\nok", "bad_content_length"],
    ["a hex Content-Length", "HTTP/1.1 200 OK\r\nContent-Length: 0x2\r\n\r\nok", "bad_content_length"],
    ["an empty Content-Length", "HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\nok", "bad_content_length"],
    ["a huge Content-Length", "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n", "bad_content_length"],
    [
      "Content-Length with Transfer-Encoding",
      "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
      "length_and_chunked",
    ],
    ["Transfer-Encoding gzip", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nabc", "bad_transfer_encoding"],
    [
      "Transfer-Encoding gzip, chunked",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
      "bad_transfer_encoding",
    ],
    [
      "chunked twice",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
      "bad_transfer_encoding",
    ],
    ["Transfer-Encoding in HTTP/1.0", "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "bad_transfer_encoding"],
  ];
  for (const [name, bytes, error] of refused) {
    it(`refuses ${name}`, () => {
      const r = parse([bytes]);
      expect(r.error).toBe(error);
      expect(r.status).toBe(0);
      expect(r.complete).toBeNull();
    });
  }

  it("refuses header fields of 16 KiB or more (undici's limit), fields counted without syntax", () => {
    const fields = (n: number) => `HTTP/1.1 200 OK\r\nX-Big: ${"a".repeat(n - 5)}\r\nContent-Length: 0\r\n\r\n`;
    // "x-big" + value, plus "content-length" + "0".
    expect(parse([fields(MAX_FIELD_BYTES - 16)]).complete).toBe(true);
    expect(parse([fields(MAX_FIELD_BYTES - 15)]).error).toBe("head_too_large");
  });

  it("refuses a head over 64 KiB, whole or in pieces, without waiting for its end", () => {
    const big = `HTTP/1.1 200 OK\r\nX-Big: ${"a".repeat(MAX_HEAD_BYTES)}\r\n\r\n`;
    expect(parse([big]).error).toBe("head_too_large");
    const pieces = split(
      big,
      Array.from({ length: 40 }, (_, i) => i * 2000),
    );
    expect(parse(pieces).error).toBe("head_too_large");
    // Without a terminator at all: refused once 64 KiB arrived.
    expect(parse([`HTTP/1.1 200 OK\r\n${"X: y\r\n".repeat(11_000)}`]).error).toBe("head_too_large");
  });

  it("refuses more than 200 header lines", () => {
    const ok = `HTTP/1.1 200 OK\r\n${"X: y\r\n".repeat(MAX_HEADER_LINES - 1)}Content-Length: 0\r\n\r\n`;
    expect(parse([ok]).complete).toBe(true);
    const many = `HTTP/1.1 200 OK\r\n${"X: y\r\n".repeat(MAX_HEADER_LINES)}Content-Length: 0\r\n\r\n`;
    expect(parse([many]).error).toBe("too_many_headers");
  });
});

describe("framing (RFC 9112 §6.3)", () => {
  it("Content-Length: digits only, once", () => {
    expect(parseContentLength("12")).toBe(12);
    expect(parseContentLength("007")).toBe(7);
    for (const bad of ["", " ", "1 2", "12,12", "12, 12", "-1", "+1", "1e3", "1.0", "0x10", "1234567890123456"])
      expect(parseContentLength(bad)).toBe(-1);
    const twice = parse(["HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok"]);
    expect(twice.error).toBe("bad_content_length");
    expect(twice.status).toBe(0);
  });

  it("no body for HEAD, 204 and 304, whatever the headers announce", () => {
    expect(parse(["HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"], { head: true }).complete).toBe(true);
    expect(parse(["HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"], { head: true }).complete).toBe(true);
    expect(parse(["HTTP/1.1 204 No Content\r\n\r\n"]).complete).toBe(true);
    expect(parse(["HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n"]).complete).toBe(true);
    // A body sent anyway is bytes after the response: the connection is not reused.
    expect(parse(["HTTP/1.1 204 No Content\r\n\r\nsurprise"]).complete).toBe(false);
  });

  it("skips 1xx responses (100, 103) and reads the final one", () => {
    const r = parse([
      "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n",
      "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    ]);
    expect(r.status).toBe(200);
    expect(r.headers).toEqual(["content-length", "2"]);
    expect(r.body).toBe("ok");
    expect(r.complete).toBe(true);
    const flood = parse(["HTTP/1.1 100 Continue\r\n\r\n".repeat(17)]);
    expect(flood.error).toBe("too_many_interim");
  });

  it("a body without length runs to the end of the connection and is never reused", () => {
    const r = parse(["HTTP/1.1 200 OK\r\n\r\nsome", " more"], { eof: true });
    expect(r.body).toBe("some more");
    expect(r.complete).toBe(false);
  });

  it("a Content-Length body cut short is not complete", () => {
    const r = parse(["HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"], { eof: true });
    expect(r.body).toBe("abc");
    expect(r.complete).toBeNull();
  });

  it("Connection: close and HTTP/1.0 are complete but not reusable", () => {
    expect(parse(["HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"]).complete).toBe(false);
    expect(parse(["HTTP/1.1 200 OK\r\nConnection: x-a, Close\r\nContent-Length: 0\r\n\r\n"]).complete).toBe(false);
    expect(parse(["HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n"]).complete).toBe(false);
    const r = parse(["HTTP/1.1 200 OK\r\nKeep-Alive: timeout=5, max=100\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n"]);
    expect(r.complete).toBe(true);
    expect(r.parser.keepAliveHint).toBe(5_000);
  });

  it("bytes after the end of a response make the connection unusable", () => {
    const r = parse(["HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nSMUGGLED"]);
    expect(r.body).toBe("ok");
    expect(r.complete).toBe(false);
  });
});

describe("chunked bodies (RFC 9112 §7.1)", () => {
  const chunked =
    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" +
    "5;name=value;other\r\nhello\r\n" +
    '1 ; q="x y"\r\n \r\n' +
    "00005\r\nworld\r\n" +
    "0\r\nX-Trailer: dropped\r\nServer-Timing: db;dur=5\r\n\r\n";

  it("decodes sizes, extensions and trailers (which are dropped)", () => {
    const r = parse([chunked]);
    expect(r.body).toBe("hello world");
    expect(r.complete).toBe(true);
    expect(r.headers).toEqual(["transfer-encoding", "chunked"]);
  });

  it("gives the same result one byte at a time", () => {
    const r = parse(chunked.split(""));
    expect(r.body).toBe("hello world");
    expect(r.complete).toBe(true);
  });

  it("gives the same result however the bytes are split (property)", () => {
    fc.assert(
      fc.property(fc.array(fc.nat(400), { maxLength: 12 }), (cuts) => {
        const r = parse(split(chunked, cuts));
        expect(r.error).toBeNull();
        expect(r.body).toBe("hello world");
        expect(r.complete).toBe(true);
      }),
    );
  });

  const refused: [string, string, ParseError][] = [
    ["a size that is not hex", "zz\r\nok\r\n0\r\n\r\n", "bad_chunk"],
    ["an empty size", "\r\nok\r\n0\r\n\r\n", "bad_chunk"],
    ["a 0x prefix", "0x2\r\nok\r\n0\r\n\r\n", "bad_chunk"],
    ["whitespace after the size without an extension", "2 \r\nok\r\n0\r\n\r\n", "bad_chunk"],
    ["whitespace before the size", " 2\r\nok\r\n0\r\n\r\n", "bad_chunk"],
    ["a bare LF after the size", "2\nok\r\n0\r\n\r\n", "bad_chunk"],
    ["a bare CR after the size", "2\rok\r\n0\r\n\r\n", "bad_chunk"],
    ["data longer than its size", "2\r\nokk\r\n0\r\n\r\n", "bad_chunk"],
    ["a bare LF after the data", "2\r\nok\n0\r\n\r\n", "bad_chunk"],
    ["a control character in an extension", "2;a=\x01\r\nok\r\n0\r\n\r\n", "bad_chunk"],
    ["an oversized extension", `2;${"a".repeat(5000)}\r\nok\r\n0\r\n\r\n`, "bad_chunk"],
    ["a size past 2^53", "fffffffffffffffff\r\n", "bad_chunk"],
    ["obs-fold in the trailers", "0\r\nX: a\r\n b\r\n\r\n", "obs_fold"],
    ["a bare LF in the trailers", "0\r\nX: a\nY: b\r\n\r\n", "bad_trailer"],
    ["a trailer without a colon", "0\r\nX\r\n\r\n", "bad_trailer"],
    ["a bare LF ending the trailers", "0\r\n\n", "bad_trailer"],
  ];
  for (const [name, body, error] of refused) {
    it(`refuses ${name}`, () => {
      const r = parse([`HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n${body}`]);
      expect(r.status).toBe(200);
      expect(r.error).toBe(error);
      expect(r.complete).toBeNull();
    });
  }

  it("a chunked body cut short is not complete", () => {
    const r = parse(["HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel"], { eof: true });
    expect(r.body).toBe("hel");
    expect(r.complete).toBeNull();
  });
});

describe("whatever the upstream sends", () => {
  it("never throws, reports one outcome, and completes only with the framed body (property)", () => {
    const piece = fc.oneof(
      fc.constantFrom(
        "HTTP/1.1 200 OK\r\n",
        "HTTP/1.1 100 Continue\r\n",
        "Content-Length: 3\r\n",
        "Transfer-Encoding: chunked\r\n",
        "Connection: close\r\n",
        "\r\n",
        "\n",
        "\r",
        "3\r\nabc\r\n",
        "0\r\n\r\n",
        " ",
        "\x00",
        ":",
      ),
      fc.string({ maxLength: 8 }),
    );
    fc.assert(
      fc.property(fc.array(piece, { maxLength: 16 }), fc.boolean(), (pieces, eof) => {
        const r = parse(pieces, { eof });
        expect(r.error !== null && r.complete !== null).toBe(false);
        if (r.complete !== null && r.parser.contentLength !== -1) expect(r.body.length).toBe(r.parser.contentLength);
      }),
      { numRuns: 2_000 },
    );
  });

  it("refuses a header value carrying CR, LF or NUL wherever it sits (property)", () => {
    fc.assert(
      fc.property(
        fc.string({ maxLength: 10 }),
        fc.constantFrom("\r", "\n", "\x00"),
        fc.string({ maxLength: 10 }),
        (before, bad, after) => {
          fc.pre(!`${before}${bad}${after}`.includes("\r\n"));
          const r = parse([`HTTP/1.1 200 OK\r\nX-A: ${before}${bad}${after}\r\nContent-Length: 0\r\n\r\n`]);
          expect(r.complete).toBeNull();
          expect(r.status).toBe(0);
        },
      ),
    );
  });
});
