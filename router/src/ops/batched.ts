/**
 * Metrics touched on every request, kept in plain numbers and handed to prom-client
 * only when scraped: a labelled `inc` hashes its label object each time, and a
 * histogram's `observe` builds a closure per call, which is avoidable work on the
 * request path.
 */
import { Counter, Gauge, type Registry } from "prom-client";

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
    this.child(labels).n += by;
  }

  /** The running count of one label set, for a caller that keeps it and adds to `n` itself. */
  child(labels: Record<L, string>): { n: number } {
    let key = "";
    for (const name in labels) key += `${labels[name]}\u0000`;
    let entry = this.#pending.get(key);
    // Label values come from bounded sets, so this table stays small.
    if (entry === undefined) {
      entry = { labels: { ...labels }, n: 0 };
      this.#pending.set(key, entry);
    }
    return entry;
  }
}

/** A gauge whose value is read from its owner when scraped (`source`, set by whoever owns the state). */
export class PolledGauge {
  source: (() => number) | null = null;

  constructor(options: { name: string; help: string; registry: Registry }) {
    const self = this;
    new Gauge({
      name: options.name,
      help: options.help,
      registers: [options.registry],
      collect() {
        this.set(self.source === null ? 0 : self.source());
      },
    });
  }
}

/** A gauge moved on every request, read by prom-client only when scraped. */
export class BatchedGauge extends PolledGauge {
  value = 0;

  constructor(options: { name: string; help: string; registry: Registry }) {
    super(options);
    this.source = () => this.value;
  }

  inc(): void {
    this.value++;
  }

  dec(): void {
    this.value--;
  }
}

/**
 * A histogram without labels, counted in an array and exported as prom-client's
 * `Histogram` would be (cumulative `_bucket` series by `le`, `_sum`, `_count`), through
 * the registry's interface for any metric (`registerMetric`, `get`).
 */
export class BatchedHistogram {
  readonly name: string;
  readonly help: string;
  readonly type = "histogram";
  readonly aggregator = "sum";
  readonly #bounds: readonly number[];
  /** Observations per bucket, the last for those above every bound. */
  readonly #counts: Float64Array;
  #sum = 0;
  #count = 0;

  constructor(options: { name: string; help: string; buckets: readonly number[]; registry: Registry }) {
    this.name = options.name;
    this.help = options.help;
    this.#bounds = [...options.buckets].sort((a, b) => a - b);
    this.#counts = new Float64Array(this.#bounds.length + 1);
    options.registry.registerMetric(this as unknown as Parameters<Registry["registerMetric"]>[0]);
  }

  observe(value: number): void {
    const bounds = this.#bounds;
    let i = 0;
    while (i < bounds.length && value > (bounds[i] as number)) i++;
    const counts = this.#counts;
    counts[i] = (counts[i] as number) + 1;
    this.#sum += value;
    this.#count++;
  }

  async get() {
    const bucket = `${this.name}_bucket`;
    const values: { labels: Record<string, string | number>; value: number; metricName: string }[] = [];
    let acc = 0;
    for (let i = 0; i < this.#bounds.length; i++) {
      acc += this.#counts[i] as number;
      values.push({ labels: { le: this.#bounds[i] as number }, value: acc, metricName: bucket });
    }
    values.push(
      { labels: { le: "+Inf" }, value: this.#count, metricName: bucket },
      { labels: {}, value: this.#sum, metricName: `${this.name}_sum` },
      { labels: {}, value: this.#count, metricName: `${this.name}_count` },
    );
    return { name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator };
  }

  reset(): void {
    this.#counts.fill(0);
    this.#sum = 0;
    this.#count = 0;
  }
}
