import { describe, expect, it } from "vitest";
import { BreakerOpenError, type BreakerState, BreakerTimeoutError, CircuitBreaker } from "./index.ts";

const fail = () => Promise.reject(new Error("down"));
const ok = () => Promise.resolve("ok");

function clock(start = 1_000) {
  let t = start;
  return { now: () => t, advance: (ms: number) => (t += ms) };
}

describe("CircuitBreaker", () => {
  it("opens after the threshold of consecutive failures, then fails at once without calling", async () => {
    const c = clock();
    const states: BreakerState[] = [];
    const b = new CircuitBreaker({
      name: "dep",
      failureThreshold: 3,
      openMs: 1_000,
      now: c.now,
      onStateChange: (s) => states.push(s),
    });
    for (let i = 0; i < 2; i++) await expect(b.run(fail)).rejects.toThrow("down");
    expect(b.state).toBe("closed");
    await expect(b.run(fail)).rejects.toThrow("down");
    expect(b.state).toBe("open");
    let called = 0;
    await expect(
      b.run(() => {
        called++;
        return ok();
      }),
    ).rejects.toBeInstanceOf(BreakerOpenError);
    expect(called).toBe(0);
    expect(states).toEqual(["open"]);
    expect(b.opened).toBe(1);
  });

  it("a success in between resets the count: failures must be consecutive", async () => {
    const b = new CircuitBreaker({ name: "dep", failureThreshold: 2 });
    await expect(b.run(fail)).rejects.toThrow();
    await b.run(ok);
    await expect(b.run(fail)).rejects.toThrow();
    expect(b.state).toBe("closed");
  });

  it("without a probe, one call is the half-open trial after openMs: success closes, failure reopens", async () => {
    const c = clock();
    const b = new CircuitBreaker({ name: "dep", failureThreshold: 1, openMs: 500, now: c.now });
    await expect(b.run(fail)).rejects.toThrow();
    c.advance(499);
    await expect(b.run(ok)).rejects.toBeInstanceOf(BreakerOpenError);
    c.advance(1);
    // The trial is in flight: everyone else still fails at once.
    let release: (v: string) => void = () => {};
    const trial = b.run(() => new Promise<string>((r) => (release = r)));
    expect(b.state).toBe("half-open");
    await expect(b.run(ok)).rejects.toBeInstanceOf(BreakerOpenError);
    release("fine");
    await expect(trial).resolves.toBe("fine");
    expect(b.state).toBe("closed");

    await expect(b.run(fail)).rejects.toThrow();
    c.advance(500);
    await expect(b.run(fail)).rejects.toThrow("down");
    expect(b.state).toBe("open");
    await expect(b.run(ok)).rejects.toBeInstanceOf(BreakerOpenError);
  });

  it("with a probe, requests never trial; the probe closes it once the dependency answers", async () => {
    let up = false;
    let probes = 0;
    const b = new CircuitBreaker({
      name: "dep",
      failureThreshold: 1,
      openMs: 50,
      probe: async () => {
        probes++;
        return up;
      },
    });
    await expect(b.run(fail)).rejects.toThrow();
    await new Promise((r) => setTimeout(r, 200));
    expect(probes).toBeGreaterThan(0);
    expect(b.state).toBe("open");
    await expect(b.run(ok)).rejects.toBeInstanceOf(BreakerOpenError);
    up = true;
    const deadline = Date.now() + 5_000;
    while (b.state !== "closed" && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(b.state).toBe("closed");
    await expect(b.run(ok)).resolves.toBe("ok");
    b.close();
  });

  it("counts a call past timeoutMs as a failure and answers it as one", async () => {
    const b = new CircuitBreaker({ name: "dep", failureThreshold: 1, timeoutMs: 30 });
    await expect(b.run(() => new Promise(() => {}))).rejects.toBeInstanceOf(BreakerTimeoutError);
    expect(b.state).toBe("open");
  });

  it("errors that say nothing about health do not count", async () => {
    const b = new CircuitBreaker({ name: "dep", failureThreshold: 1, isFailure: (e) => (e as Error).message !== "not found" });
    await expect(b.run(() => Promise.reject(new Error("not found")))).rejects.toThrow();
    expect(b.state).toBe("closed");
    await expect(b.run(fail)).rejects.toThrow();
    expect(b.state).toBe("open");
  });

  it("a synchronous throw counts and is returned as a rejection", async () => {
    const b = new CircuitBreaker({ name: "dep", failureThreshold: 1 });
    await expect(
      b.run(() => {
        throw new Error("sync");
      }),
    ).rejects.toThrow("sync");
    expect(b.state).toBe("open");
  });
});
