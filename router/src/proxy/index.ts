/**
 * Forwarding to a tenant's upstream origins. Every request goes through one client,
 * the HTTP/1.1 client of h1.ts (`http:` and `https:`, with or without a body), straight
 * between the Node request/response streams and the upstream socket (no Web
 * Request/Response on the path), with backpressure both ways; origins are picked
 * through the shared passive health (health.ts). What it retries, and when a framing or
 * protocol error cuts which connection, is written at the top of h1.ts.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { RefusalReason } from "@portcullis/shared";
import { type H1Options, H1Client } from "./h1.ts";
import type { UpstreamHealth } from "./health.ts";

export { H, isBlockedRequestHeader, connectionTokens } from "./headers.ts";
export { type FailureKind, type HealthOptions, UpstreamHealth } from "./health.ts";
export { H1Client, type H1Options } from "./h1.ts";

export interface UpstreamOptions {
  connectTimeoutMs: number;
  headersTimeoutMs: number;
  bodyTimeoutMs: number;
  connections: number;
}

/** The router's upstream client, with its keep-alive settings. */
export function createUpstreamClient(o: UpstreamOptions & Partial<H1Options>): H1Client {
  return new H1Client({ keepAliveTimeoutMs: 30_000, keepAliveMaxTimeoutMs: 60_000, ...o });
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
  /** Passive health of the origins (shared by all requests); without it, plain rotation. */
  health?: UpstreamHealth;
}

export interface ForwardResult {
  /** Status sent to the client (0 when the client went away first). */
  status: number;
  /** Set when the router answered for the upstream (502/504/413/408). */
  failure: RefusalReason | null;
  bytesIn: number;
  bytesOut: number;
  upstream: string | null;
  upstreamMs: number;
}

export type RefuseWriter = (res: ServerResponse, reason: RefusalReason) => void;
