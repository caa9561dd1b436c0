/**
 * `verify` (Hono), `verifyNode` (Node http) and `verifyNode` as Express middleware
 * (Express itself, at the root and under a mount path), each on a real server on port 0, sent requests as an attacker would: no
 * signature, a forged one, a tampered context, a stale or future timestamp, a captured
 * signature replayed on another host, path or method, another tenant's key, a key
 * version the app does not hold, a repeated context header on a raw socket. Every
 * refusal is 401 with the same message; acceptance gives the typed tenant. The
 * router's own signer (`contextSigner`) is verified by the SDK here too.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { getRequestListener } from "@hono/node-server";
import { contextKeyToken, contextSigner } from "@portcullis/shared";
import express from "express";
import { Hono } from "hono";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { REFUSAL_MESSAGE, type TenantEnv, tenantOf, verify, verifyNode } from "@portcullis/sdk";
import { randomContextKey, signedHeaders, type TestTenant } from "@portcullis/sdk/testing";
import { raw, send } from "../helpers/http.ts";

const MASTER = "sdk-verify-test-master-secret-0123456789";
const ACME: TestTenant = { id: "ten_acme", slug: "acme", db: "pg-acme.internal:5432/acme", features: ["apiAccess"] };
const KEY_V1 = contextKeyToken(MASTER, ACME.id, 1);
const KEY_V2 = contextKeyToken(MASTER, ACME.id, 2);
const GLOBEX_KEY = contextKeyToken(MASTER, "ten_globex", 1);
const HOST = "acme.localhost";

const listen = (handler: (req: IncomingMessage, res: ServerResponse) => void) =>
  new Promise<Server>((resolve) => {
    const s = createServer(handler);
    s.listen(0, "127.0.0.1", () => resolve(s));
  });
const portOf = (s: Server) => (s.address() as AddressInfo).port;
const close = (s: Server) =>
  new Promise<void>((r) => {
    s.closeAllConnections();
    s.close(() => r());
  });

const servers: Record<string, Server> = {};
const accepted = (tenant: unknown) => JSON.stringify({ tenant });

beforeAll(async () => {
  const hono = new Hono<TenantEnv>();
  // The app holds both keys of a rotation, newest first.
  hono.use("*", verify({ keys: [KEY_V2, KEY_V1] }));
  hono.all("*", (c) => c.json({ tenant: c.var.tenant }));
  servers.hono = await listen(getRequestListener(hono.fetch));

  const guard = verifyNode({ keys: [KEY_V2, KEY_V1] });
  servers.node = await listen((req, res) => {
    const tenant = guard(req, res);
    if (!tenant) return;
    res.writeHead(200, { "content-type": "application/json" }).end(accepted(tenant));
  });

  // Express itself (5.x): the guard as middleware, the tenant on `req.tenant`.
  const app = express();
  app.use(verifyNode({ keys: [KEY_V2, KEY_V1] }));
  app.use((req, res) => {
    res
      .writeHead(200, { "content-type": "application/json" })
      .end(accepted((req as IncomingMessage & { tenant?: unknown }).tenant === tenantOf(req) ? tenantOf(req) : null));
  });
  servers.express = await listen(app);

  // Under a mount path Express rewrites `req.url` ("/orders?page=2" becomes "/?page=2");
  // the router signed what the client sent.
  const mounted = express();
  const orders = express.Router();
  orders.use(verifyNode({ keys: [KEY_V2, KEY_V1] }));
  orders.use((req, res) => {
    res.writeHead(200, { "content-type": "application/json" }).end(accepted({ seen: req.url, tenant: tenantOf(req)?.id }));
  });
  mounted.use("/orders", orders);
  servers.mounted = await listen(mounted);
});
afterAll(async () => {
  for (const s of Object.values(servers)) await close(s);
});

const signed = (over: Partial<Parameters<typeof signedHeaders>[0]> = {}) =>
  signedHeaders({ key: KEY_V1, tenant: ACME, host: HOST, target: "/orders?page=2", method: "GET", ...over });

describe.each(["hono", "node", "express"])("verify on a %s server", (kind) => {
  const port = () => portOf(servers[kind] as Server);
  const get = (headers: Record<string, string>, path = "/orders?page=2", method = "GET") =>
    send(port(), headers.host ?? HOST, path, { method, headers });

  async function refused(answer: Promise<Awaited<ReturnType<typeof send>>>, code: string) {
    const res = await answer;
    expect(res.status).toBe(401);
    expect(res.headers["content-type"]).toBe("application/json");
    expect(res.headers["cache-control"]).toBe("no-store");
    const body = res.json();
    expect(Object.keys(body)).toEqual(["error"]);
    expect(body.error.code).toBe(code);
    // One message for every reason: nothing about which field or byte failed.
    expect(body.error.message).toBe(REFUSAL_MESSAGE);
    return body;
  }

  it("accepts the router's signature and exposes the typed tenant", async () => {
    const res = await get(signed({ requestId: "req_accept_1" }));
    expect(res.status).toBe(200);
    expect(res.json().tenant).toEqual({
      id: "ten_acme",
      slug: "acme",
      database: { server: "pg-acme.internal:5432", database: "acme", binding: "pg-acme.internal:5432/acme" },
      features: ["apiAccess"],
      auth: "hostname",
      userId: null,
      keyId: null,
      requestId: "req_accept_1",
      source: "request",
    });
    // A signature of the rotation's new key verifies as well.
    expect((await get(signed({ key: KEY_V2 }))).status).toBe(200);
    // API-key and session contexts carry their ids.
    const withKey = await get(signed({ tenant: { ...ACME, auth: "api-key", keyId: "key_1", userId: "usr_1" } }));
    expect(withKey.json().tenant).toMatchObject({ auth: "api-key", keyId: "key_1", userId: "usr_1" });
  });

  it("accepts what the router's own signer signs (the signer in @portcullis/shared)", async () => {
    const headers = signed();
    const { "x-tenant-signature": _, host, ...context } = headers;
    const now = Date.now();
    const signature = contextSigner(MASTER)(
      ACME.id,
      { version: 1, previous: null },
      context,
      {
        method: "GET",
        host: HOST,
        target: "/orders?page=2",
      },
      now,
    );
    expect((await get({ ...headers, "x-tenant-signature": signature })).status).toBe(200);
    // During a rotation's overlap the router sends both signatures: either key verifies.
    const both = contextSigner(MASTER)(
      ACME.id,
      { version: 2, previous: { version: 1, until: now + 60_000 } },
      context,
      {
        method: "GET",
        host: HOST,
        target: "/orders?page=2",
      },
      now,
    );
    expect(both).toMatch(/^t=\d+,k=2,s=[0-9a-f]{64},k=1,s=[0-9a-f]{64}$/);
    expect((await get({ ...headers, "x-tenant-signature": both })).status).toBe(200);
  });

  it("refuses a request with no signature, and one with a signature of its own making", async () => {
    const { "x-tenant-signature": _, ...unsigned } = signed();
    const body = await refused(get({ ...unsigned, "x-request-id": "req_abc" }), "missing_signature");
    expect(body.error.requestId).toBe("req_abc");
    await refused(get({ ...signed(), "x-tenant-signature": "t=1,k=1,s=zz" }), "malformed_signature");
    // Forged: the right format, signed with a key the attacker made up.
    await refused(get(signed({ key: randomContextKey(1) })), "bad_signature");
  });

  it("refuses a context edited after signing (another tenant id, another database)", async () => {
    await refused(get({ ...signed(), "x-tenant-id": "ten_globex" }), "bad_signature");
    await refused(get({ ...signed(), "x-tenant-db": "pg-globex.internal:5432/globex" }), "bad_signature");
    await refused(get({ ...signed(), "x-tenant-auth": "session" }), "bad_signature");
  });

  it("refuses a stale or future signature (outside 5 minutes)", async () => {
    await refused(get(signed({ timestamp: Date.now() - 6 * 60_000 })), "stale_signature");
    await refused(get(signed({ timestamp: Date.now() + 6 * 60_000 })), "stale_signature");
    expect((await get(signed({ timestamp: Date.now() - 60_000 }))).status).toBe(200);
  });

  it("refuses a captured signature replayed on another host, path, query or method", async () => {
    await refused(get({ ...signed(), host: "globex.localhost" }), "bad_signature");
    await refused(get(signed(), "/admin?page=2"), "bad_signature");
    await refused(get(signed(), "/orders?page=3"), "bad_signature");
    await refused(get(signed(), "/orders?page=2", "DELETE"), "bad_signature");
  });

  it("refuses a signature made with another tenant's key, or a key version it does not hold", async () => {
    await refused(get(signed({ key: GLOBEX_KEY })), "bad_signature");
    // Globex's app would not accept Acme's context either: its key is another.
    await refused(get(signed({ key: contextKeyToken(MASTER, ACME.id, 3) })), "unknown_key");
  });

  it("refuses a correctly signed context that lacks a field the router always sets", async () => {
    await refused(get(signed({ tenant: { ...ACME, db: "no-slash" } })), "malformed_context");
    await refused(get(signed({ tenant: { ...ACME, auth: "magic" as never } })), "malformed_context");
  });

  it("refuses a repeated context header (raw bytes on a socket)", async () => {
    const headers = signed();
    let bytes = `GET /orders?page=2 HTTP/1.1\r\n`;
    for (const [k, v] of Object.entries(headers)) bytes += `${k}: ${v}\r\n`;
    bytes += `x-tenant-id: ten_globex\r\nconnection: close\r\n\r\n`;
    const answer = await raw(port(), bytes);
    expect(answer).toMatch(/^HTTP\/1\.1 401 /);
    expect(answer).toContain('"code":"bad_signature"');
  });
});

describe("verify under an Express mount path", () => {
  const get = (headers: Record<string, string>, path: string) =>
    send(portOf(servers.mounted as Server), HOST, path, { method: "GET", headers });

  it("verifies the target the client sent, not the one Express rewrote", async () => {
    const res = await get(signed(), "/orders?page=2");
    expect(res.status).toBe(200);
    expect(res.json().tenant).toEqual({ seen: "/?page=2", tenant: "ten_acme" });
    const replayed = await get(signed(), "/orders?page=3");
    expect(replayed.status).toBe(401);
    expect(replayed.json().error.code).toBe("bad_signature");
  });
});

describe("verify options", () => {
  it("needs keys, and reports each refusal's code to onRefuse", async () => {
    expect(() => verifyNode({ keys: [] })).toThrow(/keys/);
    const seen: string[] = [];
    const app = new Hono<TenantEnv>();
    app.use("*", verify({ keys: KEY_V1, maxAgeMs: 1_000, now: () => Date.now() + 5_000, onRefuse: (code) => seen.push(code) }));
    app.get("*", (c) => c.text(c.var.tenant.slug));
    // In-process fetch (a Web Request): the Host comes from the URL.
    const res = await app.fetch(new Request(`http://${HOST}/orders?page=2`, { headers: signed() }));
    expect(res.status).toBe(401);
    expect(seen).toEqual(["stale_signature"]);
    const ok = new Hono<TenantEnv>().use("*", verify({ keys: KEY_V1 })).get("*", (c) => c.text(c.var.tenant.slug));
    const { host: _, ...noHost } = signed();
    expect(await (await ok.fetch(new Request(`http://${HOST}/orders?page=2`, { headers: noHost }))).text()).toBe("acme");
  });
});
