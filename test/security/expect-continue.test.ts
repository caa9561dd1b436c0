/**
 * `Expect: 100-continue` before the decision. Node answers
 * `100 Continue` on its own unless told otherwise, so a client the router is about to
 * refuse was invited to upload its body anyway. The router sends 100 only once the
 * request is allowed, just before forwarding; a refusal is the first (and only)
 * answer, with the connection closed since the body is unread. Any other expectation
 * is refused with 417 (RFC 9110 §10.1.1), decided and audited like any refusal.
 */
import { connect } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateApiKey } from "@portcullis/shared";
import { startTestStack, type TestStack } from "../helpers/stack.ts";
import { exchange, expectRefused, type Guarded, parseResponses, req } from "./lib.ts";

interface Conversation {
  /** Everything received before the body was sent (or before the end). */
  first: string;
  /** Everything received in the whole exchange. */
  raw: string;
  closed: boolean;
}

/**
 * Send `head`, wait for the first bytes back (or `waitMs` of silence), then send
 * `body` if the server is still open, and collect everything until it goes quiet.
 */
function converse(port: number, head: string, body: string, waitMs = 3_000): Promise<Conversation> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, "127.0.0.1");
    const chunks: Buffer[] = [];
    let first: string | null = null;
    let closed = false;
    let quiet: NodeJS.Timeout | undefined;
    const done = () => {
      clearTimeout(quiet);
      clearTimeout(overall);
      clearTimeout(wait);
      socket.destroy();
      const raw = Buffer.concat(chunks).toString("latin1");
      resolve({ first: first ?? raw, raw, closed });
    };
    const overall = setTimeout(done, 10_000);
    const sendBody = () => {
      if (first !== null) return;
      first = Buffer.concat(chunks).toString("latin1");
      if (!socket.destroyed && socket.writable) socket.write(body);
    };
    // No answer at all within `waitMs`: send the body anyway (RFC 9110 §10.1.1 lets a
    // client stop waiting), so a router that never sends 100 still gets it.
    const wait = setTimeout(sendBody, waitMs);
    socket.on("data", (c: Buffer) => {
      chunks.push(c);
      // The first bytes have arrived: give the rest of that answer a moment, then send.
      if (first === null) setTimeout(sendBody, 100);
      clearTimeout(quiet);
      quiet = setTimeout(done, 600);
    });
    socket.on("close", () => {
      closed = true;
      done();
    });
    socket.on("error", (e) => {
      closed = true;
      if (chunks.length > 0) done();
      else reject(e);
    });
    socket.on("connect", () => socket.write(head));
  });
}

