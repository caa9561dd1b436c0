/**
 * `https:` upstreams: the h1 client speaks TLS with SNI, checks the certificate against
 * the trusted authorities, and keeps the connection alive like a plain one; and a
 * router process trusts a private authority through NODE_EXTRA_CA_CERTS.
 */
import { createHash } from "node:crypto";
import { createServer, type Server } from "node:https";
import type { AddressInfo } from "node:net";
import type { TLSSocket } from "node:tls";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { contextKeysFrom, verifyTenantContext } from "@portcullis/shared";
import { h1Suite } from "../helpers/h1-harness.ts";
import { send } from "../helpers/http.ts";
import { spawnRouter } from "../helpers/router-process.ts";
import { SECRETS, startTestStack, type TestStack } from "../helpers/stack.ts";
import { makeTestCerts, type TestCerts } from "../helpers/tls-certs.ts";

const h = h1Suite();

interface Secure {
  server: Server;
  port: number;
  /** TLS connections accepted, and the SNI name each asked for. */
  names: (string | false | null)[];
  /** Requests that reached the app. */
  hits: number;
}

async function secureUpstream(certs: TestCerts): Promise<Secure> {
  const s: Secure = { server: null as unknown as Server, port: 0, names: [], hits: 0 };
  s.server = createServer({ key: certs.key, cert: certs.cert }, (req, res) => {
    s.hits++;
    const hash = createHash("sha256");
    let bytes = 0;
    req.on("data", (c: Buffer) => {
      bytes += c.length;
      hash.update(c);
    });
    req.on("end", () => {
      const signature = verifyTenantContext(req, contextKeysFrom(SECRETS.CONTEXT_SIGNING_SECRET));
      res.end(JSON.stringify({ path: req.url, bytes, sha: hash.digest("hex"), signatureValid: signature.ok }));
    });
  });
  s.server.on("secureConnection", (socket: TLSSocket) => s.names.push(socket.servername));
  await new Promise<void>((r) => s.server.listen(0, "127.0.0.1", r));
  s.port = (s.server.address() as AddressInfo).port;
  return s;
}

describe("https upstreams", () => {
  let certs: TestCerts;
  let app: Secure;
  beforeAll(async () => {
    certs = makeTestCerts(["DNS:localhost", "IP:127.0.0.1"]);
    app = await secureUpstream(certs);
  });
  afterAll(async () => {
    app.server.closeAllConnections();
    await new Promise<void>((r) => app.server.close(() => r()));
    certs.remove();
  });

  it("forwards over TLS with the origin's name as SNI, bodies included, on one kept-alive connection", async () => {
    const fr = await h.setup({ ca: certs.ca }, [`https://localhost:${app.port}`]);
    const before = app.names.length;
    const get = await send(fr.port, "x", "/a?b=c");
    expect(get.status).toBe(200);
    expect(get.json()).toMatchObject({ path: "/a?b=c", bytes: 0 });
    const body = "p".repeat(50_000);
    const post = await send(fr.port, "x", "/upload", { method: "POST", body });
    expect(post.json()).toMatchObject({
      path: "/upload",
      bytes: body.length,
      sha: createHash("sha256").update(body).digest("hex"),
    });
    expect(app.names.slice(before)).toEqual(["localhost"]);
  });

  it("sends no SNI for an address origin, and checks the certificate against the address", async () => {
    const fr = await h.setup({ ca: certs.ca }, [`https://127.0.0.1:${app.port}`]);
    const before = app.names.length;
    expect((await send(fr.port, "x", "/")).status).toBe(200);
    expect(app.names.slice(before)).toEqual([false]);
  });

  it("a certificate no trusted authority signed: 502 and the app never reached", async () => {
    const fr = await h.setup({}, [`https://localhost:${app.port}`]);
    const hits = app.hits;
    const res = await send(fr.port, "x", "/");
    expect(res.status).toBe(502);
    expect(res.json().error.code).toBe("upstream_unavailable");
    expect(app.hits).toBe(hits);
  });

  it("a certificate for another name: 502 and the app never reached", async () => {
    const other = makeTestCerts(["DNS:other.test"]);
    const wrong = await secureUpstream(other);
    try {
      const fr = await h.setup({ ca: other.ca }, [`https://localhost:${wrong.port}`]);
      const res = await send(fr.port, "x", "/");
      expect(res.status).toBe(502);
      expect(wrong.hits).toBe(0);
    } finally {
      wrong.server.closeAllConnections();
      wrong.server.close();
      other.remove();
    }
  });

  it("through a router process that trusts a private authority (NODE_EXTRA_CA_CERTS): signed context, body intact", async () => {
    let stack: TestStack | undefined;
    let router: Awaited<ReturnType<typeof spawnRouter>> | undefined;
    try {
      stack = await startTestStack({ backend: "real" });
      await stack.tenant("secure");
      const put = await stack.admin("PUT", "/v1/tenants/secure/upstreams", { urls: [`https://localhost:${app.port}`] });
      expect(put.status).toBe(200);
      await stack.cp.publisher.flush();
      router = await spawnRouter(stack, { NODE_EXTRA_CA_CERTS: certs.caFile });
      const body = JSON.stringify({ order: 1 });
      const res = await send(router.port, "secure.localhost", "/orders", { method: "POST", body });
      expect(res.status).toBe(200);
      expect(res.json()).toMatchObject({ path: "/orders", bytes: body.length, signatureValid: true });
      // The in-process router of the stack trusts no private authority: refused.
      const hits = app.hits;
      expect((await stack.request("secure.localhost", "/orders")).status).toBe(502);
      expect(app.hits).toBe(hits);
    } finally {
      await router?.stop();
      await stack?.close();
    }
  });
});
