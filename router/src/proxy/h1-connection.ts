/**
 * One upstream connection of the h1 client (h1.ts), carrying one exchange
 * (h1-exchange.ts) at a time: writing the request head and streaming its body onto the
 * socket, feeding the response bytes to the parser (h1-parser.ts) and the parsed
 * response to the client, with backpressure both ways.
 *
 * A connection moves CONNECTING → (SENDING while a request body streams) → WAITING
 * for the response head → BODY → IDLE (reusable) or DEAD. The client's timeouts are
 * run by its sweep from each connection's `deadline` and `active` flag; nothing here
 * arms a timer per request.
 */
import type { IncomingMessage } from "node:http";
import { connect, isIP, type Socket } from "node:net";
import { connect as tlsConnect } from "node:tls";
import { type ParseError, ResponseParser, type ResponseSink } from "./h1-parser.ts";
import { BODY_SENT, BODY_STREAMING, type Exchange, type Failure, healthKind, type Pool } from "./h1-exchange.ts";
import { chunkLine, LAST_CHUNK } from "./h1-request.ts";
import { connectionTokens, RESPONSE_DROP } from "./headers.ts";

/** What the connection layer asks of the client that owns it (H1Client). */
export interface ConnOwner {
  readonly connectTimeoutMs: number;
  readonly headersTimeoutMs: number;
  readonly bodyTimeoutMs: number;
  /** Trusted certificate authorities for `https:` origins (default: Node's). */
  readonly ca: string | Buffer | (string | Buffer)[] | undefined;
  clientGone(ex: Exchange): void;
  release(conn: Conn): void;
  removed(conn: Conn, wasIdle: boolean): void;
  failed(ex: Exchange, kind: Failure, connected: boolean, reused: boolean, gotBytes: boolean): void;
}

/** Request-body bytes written at once, at the latest. */
const FLUSH_BYTES = 64 * 1024;

// Connection phases.
export const CONNECTING = 0;
export const SENDING = 1;
export const WAITING = 2;
export const BODY = 3;
export const IDLE = 4;
export const DEAD = 5;

export class Conn implements ResponseSink {
  readonly owner: ConnOwner;
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
  /** The client's response is full: the upstream is not read. */
  paused = false;
  /** The upstream socket is full: the client's body is not read. */
  sendPaused = false;
  /** Bytes moved (either way) since the last sweep. */
  active = false;
  deadline = 0;
  idleUntil = 0;
  /** The socket keeps the process alive (it does only while it may be in use). */
  refed = true;
  /** Body bytes read from the client and not yet written. */
  readonly #pending: Buffer[] = [];
  #pendingBytes = 0;
  #flushScheduled = false;

