/**
 * `verify` for Hono: refuses with 401 before any handler runs, else sets the typed
 * `c.var.tenant`. On @hono/node-server it verifies against the raw Node request (the
 * request target exactly as the router sent it; a Web Request's URL is normalized).
 */
import type { IncomingMessage } from "node:http";
import type { MiddlewareHandler } from "hono";
import type { ReceivedRequest } from "../context/index.ts";
import { REFUSAL_HEADERS, REFUSAL_STATUS, refusalBody } from "../errors.ts";
import type { Tenant } from "../tenant.ts";
import { createVerifier, type VerifyOptions } from "./core.ts";

/** The Hono env of an app behind `verify`: `c.var.tenant` is the verified tenant. */
export interface TenantEnv {
  Variables: { tenant: Tenant };
}

export function verify(options: VerifyOptions): MiddlewareHandler<TenantEnv> {
  const verifyRequest = createVerifier(options);
  return async function verifyTenant(c, next) {
    const incoming = (c.env as { incoming?: IncomingMessage } | undefined)?.incoming;
    const received: ReceivedRequest =
      incoming !== undefined && typeof incoming.url === "string"
        ? incoming
        : { method: c.req.method, url: c.req.url, headers: c.req.raw.headers };
    const outcome = verifyRequest(received);
    if (!outcome.ok) {
      return c.body(refusalBody(outcome.code, c.req.header("x-request-id")), REFUSAL_STATUS, REFUSAL_HEADERS);
    }
    c.set("tenant", outcome.tenant);
    await next();
  };
}
