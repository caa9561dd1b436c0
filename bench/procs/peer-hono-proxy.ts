/** Peer: Hono on @hono/node-server with hono's own `proxy()` helper (fetch). */
import { createServer } from "node:http";
import { getRequestListener } from "@hono/node-server";
import { Hono } from "hono";
import { proxy } from "hono/proxy";
import { hostOf, ready, routes, settings } from "./common.ts";

const s = settings<{ hosts: number; domain: string; upstream: string }>();
const table = routes(s.hosts, s.domain, s.upstream);
const app = new Hono();
app.all("*", (c) => {
  const origin = table.get(hostOf(c.req.header("host")));
  if (origin === undefined) return c.body(null, 404);
  const url = new URL(c.req.url);
  return proxy(`${origin}${url.pathname}${url.search}`, { raw: c.req.raw });
});
const server = createServer(getRequestListener(app.fetch));
server.listen(0, "127.0.0.1", () => ready(server));
