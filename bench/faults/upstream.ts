/**
 * The demo tenant apps of `npm run faults`: like deploy/local/demo-upstream.ts, each
 * answers with the tenant context it received (`x-tenant-*`, the request id) and
 * whether its signature verifies; unlike it, it keeps no copy of each request (the
 * run sends tens of thousands), can be made slow (`delayMs`, or `?delay=` per
 * request), and remembers which load sequence numbers (`x-faults-seq`) it was asked
 * for while `track` is on: what proves a router had accepted a request.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { contextKeysFrom, verifyTenantContext } from "@portcullis/shared";

export class EchoApp {
  readonly name: string;
  port = 0;
  /** Added before every answer (a slow app). */
  delayMs = 0;
  /** Requests answered. */
  served = 0;
  /** Load sequence numbers received while `track` is on. */
  readonly seen = new Set<number>();
  track = false;
  #server: Server;

  constructor(name: string, secret: string) {
    this.name = name;
    // The harness holds the master secret: every tenant's key derives from it.
    const keys = contextKeysFrom(secret);
    this.#server = createServer((req, res) => {
      if (this.track) {
        const seq = Number(req.headers["x-faults-seq"]);
        if (Number.isInteger(seq)) this.seen.add(seq);
      }
      req.resume();
      req.on("end", () => {
        const url = req.url ?? "/";
        const q = url.indexOf("?delay=");
        const delay = this.delayMs + (q === -1 ? 0 : Number(url.slice(q + 7)) || 0);
        const answer = () => {
          const context: Record<string, string | string[] | undefined> = {};
          for (const [k, v] of Object.entries(req.headers))
            if (k.startsWith("x-tenant-") || k === "x-request-id" || k === "x-user-id") context[k] = v;
          const payload = JSON.stringify({
            app: name,
            path: url,
            signatureValid: verifyTenantContext(req, keys).ok,
            context,
          });
          this.served++;
          res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(payload) });
          res.end(payload);
        };
        if (delay > 0) setTimeout(answer, delay);
        else answer();
      });
    });
    this.#server.keepAliveTimeout = 10_000;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  async start(): Promise<this> {
    await new Promise<void>((resolve) => this.#server.listen(0, "127.0.0.1", resolve));
    this.port = (this.#server.address() as AddressInfo).port;
    return this;
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.#server.closeAllConnections();
      this.#server.close(() => resolve());
    });
  }
}
