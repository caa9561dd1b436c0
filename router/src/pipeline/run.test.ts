import { describe, expect, it } from "vitest";
import type { Exchange } from "./exchange.ts";
import { type Outcome, run, type Stage } from "./run.ts";

// The runner never looks into the exchange: a stand-in object is enough.
const x = {} as Exchange;
const answer = (text: string) => new Response(text);

describe("the request path's runner", () => {
  it("runs every stage in order, synchronously while none waits", () => {
    const seen: string[] = [];
    const stages: Stage[] = [
      () => {
        seen.push("a");
        return undefined;
      },
      () => {
        seen.push("b");
        return undefined;
      },
      () => {
        seen.push("c");
        return answer("done");
      },
    ];
    const reply = run(stages, x);
    expect(reply).toBeInstanceOf(Response);
    expect(seen).toEqual(["a", "b", "c"]);
  });

  it("stops at the first answer: no later stage runs", async () => {
    const seen: string[] = [];
    const stages: Stage[] = [
      () => Promise.resolve<Outcome>(undefined),
      () => {
        seen.push("refuses");
        return answer("refused");
      },
      () => {
        seen.push("forwards");
        return answer("forwarded");
      },
    ];
    const reply = await run(stages, x);
    expect(await reply.text()).toBe("refused");
    expect(seen).toEqual(["refuses"]);
  });

  it("goes on after a stage that waited, and stops at an answer given after a wait", async () => {
    const seen: string[] = [];
    const stages: Stage[] = [
      async () => {
        seen.push("resolve");
        return undefined;
      },
      () => {
        seen.push("decide");
        return undefined;
      },
      async () => {
        seen.push("limits");
        return answer("429");
      },
      () => {
        seen.push("forward");
        return answer("forwarded");
      },
    ];
    const reply = run(stages, x);
    expect(reply).toBeInstanceOf(Promise);
    expect(await (await reply).text()).toBe("429");
    expect(seen).toEqual(["resolve", "decide", "limits"]);
  });

  it("fails closed when no stage answers", () => {
    expect(() => run([() => undefined], x)).toThrow(/without an answer/);
  });

  it("passes a stage's failure after a wait on to the caller", async () => {
    const stages: Stage[] = [() => Promise.reject(new Error("store down")), () => answer("forwarded")];
    await expect(run(stages, x)).rejects.toThrow("store down");
  });
});
