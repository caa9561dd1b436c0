/**
 * A purpose-built HTTP/1.1 client for the forwarding hot path: requests without a body
 * to `http:` upstreams. Requests with a body, and `https:` upstreams, keep going
 * through undici (`forward` in index.ts).
 *
 * Why it exists: measured on this machine, undici's client side and its glue cost
 * ≈ 45 µs of the router's CPU per forwarded request, more than the Node
 * server side (≈ 18 µs). Most of that is generality the router does not use: a
 * request object and handler chain per dispatch, header normalisation in both
 * directions, a WebAssembly parser call per read, a timer per request. This client
 * writes the prepared header list as one latin1 string, parses the response head
 * with a table-driven byte loop (h1-parser.ts), streams body slices straight into
 * the Node response, and runs every timeout from one coarse sweep. In an A/B of a bare
 * node:http forwarder on the benchmark machine (same headers as the router sends, 64
 * connections, 100-byte responses), forwarding with this client took ≈ 30% less CPU
 * per request than with undici (median 113-122 vs 161-164 µs/req on a loaded machine;
 * lower in every pair of runs).
 *
 * Its behaviour is the undici forward's, on purpose:
 * - keep-alive pool per origin, at most `connections` sockets, requests beyond it
 *   queued (bounded); one request at a time per connection (no pipelining);
 * - a connection is reused only after a response that was read completely, framed
 *   cleanly, with no byte after it, and that nobody marked `Connection: close`; an
 *   idle connection that receives anything, or is handed back with unread bytes, is
 *   destroyed; reuse waits for the check phase of the event loop, so bytes already
 *   delivered to an idle socket are seen before a request is written on it (undici
 *   does the same, GHSA-35p6-xmwp-9g52);
 * - origins are picked, and their outcomes reported, through the shared passive
 *   health (health.ts) when the request carries one: ejected origins are skipped;
 * - connect errors, and a connection that fails before any response byte on an
 *   idempotent request, try the next origin (each origin at most once); a reused
 *   connection found closed (EOF or reset before any response byte, the keep-alive
 *   race) is retried once on a fresh connection to the same origin when the method is
 *   idempotent — the request never reached the app, so neither the retry nor the
 *   race counts against the origin;
 * - headers timeout → 504, body timeout or any failure after the response began →
 *   the client connection is cut, so a truncated body never looks complete; the
 *   client going away destroys the upstream connection.
 */
import type { ServerResponse } from "node:http";
import { connect, type Socket } from "node:net";
import type { RefusalReason } from "@portcullis/shared";
import { connectionTokens, RESPONSE_DROP } from "./headers.ts";
import { type ParseError, ResponseParser, type ResponseSink } from "./h1-parser.ts";
import type { FailureKind } from "./health.ts";
import type { ForwardRequest, ForwardResult, RefuseWriter, UpstreamOptions } from "./index.ts";

export interface H1Options extends UpstreamOptions {
  /** Idle keep-alive time of a connection; an upstream's `Keep-Alive: timeout` hint shortens it. */
  keepAliveTimeoutMs?: number;
  /** Upper bound for the hint (undici's keepAliveMaxTimeout). */
  keepAliveMaxTimeoutMs?: number;
  /** Requests waiting for a connection, per origin, before new ones are refused. */
  maxQueue?: number;
}

/** How an exchange with the upstream failed. */
type Failure =
  | "client_stalled"
  | "connect"
  | "connect_timeout"
  | "reset"
  | "error"
  | "protocol"
  | "invalid_headers"
  | "headers_timeout"
  | "body_timeout"
  | "overloaded"
  | "shutdown";

const IDEMPOTENT = new Set(["GET", "HEAD", "OPTIONS", "PUT", "DELETE"]);
/** Methods undici sends `content-length: 0` for when they have no body (RFC 9110 §8.6). */
const EXPECTS_PAYLOAD = new Set(["PUT", "POST", "PATCH", "QUERY", "PROPFIND", "PROPPATCH"]);
/** As undici: before a hint's expiry, give up the connection this much earlier. */
const KEEP_ALIVE_THRESHOLD_MS = 2_000;

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const BAD_VALUE = /[^\t\x20-\x7e\x80-\xff]/;
const BAD_PATH = /[^\x21-\xff]/;

function cut(res: ServerResponse): void {
  res.destroy();
}

