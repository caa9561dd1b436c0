import fc from "fast-check";
import { Histogram, Registry } from "prom-client";
import { describe, expect, it } from "vitest";
import { BatchedHistogram, createRouterMetrics } from "./metrics.ts";

describe("batched request metrics", () => {
  it("shows every increment made before a scrape, per label set, and nothing twice", async () => {
    const m = createRouterMetrics();
    m.decisions.inc({ decision: "allow", reason: "allowed" });
    m.decisions.inc({ decision: "allow", reason: "allowed" });
    m.decisions.inc({ decision: "refuse", reason: "unknown_host" });
    m.cacheLookups.inc({ cache: "host", tier: "store" });
    m.inFlight.inc();
    m.inFlight.inc();
    m.inFlight.dec();
    let text = await m.registry.metrics();
    expect(text).toContain('portcullis_decisions_total{decision="allow",reason="allowed"} 2');
    expect(text).toContain('portcullis_decisions_total{decision="refuse",reason="unknown_host"} 1');
    expect(text).toContain('portcullis_cache_lookups_total{cache="host",tier="store"} 1');
    expect(text).toContain("portcullis_requests_in_flight 1");

    m.decisions.inc({ decision: "allow", reason: "allowed" });
    m.inFlight.dec();
    text = await m.registry.metrics();
    expect(text).toContain('portcullis_decisions_total{decision="allow",reason="allowed"} 3');
    expect(text).toContain('portcullis_decisions_total{decision="refuse",reason="unknown_host"} 1');
    expect(text).toContain("portcullis_requests_in_flight 0");
  });
});

describe("the batched histogram", () => {
  it("exports what prom-client's Histogram does for the same observations, default labels included", async () => {
    const buckets = [0.0001, 0.00025, 0.001, 0.01, 0.25];
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.oneof(fc.constantFrom(0, ...buckets, 0.3, 7), fc.double({ min: 0, max: 1, noNaN: true })), {
          maxLength: 200,
        }),
        async (values) => {
          const ours = new Registry();
          const theirs = new Registry();
          for (const r of [ours, theirs]) r.setDefaultLabels({ instance: "r1" });
          const batched = new BatchedHistogram({ name: "t_seconds", help: "h", buckets, registry: ours });
          const reference = new Histogram({ name: "t_seconds", help: "h", buckets, registers: [theirs] });
          for (const v of values) {
            batched.observe(v);
            reference.observe(v);
          }
          expect(await ours.metrics()).toBe(await theirs.metrics());
        },
      ),
      { numRuns: 200 },
    );
  });
});
