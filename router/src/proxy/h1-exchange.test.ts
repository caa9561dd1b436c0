/**
 * A finished exchange lets go of its request: an exchange that reached the old
 * generation would otherwise keep the response, the request and the pipeline's
 * callbacks of every request alive through each young collection until a full one.
 */
import { IncomingMessage, ServerResponse } from "node:http";
import { Socket } from "node:net";
import { describe, expect, it } from "vitest";
import type { ConnOwner } from "./h1-connection.ts";
import { Exchange } from "./h1-exchange.ts";
import type { ForwardRequest, ForwardResult } from "./index.ts";

function exchange(done: (r: ForwardResult) => void) {
  const req = new IncomingMessage(new Socket());
  const res = new ServerResponse(req);
  const f: ForwardRequest = {
    origins: ["http://127.0.0.1:1"],
    start: 0,
    method: "POST",
    path: "/",
    headers: ["x-a", "1"],
    body: req,
    maxBodyBytes: null,
    responseHeaders: {},
  };
  const owner = { clientGone: () => {} } as unknown as ConnOwner;
  const ex = new Exchange(owner, res, f, () => {}, done, "POST / HTTP/1.1\r\n\r\n", 0, performance.now());
  res.on("close", ex.onClose);
  return { ex, res };
}

describe("Exchange", () => {
  it("reports once, then holds no reference to the response, the request, its body or the callbacks", () => {
    const results: ForwardResult[] = [];
    const { ex, res } = exchange((r) => results.push(r));
    ex.bytesOut = 100;
    ex.upstream = "http://127.0.0.1:1";
    ex.finish(200, null);
    expect(results).toEqual([
      expect.objectContaining({ status: 200, failure: null, bytesOut: 100, upstream: "http://127.0.0.1:1" }),
    ]);
    expect(ex.ended).toBe(true);
    for (const field of ["res", "f", "refuse", "done", "onClose", "body", "onDrain"] as const) expect(ex[field]).toBeNull();
    expect(ex.head).toBe("");
    // Its listener left the response with it.
    expect(res.listenerCount("close")).toBe(0);
    // A second end is ignored (no second report, no error on the released fields).
    ex.finish(502, "upstream_unavailable");
    expect(results).toHaveLength(1);
  });
});
