/** Peer: node:http with http-proxy (node-http-proxy) and a keep-alive agent. */
import { Agent, createServer } from "node:http";
import httpProxy from "http-proxy";
import { hostOf, ready, routes, settings } from "./common.ts";

const s = settings<{ hosts: number; domain: string; upstream: string }>();
const table = routes(s.hosts, s.domain, s.upstream);
const proxy = httpProxy.createProxyServer({ agent: new Agent({ keepAlive: true, maxSockets: 128 }), xfwd: false });
proxy.on("error", (_e, _req, res) => {
  const r = res as import("node:http").ServerResponse;
  if (!r.headersSent) r.writeHead(502);
  r.end();
});
const server = createServer((req, res) => {
  const origin = table.get(hostOf(req.headers.host));
  if (origin === undefined) {
    res.writeHead(404).end();
    return;
  }
  proxy.web(req, res, { target: origin });
});
server.listen(0, "127.0.0.1", () => ready(server));
