/**
 * The request-side state of the h1 client (h1.ts): one exchange (a client request on
 * its way to an origin and the response coming back), the per-origin pool it waits
 * in, and how its failures are named and reported.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { RefusalReason } from "@portcullis/shared";
import type { Conn, ConnOwner } from "./h1-connection.ts";
import type { FailureKind } from "./health.ts";
import type { ForwardRequest, ForwardResult, RefuseWriter } from "./index.ts";

/** How an exchange with the upstream failed. */
export type Failure =
  | "client_stalled"
  | "body_too_large"
  | "connect"
  | "connect_timeout"
  | "reset"
  | "error"
  | "protocol"
  | "invalid_headers"
  | "headers_timeout"
  | "send_timeout"
  | "body_timeout"
  | "overloaded"
  | "shutdown";

/** How a failure before the response counts against the origin (null: not the origin's doing). */
export function healthKind(kind: Failure): FailureKind | null {
  switch (kind) {
    case "connect":
    case "connect_timeout":
      return "connect_error";
    case "headers_timeout":
    case "send_timeout":
      return "timeout";
    case "reset":
    case "error":
      return "reset";
    case "protocol":
    case "invalid_headers":
      return "protocol";
    default:
      // client_stalled, body_too_large, body_timeout (after the head), overloaded,
      // shutdown: the router's or the client's side.
      return null;
  }
}

export function failureOf(kind: Failure): RefusalReason {
  if (kind === "client_stalled") return "request_timeout";
  if (kind === "body_too_large") return "body_too_large";
  return kind === "connect_timeout" || kind === "headers_timeout" || kind === "send_timeout" || kind === "body_timeout"
    ? "upstream_timeout"
    : "upstream_unavailable";
}

// How far the request body has gone.
export const BODY_UNREAD = 0;
export const BODY_STREAMING = 1;
export const BODY_SENT = 2;

export class Pool {
  readonly host: string;
  readonly port: number;
  readonly tls: boolean;
  readonly idle: Conn[] = [];
  readonly queue: Exchange[] = [];
  /** Live connections (connecting, busy or idle). */
  count = 0;
  constructor(host: string, port: number, tls: boolean) {
    this.host = host;
    this.port = port;
    this.tls = tls;
  }
}

/**
 * A finished exchange's references to its request (see `Exchange.finish`): nothing reads
 * them once `ended` is set, and every path that could checks `ended` first.
 */
const RELEASED = null as never;

export class Exchange {
  res: ServerResponse;
  f: ForwardRequest;
  refuse: RefuseWriter;
  done: (result: ForwardResult) => void;
  head: string;
  readonly started: number;
  onClose: () => void;
  /** The client's body, or null. */
  body: IncomingMessage | null;
  /** The body's length upstream: declared bytes, -1 chunked, null no body (h1-request.ts `bodyLength`). */
  readonly length: number | null;
  /** Sent chunked (the client declared no length). */
  readonly chunked: boolean;
  bodyState = BODY_UNREAD;
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
  bytesIn = 0;
  bytesOut = 0;
  ended = false;
  /** When it joined its pool's queue (sweep clock): it waits at most a headers timeout. */
  queuedAt = 0;

  constructor(
    owner: ConnOwner,
    res: ServerResponse,
    f: ForwardRequest,
    refuse: RefuseWriter,
    done: (result: ForwardResult) => void,
    head: string,
    length: number | null,
    started: number,
  ) {
    this.res = res;
    this.f = f;
    this.refuse = refuse;
    this.done = done;
    this.head = head;
    this.body = f.body;
    this.length = length;
    this.chunked = length === -1;
    this.started = started;
    this.onClose = () => owner.clientGone(this);
  }

  finish(status: number, failure: RefusalReason | null): void {
    if (this.ended) return;
    this.ended = true;
    this.res.off("close", this.onClose);
    const done = this.done;
    // Lets go of the request at once. An exchange can outlive its request in the old
    // generation (one in flight during a young collection is moved there, and V8 may
    // then allocate them there from the start): what it still referenced (the
    // response, the request, the socket's buffers, the pipeline's callbacks) then
    // survived every young collection until the next full one. With these references
    // kept, a server forwarding through this client at 1,000 req/s promoted about a
    // fifth of what it allocated (2.4-5.5 MB a scavenge, every 2 s, 9-20 ms each, the
    // old generation growing ~2 MB/s until a mark-compact); without them, a few KB.
    this.res = RELEASED;
    this.f = RELEASED;
    this.refuse = RELEASED;
    this.done = RELEASED;
    this.onClose = RELEASED;
    this.body = null;
    this.head = "";
    this.onDrain = null;
    done({
      status,
      failure,
      bytesIn: this.bytesIn,
      bytesOut: this.bytesOut,
      upstream: this.upstream || null,
      upstreamMs: performance.now() - this.started,
    });
  }
}
