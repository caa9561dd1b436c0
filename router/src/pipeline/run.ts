/**
 * The runner: the stages in order, each given the exchange. A stage answers
 * `undefined` to let the next one go on, or the response that ends the exchange (a
 * refusal, the router's own answer, or the forwarded response under way) — at once
 * when what it needs is in memory, or as a promise when it must wait. Sync-or-promise
 * is handled here once: a warm request goes through every stage without an await.
 */
import type { Exchange } from "./exchange.ts";

export type Outcome = Response | undefined;
export type Stage = (x: Exchange) => Outcome | Promise<Outcome>;

export function run(stages: readonly Stage[], x: Exchange, from = 0): Response | Promise<Response> {
  for (let i = from; i < stages.length; i++) {
    const out = (stages[i] as Stage)(x);
    if (out instanceof Promise) return out.then((o) => (o === undefined ? run(stages, x, i + 1) : o));
    if (out !== undefined) return out;
  }
  // The last stage always answers; a path that ends without one fails closed.
  throw new Error("request path ended without an answer");
}
