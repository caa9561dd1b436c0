/**
 * The h1 upstream client on real sockets: a raw `net` upstream answers scripted bytes,
 * a node:http front server forwards through the client, and a real client reads the
 * front's answer. `h1Suite` gives a test file one upstream for all its cases and a
 * fresh front (client) per case.
 */
import { createServer as createHttpServer, get, type IncomingMessage, type Server as HttpServer } from "node:http";
import { type AddressInfo, createServer, type Server, type Socket } from "node:net";
import { afterAll, afterEach, beforeAll } from "vitest";
import { writeRefusal } from "../../router/src/errors.ts";
import { H1Client, type H1Options } from "../../router/src/proxy/h1.ts";
import type { ForwardResult } from "../../router/src/proxy/index.ts";

export type Script = (socket: Socket, head: string) => void;

export interface Upstream {
  url: string;
  /** Connections accepted so far. */
  accepted: number;
  /** Request heads received, in order. */
  heads: string[];
  /** Connection number (0-based) each request arrived on. */
  connOf: number[];
  /** Closed connections, by number. */
  closed: Set<number>;
  /** Next requests get these scripts; any other a 200 `ok-<connection>`. */
  scripts: Script[];
  close(): Promise<void>;
}

export async function upstream(): Promise<Upstream> {
  const sockets = new Set<Socket>();
  const u: Upstream = {
    url: "",
    accepted: 0,
    heads: [],
    connOf: [],
    closed: new Set(),
    scripts: [],
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
  const server: Server = createServer((socket) => {
    const id = u.accepted++;
    sockets.add(socket);
    let buf = "";
    socket.on("data", (d: Buffer) => {
      buf += d.toString("latin1");
      for (let end = buf.indexOf("\r\n\r\n"); end !== -1; end = buf.indexOf("\r\n\r\n")) {
        const head = buf.slice(0, end + 4);
        buf = buf.slice(end + 4);
        u.heads.push(head);
        u.connOf.push(id);
        const script = u.scripts.shift();
        if (script) script(socket, head);
        else socket.write(`HTTP/1.1 200 OK\r\nContent-Length: ${`ok-${id}`.length}\r\n\r\nok-${id}`);
      }
    });
    socket.on("close", () => {
      u.closed.add(id);
      sockets.delete(socket);
    });
    socket.on("error", () => {});
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  u.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return u;
}

/** An origin on which nothing listens. */
export async function deadOrigin(): Promise<string> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const url = `http://127.0.0.1:${(s.address() as AddressInfo).port}`;
  await new Promise<void>((r) => s.close(() => r()));
  return url;
}

export interface Front {
  port: number;
  client: H1Client;
  origins: string[];
  results: ForwardResult[];
  close(): Promise<void>;
}

/** Client options, and the body limit the front forwards with. */
export type FrontOptions = Partial<H1Options> & { maxBodyBytes?: number };

export async function front(options: FrontOptions = {}): Promise<Front> {
  const client = new H1Client({ connectTimeoutMs: 1_000, headersTimeoutMs: 300, bodyTimeoutMs: 300, connections: 4, ...options });
  const f: Front = { port: 0, client, origins: [], results: [], close: async () => {} };
  const server: HttpServer = createHttpServer((req, res) => {
    const headers = ["host", "app.test", "x-request-id", "req_test"];
    const extra = req.headers["x-extra"];
    if (typeof extra === "string") headers.push("x-extra", extra.replace(/\\r/g, "\r"));
    client.forward(
      res,
      {
        origins: f.origins,
        start: 0,
        method: req.method as string,
        path: req.url as string,
        headers,
        // As the router's forward stage decides it.
        body: req.headers["transfer-encoding"] !== undefined || (req.headers["content-length"] ?? "0") !== "0" ? req : null,
        maxBodyBytes: options.maxBodyBytes ?? null,
        responseHeaders: { "x-request-id": "req_test" },
      },
      (r, reason) => writeRefusal(r, reason, "req_test"),
      (result) => f.results.push(result),
    );
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  f.port = (server.address() as AddressInfo).port;
  f.close = async () => {
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
    await client.close();
  };
  return f;
}

export interface Answer {
  status: number;
  headers: IncomingMessage["headers"];
  rawHeaders: string[];
  body: Buffer;
  /** The whole message as framed arrived (false: cut short). */
  complete: boolean;
}

/** One request through the front, on its own connection. */
export function request(
  port: number,
  path = "/",
  options: { method?: string; headers?: Record<string, string> } = {},
): Promise<Answer> {
  return new Promise((resolve) => {
    const req = get({ port, host: "127.0.0.1", path, method: options.method ?? "GET", agent: false, headers: options.headers });
    req.on("response", (res) => {
      const chunks: Buffer[] = [];
      let settled = false;
      const settle = () => {
        if (settled) return;
        settled = true;
        resolve({
          status: res.statusCode as number,
          headers: res.headers,
          rawHeaders: res.rawHeaders,
          body: Buffer.concat(chunks),
          complete: res.complete,
        });
      };
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", settle);
      res.on("error", settle);
      res.on("close", settle);
    });
    req.on("error", () => resolve({ status: 0, headers: {}, rawHeaders: [], body: Buffer.alloc(0), complete: false }));
  });
}

export async function eventually(check: () => boolean, ms = 2_000): Promise<void> {
  const until = Date.now() + ms;
  while (!check()) {
    if (Date.now() > until) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 5));
  }
}

export const ok = (body: string, extra = "") => `HTTP/1.1 200 OK\r\n${extra}Content-Length: ${body.length}\r\n\r\n${body}`;

export interface H1Suite {
  /** The scripted upstream shared by the file's cases. */
  up: Upstream;
  /** The front of the current case. */
  fr: Front;
  /** A front with these client options, forwarding to `origins` (default: the upstream). */
  setup(options?: FrontOptions, origins?: string[]): Promise<Front>;
  /** The connection number the last request arrived on. */
  lastConn(): number;
}

export function h1Suite(): H1Suite {
  const suite = {} as H1Suite;
  let current: Front | undefined;
  beforeAll(async () => {
    suite.up = await upstream();
  });
  afterAll(async () => {
    await suite.up.close();
  });
  afterEach(async () => {
    await current?.close();
    current = undefined;
    suite.up.scripts.length = 0;
  });
  suite.setup = async (options = {}, origins) => {
    current = await front(options);
    suite.fr = current;
    current.origins.push(...(origins ?? [suite.up.url]));
    return current;
  };
  suite.lastConn = () => suite.up.connOf[suite.up.connOf.length - 1] as number;
  return suite;
}
