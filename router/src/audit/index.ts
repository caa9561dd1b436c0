/**
 * The audit trail of routing decisions. The request path only appends to a bounded
 * in-memory queue; batches leave it on a timer. When the queue is full, events are
 * dropped and counted (metric `portcullis_audit_dropped_total`), never silently.
 */
export interface AuditEvent {
  time: string;
  requestId: string;
  decision: "allow" | "refuse";
  reason: string;
  tenantId: string | null;
  host: string;
  method: string;
  path: string;
  credential: "none" | "hostname" | "api-key" | "session";
  keyId?: string;
  userId?: string;
  clientIp: string;
  status: number;
}

export type AuditWriter = (batch: AuditEvent[]) => Promise<void>;

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
            await this.#o.writer(batch);
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
