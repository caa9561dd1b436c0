/**
 * decide: the one fail-closed decision from every outcome (`policy/`). Refused, the
 * exchange ends here; allowed, the decision names the tenant and how it was reached.
 */
import { decide as policy } from "@portcullis/shared";
import type { Exchange } from "./exchange.ts";
import type { Outcome } from "./run.ts";

export function decide(x: Exchange): Outcome {
  return x.decide(
    policy({
      host: x.host,
      key: x.key,
      session: x.session,
      credentialError: x.extracted.kind === "error" ? x.extracted.code : null,
      keyMisplaced: x.extracted.kind === "misplaced",
      clientIp: x.clientIp,
    }),
  );
}