/** How a failure before the response counts against the origin (null: not the origin's doing). */
function healthKind(kind: Failure): FailureKind | null {
  switch (kind) {
    case "connect":
    case "connect_timeout":
      return "connect_error";
    case "headers_timeout":
      return "timeout";
    case "reset":
    case "error":
      return "reset";
    case "protocol":
    case "invalid_headers":
      return "protocol";
    default:
      // client_stalled, body_timeout (after the head), overloaded, shutdown: the
      // router's or the client's side.
      return null;
  }
}

function failureOf(kind: Failure): RefusalReason {
  if (kind === "client_stalled") return "request_timeout";
  return kind === "connect_timeout" || kind === "headers_timeout" || kind === "body_timeout"
    ? "upstream_timeout"
    : "upstream_unavailable";
}

/**
 * The request head as one latin1 string, or null when a name, value or the target
 * could break the framing (CR, LF, NUL, controls): nothing is sent then. Framing
 * headers are the client's own: a body-less request carries none, except
 * `content-length: 0` for methods that expect a body (as undici sends it).
 */
export function requestHead(method: string, path: string, headers: readonly string[]): string | null {
  if (path.charCodeAt(0) !== 0x2f || BAD_PATH.test(path) || !TOKEN.test(method)) return null;
  let head = `${method} ${path} HTTP/1.1\r\n`;
  for (let i = 0; i < headers.length; i += 2) {
    const name = headers[i] as string;
    const value = headers[i + 1] as string;
    if (!TOKEN.test(name) || BAD_VALUE.test(value)) return null;
    if (name.length === 14 || name.length === 17) {
      const lower = name.toLowerCase();
      if (lower === "content-length" || lower === "transfer-encoding") continue;
    }
    head += `${name}: ${value}\r\n`;
  }
  if (EXPECTS_PAYLOAD.has(method)) head += "content-length: 0\r\n";
  return `${head}\r\n`;
}

// Connection phases.
const CONNECTING = 0;
const WAITING = 1;
const BODY = 2;
const IDLE = 3;
const DEAD = 4;

class Pool {
  readonly host: string;
  readonly port: number;
  readonly idle: Conn[] = [];
  readonly queue: Exchange[] = [];
  /** Live connections (connecting, busy or idle). */
  count = 0;
  constructor(host: string, port: number) {
    this.host = host;
    this.port = port;
  }
}

class Exchange {
  readonly res: ServerResponse;
  readonly f: ForwardRequest;
  readonly refuse: RefuseWriter;
  readonly done: (result: ForwardResult) => void;
  readonly head: string;
  readonly started: number;
  readonly onClose: () => void;
  onDrain: (() => void) | null = null;
  pool: Pool | null = null;
  conn: Conn | null = null;
  upstream = "";
  /** Next position of the origin rotation to try (health.ts `pick`). */
  cursor = 0;
  /** Wants a new connection (the retry after the keep-alive race), not an idle one. */
  fresh = false;
  /** The keep-alive race retry is taken at most once. */
  raced = false;
  bytesOut = 0;
  ended = false;
  /** When it joined its pool's queue (sweep clock): it waits at most a headers timeout. */
  queuedAt = 0;

  constructor(
    client: H1Client,
    res: ServerResponse,
    f: ForwardRequest,
    refuse: RefuseWriter,
    done: (result: ForwardResult) => void,
    head: string,
    started: number,
  ) {
    this.res = res;
    this.f = f;
    this.refuse = refuse;
    this.done = done;
    this.head = head;
    this.started = started;
    this.onClose = () => client.clientGone(this);
  }

  finish(status: number, failure: RefusalReason | null): void {
    if (this.ended) return;
    this.ended = true;
    this.res.off("close", this.onClose);
    this.done({
      status,
      failure,
      bytesIn: 0,
      bytesOut: this.bytesOut,
      upstream: this.upstream || null,
      upstreamMs: performance.now() - this.started,
    });
  }
}

class Conn implements ResponseSink {
  readonly client: H1Client;
  readonly pool: Pool;
  readonly socket: Socket;
  readonly parser: ResponseParser;
  ex: Exchange | null = null;
  phase = CONNECTING;
  connected = false;
  /** Has carried a complete response before the current one. */
  reused = false;
  /** A byte of the current response arrived. */
  gotBytes = false;
  paused = false;
  /** Body bytes arrived since the last sweep. */
  active = false;
  deadline = 0;
  idleUntil = 0;
  /** The socket keeps the process alive (it does only while it may be in use). */
  refed = true;

