/**
 * The request path of the router, in order. Every request goes through Hono to these
 * stages; each refusal ends the exchange before `forward`, so no refused request
 * reaches an upstream. Before them, at the socket (`edge/`): what Node's parser could
 * not read, upgrades, CONNECT, unmet expectations and the raw-framing guard.
 *
 *   guard        the Host and target the edge checked          guard/
 *   resolve      exact Host → tenant (memory → Redis → key service)   tenant-cache/
 *   credentials  API key and session cookie, verified           keys/ sessions/
 *   decide       one fail-closed decision from all outcomes    shared/src/policy/
 *   limits       body size, rate, monthly quota, concurrency   limits/
 *   branding     audit room (fail-closed audit); the tenant's branding document  branding/
 *   forward      signed tenant context, streamed upstream      proxy/
 */
import { branding } from "./branding.ts";
import { credentials } from "./credentials.ts";
import { decide } from "./decide.ts";
import { forward } from "./forward.ts";
import { guard } from "./guard.ts";
import { limits } from "./limits.ts";
import { resolve } from "./resolve.ts";
import type { Stage } from "./run.ts";

export const REQUEST_PATH: readonly Stage[] = [guard, resolve, credentials, decide, limits, branding, forward];

export { type Env, Exchange } from "./exchange.ts";
export { EXPECTS_CONTINUE, GUARDED, type Guarded } from "./guard.ts";
export { run } from "./run.ts";
export { createRuntime, type RouterDeps, type Runtime } from "./runtime.ts";
