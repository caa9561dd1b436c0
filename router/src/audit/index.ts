/**
 * The audit trail of routing decisions. The request path only appends to a bounded
 * in-memory queue; batches leave it on a timer for the writer — by default the
 * store's durable audit stream (Redis Streams), which the control plane moves into
 * Postgres. When the queue is full, or the stream is at its bound, events are
 * dropped and counted (metric `portcullis_audit_dropped_total`), never silently.
 * While the store is unreachable, batches wait in the queue and are retried.
 */
import { AUDIT_STREAM, type AuditEvent, type StreamStore } from "@portcullis/shared";

export type { AuditEvent } from "@portcullis/shared";

/** Writes a batch; may answer how many of its events it had to refuse (counted as dropped). */
// biome-ignore lint/suspicious/noConfusingVoidType: writers that answer nothing (Promise<void>) stay valid.
export type AuditWriter = (batch: AuditEvent[]) => Promise<void | number>;

export interface AuditSink {
  record(event: AuditEvent): void;
  flush(): Promise<void>;
  close(): Promise<void>;
  readonly depth: number;
  readonly dropped: number;
}

export interface BatchingOptions {
  writer: AuditWriter;
  maxQueue?: number;
  batchSize?: number;
  intervalMs?: number;
  onError?: (error: unknown) => void;
}

export class BatchingAuditSink implements AuditSink {
  readonly #o: Required<Omit<BatchingOptions, "onError">> & Pick<BatchingOptions, "onError">;
  #queue: AuditEvent[] = [];
  #dropped = 0;
  #flushing: Promise<void> | null = null;
  readonly #timer: NodeJS.Timeout;

  constructor(options: BatchingOptions) {
    this.#o = { maxQueue: 100_000, batchSize: 1_000, intervalMs: 100, ...options };
    this.#timer = setInterval(() => void this.flush(), this.#o.intervalMs);
    this.#timer.unref();
  }

  get depth(): number {
    return this.#queue.length;
  }

  get dropped(): number {
    return this.#dropped;
  }

  record(event: AuditEvent): void {
    if (this.#queue.length >= this.#o.maxQueue) {
      this.#dropped++;
      return;
    }
    this.#queue.push(event);
  }

  flush(): Promise<void> {
    if (this.#flushing) return this.#flushing;
    if (this.#queue.length === 0) return Promise.resolve();
    this.#flushing = (async () => {
      try {
        while (this.#queue.length > 0) {
          const batch = this.#queue.slice(0, this.#o.batchSize);
          try {
            const refused = await this.#o.writer(batch);
            if (typeof refused === "number" && refused > 0) this.#dropped += refused;
          } catch (error) {
            // Kept in the queue (bounded) and tried again on the next tick.
            this.#o.onError?.(error);
            return;
          }
          this.#queue = this.#queue.slice(batch.length);
        }
      } finally {
        this.#flushing = null;
      }
    })();
    return this.#flushing;
  }

  async close(): Promise<void> {
    clearInterval(this.#timer);
    await this.flush();
  }
}

/** Keeps the latest events in memory (tests, the embedded stack's log). */
export function memoryWriter(limit = 50_000) {
  const events: AuditEvent[] = [];
  const writer: AuditWriter = async (batch) => {
    events.push(...batch);
    if (events.length > limit) events.splice(0, events.length - limit);
  };
  return { events, writer };
}

/**
 * The durable writer: one round trip per batch into the store's audit stream.
 * Events beyond the stream's bound are refused by the store and counted here.
 */
export function storeWriter(store: StreamStore, options: { maxLen?: number; stream?: string } = {}): AuditWriter {
  const stream = options.stream ?? AUDIT_STREAM.key;
  const maxLen = options.maxLen ?? AUDIT_STREAM.defaultMaxLen;
  return async (batch) => {
    const payloads = new Array<string>(batch.length);
    for (let i = 0; i < batch.length; i++) payloads[i] = JSON.stringify(batch[i]);
    const appended = await store.streamAppend(stream, payloads, maxLen);
    return batch.length - appended;
  };
}