  constructor(client: H1Client, pool: Pool) {
    this.client = client;
    this.pool = pool;
    this.parser = new ResponseParser(this);
    // As undici's connector: no Nagle delay, TCP keep-alive probes after a minute idle.
    const socket = connect({ host: pool.host, port: pool.port, noDelay: true, keepAlive: true, keepAliveInitialDelay: 60_000 });
    this.socket = socket;
    socket.on("connect", () => {
      this.connected = true;
      if (this.phase === CONNECTING) {
        this.phase = WAITING;
        this.deadline = performance.now() + client.headersTimeoutMs;
      }
    });
    socket.on("data", (chunk: Buffer) => {
      if (this.ex === null) {
        // Nothing was asked: an unsolicited response is never kept for the next request.
        this.close();
        return;
      }
      this.gotBytes = true;
      this.parser.execute(chunk);
    });
    socket.on("end", () => {
      if (this.ex === null) this.close();
      else if (!this.parser.eof()) this.fail(this.gotBytes ? "protocol" : "reset");
    });
    socket.on("error", (error: Error & { code?: string }) => {
      if (!this.connected) this.fail("connect");
      else this.fail(error.code === "ECONNRESET" || error.code === "EPIPE" ? "reset" : "error");
    });
    socket.on("close", () => this.fail("reset"));
  }

  /** Sends the exchange's request on this connection. */
  start(ex: Exchange): void {
    if (!this.refed) {
      this.refed = true;
      this.socket.ref();
    }
    this.ex = ex;
    ex.conn = this;
    this.gotBytes = false;
    this.active = false;
    this.parser.reset(ex.f.method === "HEAD");
    if (this.connected) {
      this.phase = WAITING;
      this.deadline = performance.now() + this.client.headersTimeoutMs;
    } else this.deadline = performance.now() + this.client.connectTimeoutMs;
    this.socket.write(ex.head, "latin1");
  }

  onHead(status: number, headers: string[]): boolean {
    const ex = this.ex as Exchange;
    this.phase = BODY;
    this.active = true;
    const extra = ex.f.responseHeaders;
    const connection = this.parser.connection;
    // Headers the upstream names in Connection are hop-by-hop too (RFC 9110 §7.6.1).
    const named =
      connection === null || (connection.length === 10 && connection.toLowerCase() === "keep-alive")
        ? null
        : connectionTokens(connection);
    const out: string[] = [];
    for (let i = 0; i < headers.length; i += 2) {
      const name = headers[i] as string;
      // Content-Length goes out once, as the parser validated it.
      if (RESPONSE_DROP.has(name) || name === "content-length" || Object.hasOwn(extra, name)) continue;
      if (named?.includes(name)) continue;
      out.push(name, headers[i + 1] as string);
    }
    // Never on a 204 (RFC 9110 §8.6): a lenient hop after the router could read the
    // next response as its body.
    if (this.parser.contentLength !== -1 && status !== 204) out.push("content-length", String(this.parser.contentLength));
    for (const name in extra) out.push(name, extra[name] as string);
    try {
      ex.res.writeHead(status, out);
    } catch {
      // Headers Node will not send (invalid characters): refuse instead.
      this.fail("invalid_headers");
      return false;
    }
    ex.f.health?.status(ex.upstream, status);
    return true;
  }

  onBody(chunk: Buffer): void {
    const ex = this.ex as Exchange;
    ex.bytesOut += chunk.length;
    this.active = true;
    if (!ex.res.write(chunk) && !this.paused) {
      // Backpressure: the upstream is read no faster than the client takes the body.
      this.paused = true;
      this.socket.pause();
      ex.onDrain ??= () => ex.conn?.resume();
      ex.res.once("drain", ex.onDrain);
    }
  }

  onComplete(reusable: boolean): void {
    const ex = this.ex as Exchange;
    this.ex = null;
    ex.conn = null;
    if (reusable) this.client.release(this);
    else this.close();
    ex.res.end();
    ex.finish(ex.res.statusCode, null);
  }

  onError(_reason: ParseError): void {
    this.fail("protocol");
  }

  resume(): void {
    if (this.paused) {
      this.paused = false;
      // The client took what was written: progress.
      this.active = true;
      this.socket.resume();
    }
  }

