/**
 * Peer: the floor of Portcullis's own design. Hono on @hono/node-server (the adapter's
 * raw request and response, as the router uses them), routing by Host, the signed
 * tenant context every upstream receives (the HMAC with the tenant's own
 * key over the same headers, method, Host and target, a request id and a traceparent), forwarded with Portcullis's own HTTP/1.1 client.
 * It checks nothing: no guard, credential, policy, limit, audit, metering or metric.
 * What a gateway built the way Portcullis must be built costs before it decides anything.
 */
import { getRequestListener, type HttpBindings } from "@hono/node-server";
import { RESPONSE_ALREADY_SENT } from "@hono/node-server/utils/response";
import { Hono } from "hono";
import { LinearRouter } from "hono/router/linear-router";
import { PatternRouter } from "hono/router/pattern-router";
import { createServer } from "node:http";
import { contextSigner, type TenantContext } from "@portcullis/shared";
import { nextTraceparent } from "../../router/src/proxy/trace.ts";
import { nextRequestId } from "../../router/src/request-id.ts";
import { forwardedHeaders, hostOf, ready, routes, settings } from "./common.ts";
import { forwardTo } from "./h1-forward.ts";

const s = settings<{
  hosts: number;
  domain: string;
  upstream: string;
  secret: string;
  /** A/B variants (`bench:hot -- --floor-variants`): the adapter's options and Hono's router. */
  adapter?: { overrideGlobalObjects?: boolean; autoCleanupIncoming?: boolean };
  router?: "smart" | "linear" | "pattern";
}>();
const table = routes(s.hosts, s.domain, s.upstream);
const sign = contextSigner(s.secret);
const FIRST_KEY = { version: 1, previous: null } as const;

const router = s.router === "linear" ? new LinearRouter() : s.router === "pattern" ? new PatternRouter() : null;
// Hono types its router option by its handler tuple; any of its routers fits at run time.
const app = new Hono<{ Bindings: HttpBindings }>(router === null ? {} : ({ router } as never));
app.all("*", (c) => {
  const { incoming, outgoing } = c.env;
  const hostname = hostOf(incoming.headers.host);
  const origin = table.get(hostname);
  if (origin === undefined) return c.body(null, 404);
  const requestId = nextRequestId();
  const context: TenantContext = {
    "x-tenant-id": hostname,
    "x-tenant-slug": hostname,
    "x-tenant-db": "db-1/tenant",
    "x-tenant-auth": "hostname",
    "x-tenant-features": "",
    "x-request-id": requestId,
    "x-forwarded-for": incoming.socket.remoteAddress ?? "",
    "x-forwarded-host": hostname,
    "x-forwarded-proto": "http",
  };
  const headers = forwardedHeaders(incoming.rawHeaders);
  headers.push("traceparent", nextTraceparent(undefined));
  for (const name in context) headers.push(name, context[name as keyof TenantContext] as string);
  const target = incoming.url ?? "/";
  headers.push(
    "x-tenant-signature",
    sign(hostname, FIRST_KEY, context, { method: incoming.method ?? "GET", host: hostname, target }, Date.now()),
  );
  forwardTo(origin, incoming, outgoing, headers, { "x-request-id": requestId });
  return RESPONSE_ALREADY_SENT;
});

const server = createServer(getRequestListener(app.fetch, s.adapter ?? {}));
server.listen(0, "127.0.0.1", () => ready(server));
