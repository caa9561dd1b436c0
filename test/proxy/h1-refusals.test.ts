/** The h1 upstream client: responses it refuses, bytes that belong to no request, and failures. Real sockets throughout (test/helpers/h1-harness.ts). */
import { connect } from "node:net";
import { describe, expect, it } from "vitest";
import { deadOrigin, eventually, h1Suite, ok, request, upstream } from "../helpers/h1-harness.ts";

const h = h1Suite();

describe("refused responses: 502, the connection closed, the next request on a new one", () => {
  const cases: [string, string][] = [
    ["101 Switching Protocols", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"],
    ["two different Content-Length", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok"],
    [
      "Content-Length and Transfer-Encoding",
      "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    ],
    ["Transfer-Encoding gzip", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nxyz"],
    ["obs-fold", "HTTP/1.1 200 OK\r\nX-A: a\r\n folded\r\nContent-Length: 2\r\n\r\nok"],
    ["NUL in a header", "HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 2\r\n\r\nok"],
    ["bare LF in the head", "HTTP/1.1 200 OK\r\nX-A: a\nSet-Cookie: s=evil\r\nContent-Length: 2\r\n\r\nok"],
    ["bare CR in the head", "HTTP/1.1 200 OK\r\nX-A: a\rSet-Cookie: s=evil\r\nContent-Length: 2\r\n\r\nok"],
    ["an invalid status line", "HTTP/1.1 2000 OK\r\nContent-Length: 2\r\n\r\nok"],
    ["an invalid header name", "HTTP/1.1 200 OK\r\nX(A): b\r\nContent-Length: 2\r\n\r\nok"],
    ["a head over 64 KiB", `HTTP/1.1 200 OK\r\nX-Big: ${"a".repeat(70_000)}\r\nContent-Length: 2\r\n\r\nok`],
  ];
  for (const [name, bytes] of cases) {
    it(name, async () => {
      await h.setup();
      const accepted = h.up.accepted;
      h.up.scripts.push((s) => s.write(bytes));
      const a = await request(h.fr.port);
      expect(a.status).toBe(502);
      expect(JSON.parse(a.body.toString()).error.code).toBe("upstream_unavailable");
      expect(a.headers["set-cookie"]).toBeUndefined();
      expect(h.fr.results[0]).toMatchObject({ status: 502, failure: "upstream_unavailable" });
      await eventually(() => h.up.closed.has(accepted));
      expect((await request(h.fr.port)).body.toString()).toBe(`ok-${accepted + 1}`);
    });
  }
});

describe("bytes that belong to no request", () => {
  const POISON = "HTTP/1.1 200 OK\r\nContent-Length: 8\r\nSet-Cookie: s=evil\r\n\r\nSMUGGLED";

  it("a second response glued after the first: the first passes, the connection is dropped", async () => {
    await h.setup();
    const accepted = h.up.accepted;
    h.up.scripts.push((s) => s.write(`${ok("first")}${POISON}`));
    const a = await request(h.fr.port);
    expect(a.body.toString()).toBe("first");
    await eventually(() => h.up.closed.has(accepted));
    const b = await request(h.fr.port);
    expect(b.body.toString()).toBe(`ok-${accepted + 1}`);
    expect(b.headers["set-cookie"]).toBeUndefined();
  });

  it("a second response in a later packet", async () => {
    await h.setup();
    const accepted = h.up.accepted;
    h.up.scripts.push((s) => {
      s.write(ok("first"));
      setTimeout(() => s.write(POISON), 30);
    });
    expect((await request(h.fr.port)).body.toString()).toBe("first");
    await eventually(() => h.up.closed.has(accepted));
    const b = await request(h.fr.port);
    expect(b.body.toString()).toBe(`ok-${accepted + 1}`);
    expect(b.body.toString()).not.toContain("SMUGGLED");
  });

  it("extra body bytes past Content-Length never reach the next request", async () => {
    await h.setup({ connections: 1 });
    const accepted = h.up.accepted;
    h.up.scripts.push((s) => s.write(`${ok("ab")}SMUGGLED`));
    const answers = await Promise.all([request(h.fr.port), request(h.fr.port)]);
    expect(answers.map((a) => a.body.toString()).sort()).toEqual(["ab", `ok-${accepted + 1}`]);
  });
});

describe("failures", () => {
  it("upstream closes mid-body: the client's response is cut, not complete", async () => {
    await h.setup();
    h.up.scripts.push((s) => {
      s.write("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial");
      setTimeout(() => s.destroy(), 30);
    });
    const a = await request(h.fr.port);
    expect(a.status).toBe(200);
    expect(a.complete).toBe(false);
    expect(a.body.toString()).toBe("partial");
    expect(h.fr.results[0]).toMatchObject({ status: 200, failure: "upstream_unavailable" });
  });

  it("an invalid chunk mid-body: cut, not complete", async () => {
    await h.setup();
    h.up.scripts.push((s) => s.write("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\nzz\r\n"));
    const a = await request(h.fr.port);
    expect(a.status).toBe(200);
    expect(a.complete).toBe(false);
  });

  it("connect refused: the next origin answers", async () => {
    await h.setup({}, [await deadOrigin(), h.up.url]);
    const a = await request(h.fr.port);
    expect(a.status).toBe(200);
    expect(h.fr.results[0]).toMatchObject({ status: 200, failure: null, upstream: h.up.url });
  });

  it("connect refused on the only origin: 502", async () => {
    await h.setup({}, [await deadOrigin()]);
    const a = await request(h.fr.port);
    expect(a.status).toBe(502);
    expect(h.fr.results[0]).toMatchObject({ status: 502, failure: "upstream_unavailable" });
  });

  it("an idempotent request whose connection closes before any response byte goes to the next origin", async () => {
    const other = await upstream();
    try {
      await h.setup({}, [h.up.url, other.url]);
      h.up.scripts.push((s) => s.destroy());
      const a = await request(h.fr.port);
      expect(a.status).toBe(200);
      expect(h.fr.results[0]?.upstream).toBe(other.url);
    } finally {
      await other.close();
    }
  });

  it("a POST whose connection closes before any response byte is not retried", async () => {
    const other = await upstream();
    try {
      await h.setup({}, [h.up.url, other.url]);
      h.up.scripts.push((s) => s.destroy());
      const a = await request(h.fr.port, "/", { method: "POST" });
      expect(a.status).toBe(502);
      expect(other.heads).toHaveLength(0);
    } finally {
      await other.close();
    }
  });

  it("the keep-alive race: a reused connection found closed is retried once on a fresh one", async () => {
    await h.setup();
    const accepted = h.up.accepted;
    expect((await request(h.fr.port)).body.toString()).toBe(`ok-${accepted}`);
    // The upstream gives up the idle connection as the next request arrives on it.
    h.up.scripts.push((s) => s.destroy());
    const a = await request(h.fr.port);
    expect(a.status).toBe(200);
    expect(a.body.toString()).toBe(`ok-${accepted + 1}`);
    expect(h.fr.results[1]).toMatchObject({ status: 200, failure: null });
  });

  it("the keep-alive race is retried once only", async () => {
    await h.setup();
    await request(h.fr.port);
    h.up.scripts.push(
      (s) => s.destroy(),
      (s) => s.destroy(),
    );
    expect((await request(h.fr.port)).status).toBe(502);
  });

  it("no headers within headersTimeout: 504 upstream_timeout, connection closed", async () => {
    await h.setup({ headersTimeoutMs: 100 });
    const accepted = h.up.accepted;
    h.up.scripts.push(() => {});
    const a = await request(h.fr.port);
    expect(a.status).toBe(504);
    expect(JSON.parse(a.body.toString()).error.code).toBe("upstream_timeout");
    expect(h.fr.results[0]).toMatchObject({ status: 504, failure: "upstream_timeout" });
    await eventually(() => h.up.closed.has(accepted));
  });

  it("a body that stalls past bodyTimeout: the client's response is cut", async () => {
    await h.setup({ bodyTimeoutMs: 100 });
    h.up.scripts.push((s) => s.write("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"));
    const a = await request(h.fr.port);
    expect(a.status).toBe(200);
    expect(a.complete).toBe(false);
    expect(h.fr.results[0]).toMatchObject({ failure: "upstream_timeout" });
  });

  it("the client going away destroys the upstream connection", async () => {
    await h.setup();
    const accepted = h.up.accepted;
    let sent!: () => void;
    const headersSent = new Promise<void>((r) => (sent = r));
    h.up.scripts.push((s) => s.write("HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nsome", () => sent()));
    const client = connect(h.fr.port, "127.0.0.1");
    client.on("error", () => {});
    client.write("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    await headersSent;
    await new Promise<void>((r) => client.once("data", () => r()));
    client.destroy();
    await eventually(() => h.up.closed.has(accepted));
    await eventually(() => h.fr.results.length === 1);
    expect(h.fr.results[0]?.status).toBe(0);
    expect(h.fr.client.connections).toBe(0);
  });
});