  /** Gives the connection up without failing an exchange (idle, unsolicited bytes, client gone). */
  close(): void {
    this.ex = null;
    this.fail("reset");
  }

  /** Destroys the connection; the exchange on it, if any, fails as `kind`. */
  fail(kind: Failure): void {
    if (this.phase === DEAD) return;
    const wasIdle = this.phase === IDLE;
    this.phase = DEAD;
    this.parser.stop();
    this.socket.destroy();
    const ex = this.ex;
    this.ex = null;
    this.client.removed(this, wasIdle);
    if (ex !== null) {
      ex.conn = null;
      // Before the response head only: after it the status was reported. The
      // keep-alive race (a reused connection closed before any byte) is not the
      // origin failing.
      const health = ex.f.health;
      if (health !== undefined && !ex.ended && !ex.res.headersSent && !(kind === "reset" && this.reused && !this.gotBytes)) {
        const counted = healthKind(kind);
        if (counted !== null) health.failure(ex.upstream, counted);
      }
      this.client.failed(ex, kind, this.connected, this.reused, this.gotBytes);
    }
  }
}

export class H1Client {
  readonly connectTimeoutMs: number;
  readonly headersTimeoutMs: number;
  readonly bodyTimeoutMs: number;
  readonly #max: number;
  readonly #maxQueue: number;
  readonly #keepAliveMs: number;
  readonly #keepAliveMaxMs: number;
  readonly #pools = new Map<string, Pool>();
  readonly #all = new Set<Conn>();
  /** Exchanges to start on an idle connection in the check phase. */
  #ready: Exchange[] = [];
  #spare: Exchange[] = [];
  #scheduled = false;
  #clock = performance.now();
  #sweeps = 0;
  readonly #timer: NodeJS.Timeout;
  #closed = false;
  #closing: Promise<void> | null = null;
  #onEmpty: (() => void) | null = null;

  constructor(o: H1Options) {
    this.connectTimeoutMs = o.connectTimeoutMs;
    this.headersTimeoutMs = o.headersTimeoutMs;
    this.bodyTimeoutMs = o.bodyTimeoutMs;
    this.#max = o.connections;
    this.#maxQueue = o.maxQueue ?? 1024;
    this.#keepAliveMs = o.keepAliveTimeoutMs ?? 30_000;
    this.#keepAliveMaxMs = o.keepAliveMaxTimeoutMs ?? 60_000;
    // One coarse sweep runs every timeout (a tenth of the shortest, 10-250 ms), instead
    // of a timer armed and cleared per request.
    const tick = Math.max(10, Math.min(250, Math.floor(Math.min(o.connectTimeoutMs, o.headersTimeoutMs, o.bodyTimeoutMs) / 10)));
    this.#timer = setInterval(() => this.#sweep(), tick);
    this.#timer.unref();
  }

  /** Open upstream connections (connecting, busy or idle). */
  get connections(): number {
    return this.#all.size;
  }

  /**
   * Forwards one body-less request; `done` is called once, when the exchange is over
   * (response ended, failed and answered by the router, or the client gone).
   */
  forward(res: ServerResponse, f: ForwardRequest, refuse: RefuseWriter, done: (result: ForwardResult) => void): void {
    const started = performance.now();
    const head = requestHead(f.method, f.path, f.headers);
    const ex = new Exchange(this, res, f, refuse, done, head ?? "", started);
    if (head === null || this.#closed) {
      refuse(res, "upstream_unavailable");
      ex.finish(res.statusCode, "upstream_unavailable");
      return;
    }
    res.on("close", ex.onClose);
    if (!this.#next(ex)) {
      refuse(res, "upstream_unavailable");
      ex.finish(res.statusCode, "upstream_unavailable");
    }
  }