  constructor(owner: ConnOwner, pool: Pool) {
    this.owner = owner;
    this.pool = pool;
    this.parser = new ResponseParser(this);
    const { host, port } = pool;
    // TLS: SNI with the origin's name (never an address), HTTP/1.1 by ALPN, the
    // certificate checked against Node's CAs (or the client's `ca`).
    const socket = pool.tls
      ? tlsConnect({ host, port, servername: isIP(host) === 0 ? host : undefined, ALPNProtocols: ["http/1.1"], ca: owner.ca })
      : connect({ host, port });
    // No Nagle delay; TCP keep-alive probes after a minute idle.
    socket.setNoDelay(true);
    socket.setKeepAlive(true, 60_000);
    this.socket = socket;
    socket.on(pool.tls ? "secureConnect" : "connect", () => {
      this.connected = true;
      if (this.phase === CONNECTING && this.ex !== null) this.#sendBody(this.ex);
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
    this.socket.write(ex.head, "latin1");
    if (this.connected) this.#sendBody(ex);
    else this.deadline = performance.now() + this.owner.connectTimeoutMs;
  }

  /**
   * Once connected, the request body (if any) streams onto the socket; reading it
   * starts only now, so a request whose connection failed has consumed nothing and can
   * go to another origin.
   */
  #sendBody(ex: Exchange): void {
    const body = ex.body;
    if (body === null) {
      this.phase = WAITING;
      this.deadline = performance.now() + this.owner.headersTimeoutMs;
      return;
    }
    this.phase = SENDING;
    this.deadline = performance.now() + this.owner.bodyTimeoutMs;
    ex.bodyState = BODY_STREAMING;
    // Nothing else reads the client's body: one that was already read elsewhere cannot
    // be forwarded whole, and sending less than the declared length would leave the
    // upstream reading the next request as its rest.
    if (body.readableEnded || body.readableEncoding !== null) {
      this.fail("error");
      return;
    }
    body.on("data", this.#onBodyData);
    body.on("end", this.#onBodyEnd);
  }

  readonly #onBodyData = (chunk: Buffer) => {
    const ex = this.ex;
    if (ex === null || ex.bodyState !== BODY_STREAMING || chunk.length === 0) return;
    ex.bytesIn += chunk.length;
    this.active = true;
    const max = ex.f.maxBodyBytes;
    if (max !== null && ex.bytesIn > max) {
      this.#stopBody(ex);
      this.fail("body_too_large");
      return;
    }
    // What one turn of the event loop read goes out as one write (one chunk when
    // chunked): a client sending tiny chunks costs a system call per turn, not per chunk.
    this.#pending.push(chunk);
    this.#pendingBytes += chunk.length;
    if (this.#pendingBytes >= FLUSH_BYTES) this.#flush(ex);
    else if (!this.#flushScheduled) {
      this.#flushScheduled = true;
      setImmediate(this.#flushSoon);
    }
  };

  readonly #flushSoon = () => {
    this.#flushScheduled = false;
    const ex = this.ex;
    if (ex !== null && ex.bodyState === BODY_STREAMING) this.#flush(ex);
  };

  /** Writes the body read so far; pauses the client when the upstream socket is full. */
  #flush(ex: Exchange): void {
    const pending = this.#pending;
    if (pending.length === 0) return;
    const socket = this.socket;
    socket.cork();
    if (ex.chunked) socket.write(chunkLine(this.#pendingBytes), "latin1");
    let room = true;
    for (const piece of pending) room = socket.write(piece);
    if (ex.chunked) room = socket.write("\r\n", "latin1");
    socket.uncork();
    pending.length = 0;
    this.#pendingBytes = 0;
    if (!room && !this.sendPaused) {
      // Backpressure: the client is read no faster than the upstream takes its body.
      this.sendPaused = true;
      (ex.body as IncomingMessage).pause();
      socket.once("drain", this.#onSocketDrain);
    }
  }

  readonly #onSocketDrain = () => {
    this.sendPaused = false;
    this.active = true;
    const ex = this.ex;
    if (ex !== null && ex.bodyState === BODY_STREAMING) (ex.body as IncomingMessage).resume();
  };

  readonly #onBodyEnd = () => {
    const ex = this.ex;
    if (ex === null || ex.bodyState !== BODY_STREAMING) return;
    this.#flush(ex);
    this.#stopBody(ex);
    // Node ends a body only at its declared length; anything else must not leave a
    // reusable connection behind.
    if (ex.length !== -1 && ex.bytesIn !== ex.length) {
      this.fail("error");
      return;
    }
    ex.bodyState = BODY_SENT;
    if (ex.chunked) this.socket.write(LAST_CHUNK, "latin1");
    if (this.phase === SENDING) {
      this.phase = WAITING;
      this.deadline = performance.now() + this.owner.headersTimeoutMs;
    }
  };

  /** Stops reading the client's body (sent, refused, or no longer wanted). */
  #stopBody(ex: Exchange): void {
    const body = ex.body;
    if (body === null || ex.bodyState !== BODY_STREAMING) return;
    body.off("data", this.#onBodyData);
    body.off("end", this.#onBodyEnd);
    this.socket.off("drain", this.#onSocketDrain);
    this.sendPaused = false;
    this.#pending.length = 0;
    this.#pendingBytes = 0;
  }

  onHead(status: number, headers: string[]): boolean {
    const ex = this.ex as Exchange;
    // A response before the whole request body: what is left of it will not be
    // forwarded, so the client's connection ends with this response.
    if (ex.bodyState === BODY_STREAMING) ex.res.shouldKeepAlive = false;
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
    // A connection whose request body was not all sent carries nothing else.
    const unsent = ex.bodyState === BODY_STREAMING;
    this.#stopBody(ex);
    this.ex = null;
    ex.conn = null;
    if (reusable && !unsent) this.owner.release(this);
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
    const ex = this.ex;
    if (ex !== null) this.#stopBody(ex);
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
    this.owner.removed(this, wasIdle);
    if (ex !== null) {
      this.#stopBody(ex);
      ex.conn = null;
      // Before the response head only: after it the status was reported. The
      // keep-alive race (a reused connection closed before any byte) is not the
      // origin failing.
      const health = ex.ended ? undefined : ex.f.health;
      if (health !== undefined && !ex.res.headersSent && !(kind === "reset" && this.reused && !this.gotBytes)) {
        const counted = healthKind(kind);
        if (counted !== null) health.failure(ex.upstream, counted);
      }
      this.owner.failed(ex, kind, this.connected, this.reused, this.gotBytes);
    }
  }
}
