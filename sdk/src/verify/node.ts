/**
 * `verifyNode` for Node's http server and Express-style apps. One function with the
 * `(req, res, next)` shape: it writes the 401 itself and returns null on a refusal;
 * on success it records the tenant for `tenantOf(req)` (and as `req.tenant`, the
 * Express habit), calls `next()` when given one, and returns the tenant:
 *
 *   const guard = verifyNode({ keys });
 *   http.createServer((req, res) => { const tenant = guard(req, res); if (!tenant) return; … });
 *   expressApp.use(guard);
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { REFUSAL_HEADERS, REFUSAL_STATUS, refusalBody } from "../errors.ts";
import type { Tenant } from "../tenant.ts";
import { createVerifier, type VerifyOptions } from "./core.ts";

const TENANTS = new WeakMap<IncomingMessage, Tenant>();

/** The tenant `verifyNode` verified for this request, or null. */
export function tenantOf(req: IncomingMessage): Tenant | null {
  return TENANTS.get(req) ?? null;
}

export type NodeVerify = (req: IncomingMessage, res: ServerResponse, next?: (error?: unknown) => void) => Tenant | null;

export function verifyNode(options: VerifyOptions): NodeVerify {
  const verifyRequest = createVerifier(options);
  return function verifyTenant(req, res, next) {
    // Express (and connect) rewrite `url` under a mount path; the router signed the
    // target the client sent, which they keep as `originalUrl`.
    const original = (req as IncomingMessage & { originalUrl?: unknown }).originalUrl;
    const outcome = verifyRequest(
      typeof original === "string" && original !== req.url ? { method: req.method, url: original, headers: req.headers } : req,
    );
    if (!outcome.ok) {
      const id = req.headers["x-request-id"];
      const body = refusalBody(outcome.code, typeof id === "string" ? id : undefined);
      if (res.headersSent) res.destroy();
      else {
        res.writeHead(REFUSAL_STATUS, { ...REFUSAL_HEADERS, "content-length": Buffer.byteLength(body) });
        res.end(body);
      }
      return null;
    }
    TENANTS.set(req, outcome.tenant);
    (req as IncomingMessage & { tenant?: Tenant }).tenant = outcome.tenant;
    next?.();
    return outcome.tenant;
  };
}
