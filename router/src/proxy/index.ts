/**
 * Forwarding to a tenant's upstream. Requests without a body to `http:` upstreams go
 * through the purpose-built HTTP/1.1 client in h1.ts (the hot path: it costs a
 * fraction of undici's per-request CPU); `forwardRequest` picks. Everything else —
 * request bodies, `https:` upstreams — goes through undici's dispatcher API here,
 * straight between the Node request/response streams (no Web Request/Response on the
 * path). Streams both ways with backpressure; picks origins through the
 * shared passive health (health.ts: ejected origins are skipped) and reports each
 * try's outcome to it; retries another origin only when the connection could not be
 * made and no body byte was read, or, for an idempotent request without a body, when
 * the connection failed before any response byte (each origin at most once); a framing or
 * protocol error from an upstream destroys that upstream connection (undici does)
 * and, if the response had started, the client connection too, so no byte of one
 * response can reach another request.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { Transform } from "node:stream";
import { Agent, type Dispatcher } from "undici";
import type { RefusalReason } from "@portcullis/shared";
import { H1Client } from "./h1.ts";
import type { FailureKind, UpstreamHealth } from "./health.ts";
import { connectionTokens, RESPONSE_DROP } from "./headers.ts";

export { H, isBlockedRequestHeader, connectionTokens } from "./headers.ts";
export { type FailureKind, type HealthOptions, UpstreamHealth } from "./health.ts";

export interface UpstreamOptions {
  connectTimeoutMs: number;
  headersTimeoutMs: number;
  bodyTimeoutMs: number;
  connections: number;
}

export function createDispatcher(o: UpstreamOptions): Agent {
  return new Agent({
    connect: { timeout: o.connectTimeoutMs },
    connections: o.connections,
    headersTimeout: o.headersTimeoutMs,
    bodyTimeout: o.bodyTimeoutMs,
    keepAliveTimeout: 30_000,
    keepAliveMaxTimeout: 60_000,
    pipelining: 1,
  });
}

/** The hot-path client for body-less requests, with the same limits as the dispatcher. */
export function createH1Client(o: UpstreamOptions): H1Client {
  return new H1Client({ ...o, keepAliveTimeoutMs: 30_000, keepAliveMaxTimeoutMs: 60_000 });
}

export type { H1Client };

/**
 * Forwards one request: body-less ones to `http:` origins with the h1 client when
 * there is one, the rest with undici. Same contract as `forward`.
 */
export function forwardRequest(
  dispatcher: Dispatcher,
  h1: H1Client | undefined,
  res: ServerResponse,
  f: ForwardRequest,
  refuse: RefuseWriter,
  done: (result: ForwardResult) => void,
): void {
  if (h1 !== undefined && f.body === null && plainHttp(f.origins)) h1.forward(res, f, refuse, done);
  else forward(dispatcher, res, f, refuse, done);
}

function plainHttp(origins: readonly string[]): boolean {
  if (origins.length === 0) return false;
  for (const origin of origins) if (!origin.startsWith("http://")) return false;
  return true;
}

export interface ForwardRequest {
  origins: readonly string[];
  start: number;
  method: string;
  path: string;
  headers: string[];
  /** The client request, streamed as the body when it has one. */
  body: IncomingMessage | null;
  maxBodyBytes: number | null;
  responseHeaders: Record<string, string>;
  /** A response whose client takes nothing for this long is cut (the h1 client uses its body timeout). */
  stallTimeoutMs?: number;
  /** Passive health of the origins (shared by all requests); without it, plain rotation. */
  health?: UpstreamHealth;
}

export interface ForwardResult {
  /** Status sent to the client (0 when the client went away first). */
  status: number;
  /** Set when the router answered for the upstream (502/504/413). */
  failure: RefusalReason | null;
  bytesIn: number;
  bytesOut: number;
  upstream: string | null;
  upstreamMs: number;
}

const CONNECT_ERRORS = new Set([
  "ECONNREFUSED",
  "ENOTFOUND",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "EAI_AGAIN",
  "UND_ERR_CONNECT_TIMEOUT",
]);
const RESET_ERRORS = new Set(["ECONNRESET", "UND_ERR_SOCKET", "EPIPE"]);
const IDEMPOTENT = new Set(["GET", "HEAD", "OPTIONS", "PUT", "DELETE"]);

class BodyTooLarge extends Error {
  override name = "BodyTooLarge";
  constructor() {
    super("request body exceeds the tenant's limit");
    // Expected outcome, thrown only to stop the body stream: no stack needed.
    this.stack = "";
  }
}

/** How a failure before the response counts against the origin. */
function healthKind(code: string): FailureKind {
  if (CONNECT_ERRORS.has(code)) return "connect_error";
  if (code === "UND_ERR_HEADERS_TIMEOUT") return "timeout";
  if (RESET_ERRORS.has(code)) return "reset";
  return "protocol";
}

function failureFor(error: Error & { code?: string }): RefusalReason {
  if (error instanceof BodyTooLarge) return "body_too_large";
  const code = error.code ?? "";
  if (code === "UND_ERR_HEADERS_TIMEOUT" || code === "UND_ERR_CONNECT_TIMEOUT" || code === "UND_ERR_BODY_TIMEOUT")
    return "upstream_timeout";
  return "upstream_unavailable";
}

export type RefuseWriter = (res: ServerResponse, reason: RefusalReason) => void;

/**
 * Forwards one request; `done` is called once, when the exchange is over (response
 * ended, failed and answered by the router, or the client gone).
 */
