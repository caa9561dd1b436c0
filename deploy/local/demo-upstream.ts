/**
 * A demo tenant app: answers every request with the tenant context it received and
 * whether the context signature verifies, the way a real app would check it with
 * `verifyTenantContext` from @portcullis/shared and its own tenant's context key.
 * Used by the quickstart and tests.
 */
import { createServer, type IncomingHttpHeaders } from "node:http";
import type { AddressInfo } from "node:net";
import { type ContextKeys, verifyTenantContext } from "@portcullis/shared";

export interface SeenRequest {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  rawHeaders: string[];
  body: string;
}

export interface EchoUpstream {
  port: number;
  url: string;
  requests: SeenRequest[];
  close(): Promise<void>;
}

export async function startEchoUpstream(options: {
  name: string;
  /** The tenant's context key (`pctx_…`), or several during a rotation. */
  keys: ContextKeys;
  port?: number;
  host?: string;
}): Promise<EchoUpstream> {
  const requests: SeenRequest[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks).toString("utf8");
      requests.push({ method: req.method ?? "", url: req.url ?? "", headers: req.headers, rawHeaders: req.rawHeaders, body });
      const verified = verifyTenantContext(req, options.keys);
      const context: Record<string, string | string[] | undefined> = {};
      for (const [k, v] of Object.entries(req.headers))
        if (k.startsWith("x-tenant-") || k.startsWith("x-forwarded-") || k === "x-user-id" || k === "x-request-id")
          context[k] = v;
      const payload = JSON.stringify({
        app: options.name,
        method: req.method,
        path: req.url,
        signatureValid: verified.ok,
        context,
        bodyBytes: Buffer.byteLength(body),
      });
      res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(payload) });
      res.end(payload);
    });
  });
  await new Promise<void>((resolve) => server.listen(options.port ?? 0, options.host ?? "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
