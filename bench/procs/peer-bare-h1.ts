/**
 * Peer: a bare node:http server forwarding with Portcullis's own HTTP/1.1 client
 * (router/src/proxy/h1.ts) into the Node response. Checks nothing. The floor of a
 * gateway built on node:http: what the server side and the fastest client this
 * project has cost together, before any tenant resolution, credential, limit, audit
 * or signature.
 */
import { createServer } from "node:http";
import { createH1Client } from "../../router/src/proxy/index.ts";
import { forwardedHeaders, originFor, ready, routes, settings } from "./common.ts";

const s = settings<{ hosts: number; domain: string; upstream: string }>();
const table = routes(s.hosts, s.domain, s.upstream);
const client = createH1Client({ connectTimeoutMs: 10_000, headersTimeoutMs: 30_000, bodyTimeoutMs: 30_000, connections: 128 });
const NONE = {};
const done = () => {};
const refuse = (res: import("node:http").ServerResponse) => {
  if (!res.headersSent) res.writeHead(502).end();
};

const server = createServer((req, res) => {
  const origin = originFor(table, req, res);
  if (origin === undefined) return;
  const headers = forwardedHeaders(req.rawHeaders);
  client.forward(
    res,
    {
      origins: [origin],
      start: 0,
      method: req.method as string,
      path: req.url ?? "/",
      headers,
      body: null,
      maxBodyBytes: null,
      responseHeaders: NONE,
    },
    refuse,
    done,
  );
});
server.listen(0, "127.0.0.1", () => ready(server));
