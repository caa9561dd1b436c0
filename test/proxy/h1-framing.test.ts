/** The h1 upstream client: the request it writes and how it frames responses. Real sockets throughout (test/helpers/h1-harness.ts). */
import { connect } from "node:net";
import { describe, expect, it } from "vitest";
import { requestHead } from "../../router/src/proxy/h1.ts";
import { eventually, h1Suite, ok, request } from "../helpers/h1-harness.ts";

const h = h1Suite();

describe("request", () => {
  it("writes one head: request line, the prepared headers in order, nothing added", async () => {
    await h.setup();
    const before = h.up.heads.length;
    const a = await request(h.fr.port, "/a/b?c=d");
    expect(a.status).toBe(200);
    expect(h.up.heads[before]).toBe("GET /a/b?c=d HTTP/1.1\r\nhost: app.test\r\nx-request-id: req_test\r\n\r\n");
  });

  it("sends content-length: 0 for a body-less POST, as undici does", async () => {
    await h.setup();
    const before = h.up.heads.length;
    await request(h.fr.port, "/p", { method: "POST" });
    expect(h.up.heads[before]).toBe("POST /p HTTP/1.1\r\nhost: app.test\r\nx-request-id: req_test\r\ncontent-length: 0\r\n\r\n");
  });

  it("refuses a head a CR, LF or NUL would break: 502 and not one byte sent", async () => {
    await h.setup();
    const accepted = h.up.accepted;
    const a = await request(h.fr.port, "/", { headers: { "x-extra": "a\\rInjected: yes" } });
    expect(a.status).toBe(502);
    expect(JSON.parse(a.body.toString()).error.code).toBe("upstream_unavailable");
    expect(h.up.accepted).toBe(accepted);
    expect(h.fr.results[0]?.failure).toBe("upstream_unavailable");
    for (const bad of ["a\r\nb", "a\nb", "a\0b", "a\rb"]) expect(requestHead("GET", "/", ["x", bad])).toBeNull();
    expect(requestHead("GET", "/", ["bad name", "v"])).toBeNull();
    expect(requestHead("GET", "/a b", [])).toBeNull();
    expect(requestHead("GET", "*", [])).toBeNull();
  });
});

