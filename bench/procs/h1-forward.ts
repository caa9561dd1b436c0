/**
 * What the two floors share: Portcullis's own HTTP/1.1 client, forwarding a body-less
 * request to one origin straight into the Node response (502 when the upstream fails),
 * with nothing checked or counted.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { createUpstreamClient } from "../../router/src/proxy/index.ts";

const client = createUpstreamClient({
  connectTimeoutMs: 10_000,
  headersTimeoutMs: 30_000,
  bodyTimeoutMs: 30_000,
  connections: 128,
});
const done = () => {};
const refuse = (res: ServerResponse) => {
  if (!res.headersSent) res.writeHead(502).end();
};

export function forwardTo(
  origin: string,
  req: IncomingMessage,
  res: ServerResponse,
  headers: string[],
  responseHeaders: Record<string, string>,
): void {
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
      responseHeaders,
    },
    refuse,
    done,
  );
}
