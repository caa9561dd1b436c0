/** Peer: a bare node:http server forwarding with undici's dispatcher into the Node response. Checks nothing. */
import { createServer } from "node:http";
import { Agent } from "undici";
import { forwardedHeaders, HOP, originFor, ready, routes, settings } from "./common.ts";

const s = settings<{ hosts: number; domain: string; upstream: string }>();
const table = routes(s.hosts, s.domain, s.upstream);
const agent = new Agent({ connections: 128, keepAliveTimeout: 30_000, pipelining: 1 });

const server = createServer((req, res) => {
  const origin = originFor(table, req, res);
  if (origin === undefined) return;
  const headers = forwardedHeaders(req.rawHeaders);
  const hasBody = req.headers["content-length"] !== undefined || req.headers["transfer-encoding"] !== undefined;
  agent.dispatch(
    { origin, path: req.url ?? "/", method: req.method as "GET", headers, body: hasBody ? req : null },
    {
      onRequestStart() {},
      onResponseStart(controller, status, h) {
        const out: Record<string, string | string[]> = {};
        for (const k in h) if (!HOP.has(k)) out[k] = h[k] as string | string[];
        res.writeHead(status, out);
        res.on("drain", () => controller.resume());
      },
      onResponseData(controller, chunk) {
        if (!res.write(chunk)) controller.pause();
      },
      onResponseEnd() {
        res.end();
      },
      onResponseError() {
        if (!res.headersSent) res.writeHead(502).end();
        else res.destroy();
      },
    },
  );
});
server.listen(0, "127.0.0.1", () => ready(server));