describe("framing", () => {
  it("204: no Content-Length goes to the client, whatever the upstream said (RFC 9110 §8.6)", async () => {
    await h.setup();
    h.up.scripts.push((s) => s.write("HTTP/1.1 204 No Content\r\nContent-Length: 40\r\n\r\n"));
    const client = connect(h.fr.port, "127.0.0.1");
    let raw = "";
    client.on("data", (d: Buffer) => (raw += d.toString("latin1")));
    client.write("GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n");
    await eventually(() => (raw.match(/HTTP\/1\.1 /g) ?? []).length === 2);
    client.destroy();
    const [first, second] = raw.split(/(?=HTTP\/1\.1 )/);
    expect(first).toMatch(/^HTTP\/1\.1 204 /);
    expect(first?.toLowerCase()).not.toContain("content-length");
    expect(second).toMatch(/^HTTP\/1\.1 200 /);
  });

  it("Content-Length: body, headers lower-cased, hop-by-hop and Connection-named dropped, router headers win", async () => {
    await h.setup();
    h.up.scripts.push((s) =>
      s.write(
        "HTTP/1.1 201 Created\r\nContent-Type: text/plain\r\nConnection: X-Secret\r\nX-Secret: 1\r\nKeep-Alive: timeout=30\r\n" +
          "X-Request-Id: upstream-chosen\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nContent-Length: 5\r\n\r\nhello",
      ),
    );
    const a = await request(h.fr.port);
    expect(a.status).toBe(201);
    expect(a.body.toString()).toBe("hello");
    expect(a.complete).toBe(true);
    expect(a.headers["content-type"]).toBe("text/plain");
    expect(a.headers["content-length"]).toBe("5");
    expect(a.headers["x-secret"]).toBeUndefined();
    expect(a.headers["keep-alive"]).toBeUndefined();
    expect(a.headers["x-request-id"]).toBe("req_test");
    expect(a.headers["set-cookie"]).toEqual(["a=1", "b=2"]);
    expect(a.rawHeaders.filter((h) => h.toLowerCase() === "content-length")).toHaveLength(1);
    expect(h.fr.results).toEqual([
      { status: 201, failure: null, bytesIn: 0, bytesOut: 5, upstream: h.up.url, upstreamMs: expect.any(Number) },
    ]);
  });

  it("chunked with extensions and trailers, one byte per TCP write", async () => {
    await h.setup();
    const bytes =
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" +
      '5;ext=1\r\nhello\r\n6 ; a="b"\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n';
    h.up.scripts.push((s) => {
      let i = 0;
      const next = () => {
        if (i < bytes.length) s.write(bytes[i++] as string, () => setImmediate(next));
      };
      next();
    });
    const a = await request(h.fr.port);
    expect(a.status).toBe(200);
    expect(a.body.toString()).toBe("hello world");
    expect(a.complete).toBe(true);
    expect(a.headers["x-trailer"]).toBeUndefined();
    // Framed cleanly: the connection is kept.
    const conn = h.lastConn();
    await request(h.fr.port);
    expect(h.lastConn()).toBe(conn);
  });

  it("a body delimited by the close passes whole and the connection is not reused", async () => {
    await h.setup();
    h.up.scripts.push((s) => s.end("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end"));
    const a = await request(h.fr.port);
    expect(a.body.toString()).toBe("until the end");
    expect(a.complete).toBe(true);
    const conn = h.lastConn();
    await request(h.fr.port);
    expect(h.lastConn()).not.toBe(conn);
  });

  it("HEAD, 204 and 304 have no body, and the connection is kept", async () => {
    await h.setup();
    const accepted = h.up.accepted;
    h.up.scripts.push((s) => s.write("HTTP/1.1 200 OK\r\nContent-Length: 42\r\n\r\n"));
    const head = await request(h.fr.port, "/", { method: "HEAD" });
    expect(head.status).toBe(200);
    expect(head.headers["content-length"]).toBe("42");
    expect(head.body.length).toBe(0);
    h.up.scripts.push((s) => s.write("HTTP/1.1 204 No Content\r\n\r\n"));
    expect((await request(h.fr.port)).status).toBe(204);
    h.up.scripts.push((s) => s.write('HTTP/1.1 304 Not Modified\r\nETag: "x"\r\n\r\n'));
    const nm = await request(h.fr.port);
    expect(nm.status).toBe(304);
    expect(nm.headers.etag).toBe('"x"');
    const last = await request(h.fr.port);
    expect(last.body.toString()).toMatch(/^ok-/);
    expect(h.up.accepted).toBe(accepted + 1);
  });

  it("skips 100 and 103 and forwards the final response", async () => {
    await h.setup();
    h.up.scripts.push((s) => {
      s.write("HTTP/1.1 100 Continue\r\n\r\n");
      setTimeout(() => s.write(`HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n${ok("final")}`), 10);
    });
    const a = await request(h.fr.port);
    expect(a.status).toBe(200);
    expect(a.body.toString()).toBe("final");
    expect(a.headers.link).toBeUndefined();
  });

  it("reuses one connection for sequential requests", async () => {
    await h.setup();
    const accepted = h.up.accepted;
    for (let i = 0; i < 5; i++) expect((await request(h.fr.port)).body.toString()).toBe(`ok-${accepted}`);
    expect(h.up.accepted).toBe(accepted + 1);
    expect(h.fr.client.connections).toBe(1);
  });

  it("does not reuse a connection after Connection: close", async () => {
    await h.setup();
    const accepted = h.up.accepted;
    h.up.scripts.push((s) => s.write(ok("bye", "Connection: close\r\n")));
    expect((await request(h.fr.port)).body.toString()).toBe("bye");
    await request(h.fr.port);
    expect(h.up.accepted).toBe(accepted + 2);
    await eventually(() => h.up.closed.has(accepted));
  });

  it("honours a Keep-Alive timeout hint shorter than the threshold: not reused", async () => {
    await h.setup();
    const accepted = h.up.accepted;
    h.up.scripts.push((s) => s.write(ok("short", "Keep-Alive: timeout=1\r\n")));
    await request(h.fr.port);
    await request(h.fr.port);
    expect(h.up.accepted).toBe(accepted + 2);
  });
});
