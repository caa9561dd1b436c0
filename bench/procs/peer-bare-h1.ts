/**
 * Peer: a bare node:http server forwarding with Portcullis's own HTTP/1.1 client
 * (router/src/proxy/h1.ts) into the Node response. Checks nothing. The floor of a
 * gateway built on node:http: what the server side and the fastest client this
 * project has cost together, before any tenant resolution, credential, limit, audit
 * or signature.
 */
import { createServer } from "node:http";
import { forwardedHeaders, originFor, ready, routes, settings } from "./common.ts";
import { forwardTo } from "./h1-forward.ts";

const s = settings<{ hosts: number; domain: string; upstream: string }>();
const table = routes(s.hosts, s.domain, s.upstream);
const NONE = {};

const server = createServer((req, res) => {
  const origin = originFor(table, req, res);
  if (origin === undefined) return;
  forwardTo(origin, req, res, forwardedHeaders(req.rawHeaders), NONE);
});
server.listen(0, "127.0.0.1", () => ready(server));
