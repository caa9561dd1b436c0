/**
 * guard: the raw framing, target and Host checks (`guard/`) run on the Node request
 * before Hono sees it (the adapter builds a URL from them; `edge/`), which leaves its
 * verdict on the request. This stage takes the checked Host and target from it — or,
 * for a request that reached the app without the edge, checks now.
 */
import type { IncomingMessage } from "node:http";
import { inspectRequest } from "../guard/index.ts";
import type { Exchange } from "./exchange.ts";
import type { Outcome } from "./run.ts";

export const GUARDED = Symbol("portcullis.guarded");
/** The client sent `Expect: 100-continue` and waits for 100 before its body. */
export const EXPECTS_CONTINUE = Symbol("portcullis.expectsContinue");
export type Guarded = IncomingMessage & { [GUARDED]?: { hostname: string; path: string }; [EXPECTS_CONTINUE]?: true };

export function guard(x: Exchange): Outcome {
  const incoming = x.incoming as Guarded;
  let verdict = incoming[GUARDED];
  if (verdict === undefined) {
    const checked = inspectRequest(incoming, { maxHeaderCount: x.runtime.deps.config.maxHeaderCount });
    if (!checked.ok) return x.refuse(checked.reason);
    verdict = checked;
  }
  x.hostname = verdict.hostname;
  x.path = verdict.path;
  return undefined;
}
