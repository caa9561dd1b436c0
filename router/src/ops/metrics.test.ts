import { describe, expect, it } from "vitest";
import { createRouterMetrics } from "./metrics.ts";

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
