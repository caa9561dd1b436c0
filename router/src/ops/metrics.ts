/**
 * Router metrics (Prometheus, prom-client). Label values are bounded sets only.
 *
 * Counters and the in-flight gauge touched on every request are kept in plain numbers
 * and handed to prom-client when scraped (its `collect` hook): a labelled `inc` hashes
 * its label object each time, which is avoidable work on the request path.
 */
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";

/** A labelled counter whose increments are summed locally and added to prom-client on scrape. */
export class BatchedCounter<L extends string> {
  readonly #pending = new Map<string, { labels: Record<L, string>; n: number }>();
  readonly counter: Counter<L>;

  constructor(options: { name: string; help: string; labelNames: readonly L[]; registry: Registry }) {
    const pending = this.#pending;
    this.counter = new Counter<L>({
      name: options.name,
      help: options.help,
      labelNames: options.labelNames,
      registers: [options.registry],
      collect() {
        for (const entry of pending.values()) {
          if (entry.n > 0) this.inc(entry.labels, entry.n);
          entry.n = 0;
        }
      },
    });
  }

  inc(labels: Record<L, string>, by = 1): void {
    let key = "";
    for (const name in labels) key += `${labels[name]}\u0000`;
    const entry = this.#pending.get(key);
    if (entry !== undefined) entry.n += by;
    // Label values come from bounded sets, so this table stays small.
    else this.#pending.set(key, { labels: { ...labels }, n: by });
  }
}

/** A gauge moved on every request, read by prom-client only when scraped. */
export class BatchedGauge {
  value = 0;

  constructor(options: { name: string; help: string; registry: Registry }) {
    const self = this;
    new Gauge({
      name: options.name,
      help: options.help,
      registers: [options.registry],
      collect() {
        this.set(self.value);
      },
    });
  }

  inc(): void {
    this.value++;
  }

  dec(): void {
    this.value--;
  }
}

export function createRouterMetrics() {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: "portcullis_router_" });
  const decisions = new BatchedCounter({
    name: "portcullis_decisions_total",
    help: "Routing decisions by outcome and reason.",
    labelNames: ["decision", "reason"] as const,
    registry,
  });
  const added = new Histogram({
    name: "portcullis_router_added_seconds",
    help: "Time the router adds to a request (decision and forwarding overhead).",
    buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25],
    registers: [registry],
  });
  const upstream = new Histogram({
    name: "portcullis_upstream_seconds",
    help: "Upstream response time, from dispatch to the end of the response.",
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10],
    registers: [registry],
  });
  const cacheLookups = new BatchedCounter({
    name: "portcullis_cache_lookups_total",
    help: "Cache lookups by cache and tier that answered (memory, store, origin, stale, unavailable).",
    labelNames: ["cache", "tier"] as const,
    registry,
  });
  const upstreamErrors = new Counter({
    name: "portcullis_upstream_errors_total",
    help: "Upstream failures answered by the router.",
    labelNames: ["reason"] as const,
    registers: [registry],
  });
  const auditDepth = new Gauge({
    name: "portcullis_audit_queue_depth",
    help: "Audit events waiting to be written.",
    registers: [registry],
  });
  const auditDropped = new Gauge({
    name: "portcullis_audit_dropped_total",
    help: "Audit events dropped because the queue was full.",
    registers: [registry],
  });
  const inFlight = new BatchedGauge({ name: "portcullis_requests_in_flight", help: "Requests being handled.", registry });
  return { registry, decisions, added, upstream, cacheLookups, upstreamErrors, auditDepth, auditDropped, inFlight };
}

export type RouterMetrics = ReturnType<typeof createRouterMetrics>;
