/**
 * The router's HTTP/1.1 client: every forwarded request goes through it, to `http:`
 * and `https:` origins, with or without a body. One client, one set of timeouts, one
 * retry rule.
 *
 * Why it is hand-written: measured on this machine, undici's client side and its glue
 * cost more of the router's CPU per forwarded request than the Node server side, most
 * of it generality the router does not use (a request object and handler chain per
 * dispatch, header normalisation both ways, a WebAssembly parser call per read, a timer
 * per request). This client writes the prepared header list as one latin1 string
 * (h1-request.ts), parses the response head with a table-driven byte loop
 * (h1-parser.ts), streams body slices straight between the Node request/response and
 * the socket (h1-connection.ts), and runs every timeout from one coarse sweep. In a
 * same-run A/B of the whole router (3 alternating rounds), forwarding through it took
 * 17-23% less CPU per request than through undici (docs/performance.md).
 *
 * Behaviour:
 * - keep-alive pool per origin, at most `connections` sockets, requests beyond it
 *   queued (bounded, each waiting at most a headers timeout); one request at a time per
 *   connection (no pipelining);
 * - a connection is reused only after a response that was read completely, framed
 *   cleanly, with no byte after it, whose request body was sent whole, and that nobody
 *   marked `Connection: close`; an idle connection that receives anything, or is handed
 *   back with unread bytes, is destroyed; reuse waits for the check phase of the event
 *   loop, so bytes already delivered to an idle socket are seen before a request is
 *   written on it;
 * - origins are picked, and their outcomes reported, through the shared passive health
 *   (health.ts) when the request carries one: ejected origins are skipped;
 * - retries: a request whose connection could not be made (nothing of its body read
 *   yet) goes to the next origin; so does an idempotent body-less request whose
 *   connection failed before any response byte; a reused connection found closed (EOF
 *   or reset before any response byte, the keep-alive race) is retried once on a fresh
 *   connection to the same origin when the request is idempotent and body-less — it
 *   never reached the app, so neither the retry nor the race counts against the origin.
 *   Each origin at most once; nothing else is retried;
 * - the client's body is counted (bytes in) and cut at the tenant's limit while it
 *   streams: 413 before the response began, the client connection cut after;
 * - connect timeout and headers timeout → 504; an upstream that takes no body byte, or
 *   sends no response byte, for a body timeout → 504 or the client connection cut; a
 *   client that sends no body byte, or takes no response byte, for a body timeout is
 *   cut (408 when nothing was answered); any failure after the response began cuts the
 *   client connection, so a truncated body never looks complete; the client going
 *   away destroys the upstream connection.
 */
import type { ServerResponse } from "node:http";
import { BODY, CONNECTING, Conn, type ConnOwner, IDLE, SENDING, WAITING } from "./h1-connection.ts";
import { BODY_STREAMING, BODY_UNREAD, Exchange, type Failure, failureOf, Pool } from "./h1-exchange.ts";
import { bodyLength, requestHead } from "./h1-request.ts";
import type { ForwardRequest, ForwardResult, RefuseWriter, UpstreamOptions } from "./index.ts";

export { requestHead } from "./h1-request.ts";

export interface H1Options extends UpstreamOptions {
  /** Idle keep-alive time of a connection; an upstream's `Keep-Alive: timeout` hint shortens it. */
  keepAliveTimeoutMs?: number;
  /** Upper bound for the hint. */
  keepAliveMaxTimeoutMs?: number;
  /** Requests waiting for a connection, per origin, before new ones are refused. */
  maxQueue?: number;
  /** Certificate authorities trusted for `https:` origins (default: Node's, plus NODE_EXTRA_CA_CERTS). */
  ca?: string | Buffer | (string | Buffer)[];
}

const IDEMPOTENT = new Set(["GET", "HEAD", "OPTIONS", "PUT", "DELETE"]);
/** Before a keep-alive hint's expiry, give up the connection this much earlier. */
const KEEP_ALIVE_THRESHOLD_MS = 2_000;

function cut(res: ServerResponse): void {
  res.destroy();
}

export class H1Client implements ConnOwner {
  readonly connectTimeoutMs: number;
  readonly headersTimeoutMs: number;
  readonly bodyTimeoutMs: number;
  readonly ca: string | Buffer | (string | Buffer)[] | undefined;
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
    this.ca = o.ca;
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
   * Forwards one request; `done` is called once, when the exchange is over (response
   * ended, failed and answered by the router, or the client gone).
   */
  forward(res: ServerResponse, f: ForwardRequest, refuse: RefuseWriter, done: (result: ForwardResult) => void): void {
    const started = performance.now();
    const length = bodyLength(f.body);
    const head = requestHead(f.method, f.path, f.headers, length);
    const ex = new Exchange(this, res, f, refuse, done, head ?? "", length, started);
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
      const tls = url.protocol === "https:";
      pool = new Pool(host, url.port === "" ? (tls ? 443 : 80) : Number(url.port), tls);
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
    // Resending is safe only for what the app cannot have acted on twice: an idempotent
    // request without a body.
    const idempotent = IDEMPOTENT.has(ex.f.method) && ex.body === null;
    if (!this.#closed) {
      // The keep-alive race: the upstream closed an idle connection as the request went out.
      if (kind === "reset" && reused && !gotBytes && idempotent && !ex.raced) {
        ex.raced = true;
        ex.fresh = true;
        this.#dispatch(ex, ex.upstream);
        return;
      }
      // A request that never reached an upstream (no connection, no body byte read) can
      // go anywhere; one that was written only when it is idempotent and no response
      // byte came back. Never an origin twice, never an ejected one.
      const neverConnected = !connected && (kind === "connect" || kind === "connect_timeout") && ex.bodyState === BODY_UNREAD;
      const retryable = neverConnected || (kind === "reset" && !gotBytes && idempotent);
      if (retryable) {
        ex.fresh = false;
        if (this.#next(ex)) return;
      }
    }
    const failure = failureOf(kind);
    // The rest of a body that was being sent is not read: the client's connection
    // closes after this answer.
    if (ex.bodyState === BODY_STREAMING) res.shouldKeepAlive = false;
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
        case SENDING:
          // Progress (a body byte read or taken) restarts the clock. Stuck on the
          // upstream (its socket full): the upstream's doing; otherwise the client's.
          if (conn.active) {
            conn.active = false;
            conn.deadline = now + this.bodyTimeoutMs;
          } else if (now >= conn.deadline) conn.fail(conn.sendPaused ? "send_timeout" : "client_stalled");
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
