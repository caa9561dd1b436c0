import { describe, expect, it } from "vitest";
import { type FailureKind, type HealthOptions, UpstreamHealth } from "./health.ts";

const A = "http://127.0.0.1:1";
const B = "http://127.0.0.1:2";
const C = "http://127.0.0.1:3";

function setup(o: Partial<HealthOptions> = {}) {
  const clock = { now: 1_000_000 };
  const ejections: FailureKind[] = [];
  let panics = 0;
  const health = new UpstreamHealth({
    consecutiveFailures: 3,
    baseEjectionMs: 5_000,
    maxEjectionMs: 30_000,
    probeWindowMs: 1_000,
    now: () => clock.now,
    onEject: (kind) => ejections.push(kind),
    onPanic: () => panics++,
    ...o,
  });
  return { health, clock, ejections, panics: () => panics };
}

/** The origin a first try of a request would use. */
function first(health: UpstreamHealth, origins: string[], start = 0): string {
  const p = health.pick(origins, start, 0);
  return origins[(start + p) % origins.length] as string;
}

describe("passive health (outlier ejection)", () => {
  it("tracks nothing while origins only succeed, and walks the rotation in order", () => {
    const { health } = setup();
    for (let i = 0; i < 10; i++) health.status(A, 200);
    expect(health.tracked).toBe(0);
    expect(health.pick([A, B, C], 1, 0)).toBe(0);
    expect(health.pick([A, B, C], 1, 2)).toBe(2);
    expect(health.pick([A, B, C], 1, 3)).toBe(-1);
  });

  it("ejects after N failures in a row; a success in between resets the count", () => {
    const { health, ejections } = setup();
    health.failure(A, "connect_error");
    health.failure(A, "connect_error");
    health.status(A, 404);
    health.status(A, 503);
    health.failure(A, "timeout");
    expect(health.isEjected(A)).toBe(false);
    health.status(A, 500);
    expect(health.isEjected(A)).toBe(true);
    expect(ejections).toEqual(["status_5xx"]);
    // Skipped while ejected.
    expect(first(health, [A, B])).toBe(B);
    expect(health.pick([A, B], 0, 0)).toBe(1);
    expect(health.ejected()).toBe(1);
  });

  it("lets one probe through when the ejection ends; its success re-admits", () => {
    const { health, clock } = setup();
    for (let i = 0; i < 3; i++) health.failure(A, "connect_error");
    clock.now += 5_000;
    expect(first(health, [A, B])).toBe(A); // the probe
    expect(first(health, [A, B])).toBe(B); // others skip it meanwhile
    health.status(A, 200);
    expect(first(health, [A, B])).toBe(A);
    expect(first(health, [A, B])).toBe(A);
    expect(health.ejected()).toBe(0);
  });

  it("a probe that is never answered frees the next probe after the probe window", () => {
    const { health, clock } = setup();
    for (let i = 0; i < 3; i++) health.failure(A, "connect_error");
    clock.now += 5_000;
    expect(first(health, [A, B])).toBe(A);
    clock.now += 999;
    expect(first(health, [A, B])).toBe(B);
    clock.now += 1;
    expect(first(health, [A, B])).toBe(A);
  });

  it("a failed probe ejects again at once, for longer, up to the cap", () => {
    const { health, clock, ejections } = setup();
    for (let i = 0; i < 3; i++) health.failure(A, "connect_error");
    const out: number[] = [];
    for (let round = 0; round < 8; round++) {
      // Find when it comes back: the ejection time of this round.
      const from = clock.now;
      while (first(health, [A, B]) !== A) clock.now += 500;
      out.push(clock.now - from);
      health.failure(A, "connect_error"); // the probe fails
    }
    expect(out).toEqual([5_000, 10_000, 15_000, 20_000, 25_000, 30_000, 30_000, 30_000]);
    expect(ejections.length).toBe(9);
  });

  it("forgets the back-off once an origin stayed in for the cap", () => {
    const { health, clock } = setup();
    for (let round = 0; round < 3; round++) {
      for (let i = 0; i < 3; i++) health.failure(A, "reset");
      clock.now += 30_000;
      first(health, [A]);
      health.status(A, 200);
    }
    clock.now += 30_000;
    for (let i = 0; i < 3; i++) health.failure(A, "reset");
    clock.now += 5_000;
    expect(first(health, [A, B])).toBe(A);
  });

  it("with every origin ejected, sends the first try to the one whose ejection ends soonest, and no retry", () => {
    const { health, clock, panics } = setup();
    for (let i = 0; i < 3; i++) health.failure(B, "connect_error");
    clock.now += 1_000;
    for (let i = 0; i < 3; i++) health.failure(A, "connect_error");
    expect(first(health, [A, B])).toBe(B);
    expect(first(health, [A, B], 1)).toBe(B);
    expect(panics()).toBe(2);
    // A retry (from > 0) never goes to an ejected origin.
    expect(health.pick([A, B], 0, 1)).toBe(-1);
    // A failure of a panic request does not extend the ejection.
    health.failure(B, "connect_error");
    clock.now += 4_000;
    expect(first(health, [A, B])).toBe(B);
  });

  it("a success while ejected does not cut the ejection short", () => {
    const { health } = setup();
    for (let i = 0; i < 3; i++) health.status(A, 502);
    health.status(A, 200);
    expect(health.isEjected(A)).toBe(true);
  });

  it("consecutiveFailures 0 turns ejection off", () => {
    const { health } = setup({ consecutiveFailures: 0 });
    for (let i = 0; i < 10; i++) health.failure(A, "connect_error");
    expect(health.tracked).toBe(0);
    expect(first(health, [A, B])).toBe(A);
  });

  it("stays bounded: quiet entries are dropped, and the table never exceeds its size", () => {
    const { health, clock } = setup({ maxTracked: 100 });
    for (let i = 0; i < 1_000; i++) health.failure(`http://10.0.${i >> 8}.${i & 255}:80`, "connect_error");
    expect(health.tracked).toBeLessThanOrEqual(100);
    for (let i = 0; i < 3; i++) health.failure(A, "connect_error");
    clock.now += 30_000;
    expect(health.ejected()).toBe(1); // A: ejection over, not yet probed
    clock.now += 5_000;
    expect(health.ejected()).toBe(0);
    expect(health.tracked).toBe(0);
  });
});
