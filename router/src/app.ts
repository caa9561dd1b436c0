/**
 * The router app: every request goes through Hono, to the request path in
 * `pipeline/` (its stages, in order, are listed in `pipeline/index.ts`); what is
 * decided at the socket or on the raw request, before Hono, is in `edge/`.
 */
import { getRequestListener } from "@hono/node-server";
import { Hono } from "hono";
import { refusalBody } from "@portcullis/shared";
import { createEdge } from "./edge/index.ts";
import { refusalHeaders } from "./errors.ts";
import { createRuntime, type Env, Exchange, REQUEST_PATH, type RouterDeps, run } from "./pipeline/index.ts";
import { nextRequestId } from "./request-id.ts";

export type { RouterDeps } from "./pipeline/index.ts";

export function createRouterApp(deps: RouterDeps) {
  const runtime = createRuntime(deps);
  const app = new Hono<Env>();

  app.all("*", function route(c) {
    const incoming = c.env.incoming;
    const x = new Exchange(runtime, c, nextRequestId(), performance.now(), deps.clientIp(incoming));
    c.set("exchange", x);
    runtime.inflight.set(incoming.socket, x);
    deps.metrics.inFlight.inc();
    try {
      const reply = run(REQUEST_PATH, x);
      return reply instanceof Promise ? reply.catch((error: unknown) => x.fail(error)) : reply;
    } catch (error) {
      return x.fail(error);
    }
  });

  app.onError((error, c) => {
    // Outside the request path (a failure of the framework itself): fail closed.
    const x = c.get("exchange");
    if (x !== undefined) return x.fail(error);
    const requestId = nextRequestId();
    if (deps.log) deps.log.error({ err: error, requestId }, "router error");
    else console.error(`router error ${requestId}:`, error);
    return c.body(refusalBody("resolution_unavailable", requestId), 503, refusalHeaders("resolution_unavailable", requestId));
  });

  const honoListener = getRequestListener(app.fetch, { hostname: "invalid.invalid" });
  const edge = createEdge(runtime, (incoming, outgoing) => void honoListener(incoming, outgoing));
  return { app, ...edge };
}