export function forward(
  dispatcher: Dispatcher,
  res: ServerResponse,
  f: ForwardRequest,
  refuse: RefuseWriter,
  done: (result: ForwardResult) => void,
): void {
  const started = performance.now();
  const health = f.health;
  // Next position of the origin rotation to try (health.ts `pick`).
  let cursor = 0;
  let bytesIn = 0;
  let bytesOut = 0;
  let ended = false;
  let controllerRef: Dispatcher.DispatchController | null = null;
  let current = "";
  let bodyError: Error | null = null;
  let drainHooked = false;
  let stall: NodeJS.Timeout | null = null;

  const finish = (status: number, failure: RefusalReason | null) => {
    if (ended) return;
    ended = true;
    if (stall !== null) clearTimeout(stall);
    res.off("close", onClientClose);
    done({ status, failure, bytesIn, bytesOut, upstream: current || null, upstreamMs: performance.now() - started });
  };
  const onClientClose = () => {
    if (!res.writableFinished) {
      controllerRef?.abort(new Error("client went away"));
      finish(0, null);
    }
  };
  res.on("close", onClientClose);

  // The body goes through a counting stream: bytes in for metering, and the
  // tenant's size limit enforced while streaming (a declared length over the
  // limit was refused before any upstream contact).
  let body: Transform | null = null;
  if (f.body !== null) {
    const max = f.maxBodyBytes ?? Number.POSITIVE_INFINITY;
    const source = f.body;
    body = new Transform({
      transform(chunk: Buffer, _enc, callback) {
        bytesIn += chunk.length;
        if (bytesIn > max) {
          bodyError = new BodyTooLarge();
          source.unpipe(body as Transform);
          callback(bodyError);
          return;
        }
        callback(null, chunk);
      },
    });
    source.pipe(body);
  }

  /** The next origin of the rotation, or null when none is left. */
  const next = (): string | null => {
    const n = f.origins.length;
    const p = health === undefined ? (cursor < n ? cursor : -1) : health.pick(f.origins, f.start, cursor);
    if (p === -1) return null;
    cursor = p + 1;
    return f.origins[(f.start + p) % n] as string;
  };

  const dispatch = (origin: string) => {
    current = origin;
    dispatcher.dispatch(
      { origin, path: f.path, method: f.method as Dispatcher.HttpMethod, headers: f.headers, body },
      {
        onRequestStart(controller) {
          controllerRef = controller;
        },
        onResponseStart(controller, statusCode, headers) {
          if (statusCode < 200) return; // 1xx informational: not forwarded
          const drop = connectionTokens(headers.connection);
          const out: Record<string, string | string[]> = {};
          for (const name in headers) {
            if (RESPONSE_DROP.has(name) || (drop.length > 0 && drop.includes(name))) continue;
            // Never on a 204 (RFC 9110 §8.6): a lenient hop after the router could read
            // the next response as its body.
            if (statusCode === 204 && name === "content-length") continue;
            const value = headers[name];
            if (value !== undefined) out[name] = value;
          }
          for (const name in f.responseHeaders) out[name] = f.responseHeaders[name] as string;
          try {
            res.writeHead(statusCode, out);
          } catch {
            // Headers Node will not send (invalid characters): refuse instead.
            controller.abort(new Error("invalid upstream response headers"));
            return;
          }
          health?.status(origin, statusCode);
        },
        onResponseData(controller, chunk) {
          bytesOut += chunk.length;
          if (!res.write(chunk)) {
            // Backpressure: listen for drain only once a write has actually filled
            // the client socket (most responses never do).
            controller.pause();
            if (!drainHooked) {
              drainHooked = true;
              res.on("drain", () => {
                if (stall !== null) clearTimeout(stall);
                stall = null;
                controller.resume();
              });
            }
            // A client that takes nothing for `stallTimeoutMs` is cut: it would
            // otherwise hold the upstream connection for as long as it likes.
            if (stall === null && f.stallTimeoutMs !== undefined)
              stall = setTimeout(() => {
                stall = null;
                finish(res.statusCode, "request_timeout");
                controller.abort(new Error("client stalled"));
                res.destroy();
              }, f.stallTimeoutMs);
          }
        },
        onResponseEnd() {
          res.end();
          finish(res.statusCode, null);
        },
        onResponseError(_controller, error: Error & { code?: string }) {
          if (ended) return;
          if (res.headersSent) {
            // Mid-response failure: the client must not mistake a truncated body
            // for a complete one. Close its connection.
            res.destroy(error);
            finish(res.statusCode, failureFor(error));
            return;
          }
          const code = error.code ?? "";
          // The client's body outgrowing its limit is not the origin's doing.
          if (health !== undefined && bodyError === null) health.failure(origin, healthKind(code));
          // A connect error: the request never left, so it can go elsewhere if no body
          // byte was consumed. A reset after it was written: only when it is idempotent
          // and has no body, and no response byte came (the head had not started).
          const untouched = body === null || !body.readableDidRead;
          const retryable =
            untouched && (CONNECT_ERRORS.has(code) || (RESET_ERRORS.has(code) && IDEMPOTENT.has(f.method) && body === null));
          if (retryable) {
            const other = next();
            if (other !== null) {
              dispatch(other);
              return;
            }
          }
          const failure = bodyError ? "body_too_large" : failureFor(error);
          // The rest of an oversized body is not read: close the connection after.
          if (bodyError) res.shouldKeepAlive = false;
          refuse(res, failure);
          finish(res.statusCode, failure);
        },
      },
    );
  };
  const first = next();
  if (first === null) {
    refuse(res, "upstream_unavailable");
    finish(res.statusCode, "upstream_unavailable");
    return;
  }
  dispatch(first);
}