describe("Expect: 100-continue is answered only after the decision", () => {
  let stack: TestStack;
  let acme: Awaited<ReturnType<TestStack["tenant"]>>;
  let g: Guarded;
  let globexKey = "";

  beforeAll(async () => {
    stack = await startTestStack({ backend: "real" });
    acme = await stack.tenant("acme");
    await stack.tenant("globex");
    globexKey = (await stack.admin("POST", "/v1/tenants/globex/keys", { name: "k" })).json().key;
    await stack.cp.publisher.flush();
    g = { stack, sentinels: [] };
  });
  afterAll(async () => {
    await stack?.close();
  });

  const head = (...lines: string[]) => req("POST /upload HTTP/1.1", ...lines, "Expect: 100-continue", "Content-Length: 5");

  for (const [name, lines, status, reason] of [
    ["an unknown host", ["Host: nobody.localhost"], 404, "unknown_host"],
    [
      "an invented key on the API hostname",
      ["Host: api.localhost", `Authorization: Bearer ${generateApiKey().key}`],
      401,
      "key_unknown",
    ],
    ["another tenant's key", ["Host: acme.localhost", `X-API-Key: ${"GLOBEX"}`], 401, "key_other_tenant"],
    ["no key on the API hostname", ["Host: api.localhost"], 401, "key_missing"],
  ] as const) {
    it(`${name}: the refusal is the first answer, never 100 Continue, and the body is not read — RFC 9110 §10.1.1`, async () => {
      const contacts = stack.upstreamContacts;
      const withKey = lines.map((l) => l.replace("GLOBEX", globexKey));
      const c = await converse(stack.port, head(...withKey), "hello");
      expect(c.first.startsWith(`HTTP/1.1 ${status} `), c.raw.slice(0, 200)).toBe(true);
      expect(c.raw).not.toContain("HTTP/1.1 100");
      const responses = parseResponses(c.raw);
      expect(responses.map((r) => r.status)).toEqual([status]);
      // The body is unread: the connection is closed rather than read past it.
      expect(responses[0]!.headers.connection).toBe("close");
      expect(c.closed).toBe(true);
      const requestId = responses[0]!.headers["x-request-id"] as string;
      const events = await stack.auditFor(requestId);
      expect(events.map((e) => e.reason)).toEqual([reason]);
      expect(stack.upstreamContacts, "no upstream contacted").toBe(contacts);
    });
  }

  it("an allowed request gets 100 Continue, then sends its body, which the upstream receives — RFC 9110 §10.1.1", async () => {
    const before = acme.upstream.requests.length;
    const c = await converse(stack.port, head("Host: acme.localhost", "Connection: close"), "hello");
    expect(c.first, c.raw.slice(0, 200)).toBe("HTTP/1.1 100 Continue\r\n\r\n");
    const final = parseResponses(c.raw.slice(c.first.length));
    expect(final.map((r) => r.status)).toEqual([200]);
    const got = acme.upstream.requests.slice(before);
    expect(got.map((r) => [r.url, r.body])).toEqual([["/upload", "hello"]]);
    expect(got[0]!.headers.expect).toBeUndefined();
  });

  it("a body-size refusal declared up front is answered before 100 Continue", async () => {
    const patch = await stack.admin("PATCH", "/v1/tenants/acme", { limits: { maxBodyBytes: 3 } });
    expect(patch.status).toBe(200);
    await stack.cp.publisher.flush();
    try {
      const contacts = stack.upstreamContacts;
      let c: Conversation | undefined;
      // The limit reaches the router through invalidation: retry until it applies.
      for (let i = 0; i < 50; i++) {
        c = await converse(stack.port, head("Host: acme.localhost"), "hello");
        if (!c.raw.includes("HTTP/1.1 200")) break;
        await new Promise((r) => setTimeout(r, 50));
      }
      expect(c!.first.startsWith("HTTP/1.1 413 "), c!.raw.slice(0, 200)).toBe(true);
      expect(c!.raw).not.toContain("HTTP/1.1 100");
      expect(stack.upstreamContacts).toBe(contacts);
    } finally {
      await stack.admin("PATCH", "/v1/tenants/acme", { limits: { maxBodyBytes: null } });
      await stack.cp.publisher.flush();
    }
  });

  it("an expectation other than 100-continue is refused with 417, audited, never forwarded — RFC 9110 §10.1.1", async () => {
    const { exchange: ex } = await expectRefused(g, {
      name: "unknown expectation",
      source: "RFC 9110 §10.1.1",
      bytes: req("POST /upload HTTP/1.1", "Host: acme.localhost", "Expect: 200-ok", "Content-Length: 5"),
      status: 417,
      reason: "expectation_failed",
      close: true,
    });
    expect(ex.raw).not.toContain("HTTP/1.1 100");
  });

  it("a request with both the expectation and its body already sent is forwarded once (control)", async () => {
    const before = acme.upstream.requests.length;
    const ex = await exchange(
      stack.port,
      `POST /both HTTP/1.1\r\nHost: acme.localhost\r\nExpect: 100-continue\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello`,
    );
    // The body came with the head: 100 Continue is allowed but not needed (RFC 9110 §10.1.1).
    const rest = ex.raw.startsWith("HTTP/1.1 100 Continue\r\n\r\n") ? ex.raw.slice(25) : ex.raw;
    expect(parseResponses(rest).map((r) => r.status)).toEqual([200]);
    expect(acme.upstream.requests.slice(before).map((r) => r.body)).toEqual(["hello"]);
  });
});
