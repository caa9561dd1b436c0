/**
 * A key service a test controls: a real HTTP server on port 0 that records every
 * request a router sends it (raw headers and body), counts concurrency, and either
 * forwards to the real key service or answers with what the test crafted — late,
 * with an error, or with a lie.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { request } from "undici";

export interface SeenCall {
  method: string;
  path: string;
  rawHeaders: string[];
  body: string;
}

export interface Crafted {
  status?: number;
  body?: unknown;
  delayMs?: number;
  /** Forward to the real key service at once, and hold its answer for `delayMs`. */
  forward?: boolean;
}

export interface FakeKeyServiceOptions {
  /** The real key service to forward to when `answer` returns undefined. */
  realPort?: number;
  /** A crafted answer for a call, or undefined to forward it. */
  answer?: (call: SeenCall) => Crafted | undefined;
}

export class FakeKeyService {
  readonly calls: SeenCall[] = [];
  inFlight = 0;
  maxInFlight = 0;
  /** Most calls in flight at once, per path (health probes included under /healthz). */
  readonly maxInFlightByPath = new Map<string, number>();
  readonly #inFlightByPath = new Map<string, number>();
  port = 0;
  /** Paths of the calls the real key service has answered (before any crafted delay). */
  readonly forwarded: string[] = [];
  answer: FakeKeyServiceOptions["answer"];
  readonly #realPort: number | undefined;
  #server: Server | null = null;

  constructor(options: FakeKeyServiceOptions = {}) {
    this.#realPort = options.realPort;
    this.answer = options.answer;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** Calls to one path (e.g. "/v1/keys/verify"). */
  callsTo(path: string): SeenCall[] {
    return this.calls.filter((c) => c.path === path);
  }

  async start(): Promise<this> {
    const server = createServer((req, res) => void this.#handle(req, res));
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
    this.#server = server;
    this.port = (server.address() as AddressInfo).port;
    return this;
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const call: SeenCall = {
      method: req.method ?? "",
      path: req.url ?? "",
      rawHeaders: req.rawHeaders,
      body: Buffer.concat(chunks).toString("utf8"),
    };
    if (call.path !== "/healthz") this.calls.push(call);
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    const onPath = (this.#inFlightByPath.get(call.path) ?? 0) + 1;
    this.#inFlightByPath.set(call.path, onPath);
    this.maxInFlightByPath.set(call.path, Math.max(this.maxInFlightByPath.get(call.path) ?? 0, onPath));
    try {
      const crafted = this.answer?.(call);
      if (crafted && !crafted.forward) {
        if (crafted.delayMs) await new Promise((r) => setTimeout(r, crafted.delayMs));
        const body = crafted.body === undefined ? "" : JSON.stringify(crafted.body);
        if (!res.destroyed) {
          res.writeHead(crafted.status ?? 200, { "content-type": "application/json" });
          res.end(body);
        }
        return;
      }
      if (this.#realPort === undefined) {
        res.writeHead(503, { "content-type": "application/json" });
        res.end('{"error":{"code":"overloaded","message":"overloaded","requestId":""}}');
        return;
      }
      const headers: Record<string, string> = {};
      for (let i = 0; i < req.rawHeaders.length; i += 2) {
        const name = (req.rawHeaders[i] as string).toLowerCase();
        if (name === "authorization" || name === "content-type") headers[name] = req.rawHeaders[i + 1] as string;
      }
      const forwarded = await request(`http://127.0.0.1:${this.#realPort}${call.path}`, {
        method: call.method as "GET",
        headers,
        body: call.body === "" ? null : call.body,
      });
      const text = await forwarded.body.text();
      this.forwarded.push(call.path);
      if (crafted?.delayMs) await new Promise((r) => setTimeout(r, crafted.delayMs));
      if (res.destroyed) return;
      res.writeHead(forwarded.statusCode, { "content-type": "application/json" });
      res.end(text);
    } catch {
      if (!res.headersSent) res.writeHead(502);
      res.end();
    } finally {
      this.inFlight--;
      this.#inFlightByPath.set(call.path, (this.#inFlightByPath.get(call.path) ?? 1) - 1);
    }
  }

  async close(): Promise<void> {
    const server = this.#server;
    if (!server) return;
    this.#server = null;
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  }
}

/** A port nothing listens on (see ports.ts: a released port could be handed to another listener). */
export { refusedPort as closedPort } from "./ports.ts";