  /** Dispatches the exchange to the next origin of its rotation; false when none is left. */
  #next(ex: Exchange): boolean {
    const f = ex.f;
    const n = f.origins.length;
    const p = f.health === undefined ? (ex.cursor < n ? ex.cursor : -1) : f.health.pick(f.origins, f.start, ex.cursor);
    if (p === -1) return false;
    ex.cursor = p + 1;
    this.#dispatch(ex, f.origins[(f.start + p) % n] as string);
    return true;
  }

  #dispatch(ex: Exchange, origin: string): void {
    let pool = this.#pools.get(origin);
    if (pool === undefined) {
      const url = new URL(origin);
      const host = url.hostname.startsWith("[") ? url.hostname.slice(1, -1) : url.hostname;
      pool = new Pool(host, url.port === "" ? 80 : Number(url.port));
      this.#pools.set(origin, pool);
    }
    ex.upstream = origin;
    ex.pool = pool;
    if (!ex.fresh && pool.idle.length > 0) {
      // Reuse waits for the check phase: whatever an idle socket received by now
      // (unsolicited bytes, a close) is seen before a request is written on it.
      this.#ready.push(ex);
      if (!this.#scheduled) {
        this.#scheduled = true;
        setImmediate(this.#flush);
      }
      return;
    }
    this.#acquire(ex, pool);
  }

  readonly #flush = () => {
    this.#scheduled = false;
    const ready = this.#ready;
    this.#ready = this.#spare;
    for (const ex of ready) {
      if (!ex.ended) this.#acquire(ex, ex.pool as Pool);
      // Its client left meanwhile: the connection it was to take goes to the next in line.
      else this.#drainQueue(ex.pool as Pool);
    }
    ready.length = 0;
    this.#spare = ready;
  };

  /** Starts queued requests while the pool has idle connections for them. */
  #drainQueue(pool: Pool): void {
    while (pool.idle.length > 0 && pool.queue.length > 0) {
      const next = pool.queue.shift() as Exchange;
      if (!next.ended) this.#acquire(next, pool);
    }
  }

  #acquire(ex: Exchange, pool: Pool): void {
    if (this.#closed) {
      this.failed(ex, "shutdown", false, false, false);
      return;
    }
    if (!ex.fresh) {
      const idle = pool.idle.pop();
      if (idle !== undefined) {
        idle.start(ex);
        return;
      }
    }
    if (pool.count < this.#max) this.#open(pool).start(ex);
    else if (pool.queue.length < this.#maxQueue) {
      // A queued request gets a connection that has just ended a response: not a stale one.
      ex.fresh = false;
      ex.queuedAt = this.#clock;
      pool.queue.push(ex);
    } else this.failed(ex, "overloaded", false, false, false);
  }

  #open(pool: Pool): Conn {
    const conn = new Conn(this, pool);
    pool.count++;
    this.#all.add(conn);
    return conn;
  }

  /** A response ended cleanly: the connection waits for the next request. */
  release(conn: Conn): void {
    conn.reused = true;
    conn.resume();
    if (this.#closed) {
      conn.close();
      return;
    }
    const hint = conn.parser.keepAliveHint;
    const keepAlive = hint === -1 ? this.#keepAliveMs : Math.min(hint - KEEP_ALIVE_THRESHOLD_MS, this.#keepAliveMaxMs);
    if (keepAlive <= 0) {
      conn.close();
      return;
    }
    // The clock is at most one sweep old: the connection is given up early, never late.
    conn.idleUntil = this.#clock + keepAlive;
    conn.phase = IDLE;
    const pool = conn.pool;
    pool.idle.push(conn);
    const next = pool.queue.shift();
    if (next !== undefined) {
      this.#ready.push(next);
      if (!this.#scheduled) {
        this.#scheduled = true;
        setImmediate(this.#flush);
      }
    }
  }

  /** A connection is gone: its slot goes to a waiting request. */
  removed(conn: Conn, wasIdle: boolean): void {
    const pool = conn.pool;
    pool.count--;
    this.#all.delete(conn);
    if (wasIdle) {
      const i = pool.idle.indexOf(conn);
      if (i !== -1) pool.idle.splice(i, 1);
    }
    while (pool.queue.length > 0 && pool.count < this.#max) {
      const next = pool.queue.shift() as Exchange;
      this.#open(pool).start(next);
    }
    if (this.#all.size === 0 && this.#onEmpty !== null) this.#onEmpty();
  }

  /** The exchange's connection failed (or none could be had): retry, refuse, or cut. */
  failed(ex: Exchange, kind: Failure, connected: boolean, reused: boolean, gotBytes: boolean): void {
    if (ex.ended) return;
    const res = ex.res;
    if (res.headersSent) {
      // Mid-response failure: the client must not mistake a truncated body for a complete
      // one, so its connection is cut — after what was already written leaves (Node
      // flushes a response's first writes on the next tick).
      process.nextTick(cut, res);
      ex.finish(res.statusCode, failureOf(kind));
      return;
    }
    const idempotent = IDEMPOTENT.has(ex.f.method);
    if (!this.#closed) {
      // The keep-alive race: the upstream closed an idle connection as the request went out.
      if (kind === "reset" && reused && !gotBytes && idempotent && !ex.raced) {
        ex.raced = true;
        ex.fresh = true;
        this.#dispatch(ex, ex.upstream);
        return;
      }
      // A request that never reached an upstream (no connection) can go anywhere; one
      // that was written only when it is idempotent (it has no body here) and no
      // response byte came back. Never an origin twice, never an ejected one.
      const neverConnected = !connected && (kind === "connect" || kind === "connect_timeout");
      const retryable = neverConnected || (kind === "reset" && !gotBytes && idempotent);
      if (retryable) {
        ex.fresh = false;
        if (this.#next(ex)) return;
      }
    }
    const failure = failureOf(kind);
    ex.refuse(res, failure);
    ex.finish(res.statusCode, failure);
  }

  /** The client went away before the response ended: its upstream connection is not reused. */
  clientGone(ex: Exchange): void {
    if (ex.ended || ex.res.writableFinished) return;
    const conn = ex.conn;
    if (conn !== null) {
      ex.conn = null;
      conn.close();
    } else if (ex.pool !== null) {
      const i = ex.pool.queue.indexOf(ex);
      if (i !== -1) ex.pool.queue.splice(i, 1);
    }
    ex.finish(0, null);
  }

  #sweep(): void {
    const now = performance.now();
    this.#clock = now;
    for (const conn of this.#all) {
      switch (conn.phase) {
        case IDLE:
          if (now >= conn.idleUntil) conn.close();
          else if (conn.refed) {
            // An idle pool does not keep the process alive (toggled per sweep, not per request).
            conn.refed = false;
            conn.socket.unref();
          }
          break;
        case CONNECTING:
          if (conn.ex !== null && now >= conn.deadline) conn.fail("connect_timeout");
          break;
        case WAITING:
          if (now >= conn.deadline) conn.fail("headers_timeout");
          break;
        case BODY:
          // Progress (upstream bytes, or a paused client draining) restarts the clock. A
          // client that takes nothing for a body timeout while the upstream waits on it
          // is cut: it would otherwise hold this connection, and the queue behind it,
          // for as long as it likes.
          if (conn.active) {
            conn.active = false;
            conn.deadline = now + this.bodyTimeoutMs;
          } else if (now >= conn.deadline) conn.fail(conn.paused ? "client_stalled" : "body_timeout");
          break;
      }
    }
    // A request waiting for a connection waits at most a headers timeout (504): a pool
    // whose connections are all held (a slow upstream, slow clients) fails fast.
    for (const pool of this.#pools.values())
      while (pool.queue.length > 0 && now >= (pool.queue[0] as Exchange).queuedAt + this.headersTimeoutMs)
        this.failed(pool.queue.shift() as Exchange, "headers_timeout", false, false, false);
    // Origins nobody uses any more are forgotten now and then.
    if (++this.#sweeps % 64 === 0)
      for (const [origin, pool] of this.#pools) if (pool.count === 0 && pool.queue.length === 0) this.#pools.delete(origin);
  }

  /** Stops taking requests, closes idle connections, and resolves when the busy ones are done. */
  close(): Promise<void> {
    if (this.#closing !== null) return this.#closing;
    this.#closed = true;
    for (const pool of this.#pools.values())
      for (const ex of pool.queue.splice(0)) this.failed(ex, "shutdown", false, false, false);
    for (const conn of this.#all) if (conn.phase === IDLE) conn.close();
    this.#closing = new Promise((resolve) => {
      this.#onEmpty = () => {
        clearInterval(this.#timer);
        resolve();
      };
    });
    if (this.#all.size === 0) this.#onEmpty?.();
    return this.#closing;
  }

  /** Destroys every connection now (busy ones fail their exchange). */
  destroy(): void {
    this.#closed = true;
    for (const pool of this.#pools.values())
      for (const ex of pool.queue.splice(0)) this.failed(ex, "shutdown", false, false, false);
    for (const conn of this.#all) conn.fail("shutdown");
    clearInterval(this.#timer);
  }
}
