/**
 * The audit trail of routing decisions. The request path only appends to bounded
 * in-memory queues; batches leave them on a timer for the writer — by default the
 * store's durable audit stream (Redis Streams), which the control plane moves into
 * Postgres. While the store is unreachable, batches wait in their queue and are
 * retried.
 *
 * Allows and refusals never share capacity. Refusals are unauthenticated and cheap
 * to send, so a flood of them must not leave later allows unaudited:
 *
 * - allows have their own queue (`maxQueue`) and the whole stream bound; they are
 *   written first on every flush;
 * - refusals have a queue of their own (`refusalQueueMax`) and may fill the stream
 *   only up to `refusalStreamMaxLen` (half of it by default), so a backlog of
 *   refusals leaves room for allows;
 * - when the refusal queue is full (a flood, or a long outage), further refusals are
 *   folded into one aggregate event per client address, reason and tenant, with a
 *   `count`; past `aggregateMax` sources, into one per reason and tenant with client
 *   address `*`. An aggregate carries the time, host, method, path and status of the
 *   first refusal it folds in, and a request id of its own (`agg-<uuid>`). Every
 *   refusal is still counted exactly (the decisions metric and `aggregated`), and
 *   the trail's counts add up to what was refused.
 *
 * What cannot be kept is dropped and counted by decision (`portcullis_audit_dropped_total`),
 * never silently. Under `failMode: "closed"` an allow is never dropped: the request
 * path reserves room for its event before forwarding (`reserveAllow`), and events
 * the stream refuses stay queued until it takes them, so that when the queue is full
 * new allows are refused (503 `audit_unavailable`) instead of going unaudited.
 */
import { randomUUID } from "node:crypto";
import { AUDIT_STREAM, type AuditEvent, type StreamStore } from "@portcullis/shared";

export type { AuditEvent } from "@portcullis/shared";

export type AuditKind = "allow" | "refuse";

/**
 * Writes a batch of one kind; may answer how many of its events it had to refuse
 * (the last ones of the batch), which are dropped and counted, or kept for another
 * try under the closed fail mode.
 */
// biome-ignore lint/suspicious/noConfusingVoidType: writers that answer nothing (Promise<void>) stay valid.
export type AuditWriter = (batch: AuditEvent[], kind: AuditKind) => Promise<void | number>;

export type AuditFailMode = "open" | "closed";

export interface AuditSink {
  record(event: AuditEvent, reserved?: boolean): void;
  /** Closed fail mode: room for one allow's event, or false (refuse the request). */
  reserveAllow(): boolean;
  readonly failMode: AuditFailMode;
  flush(): Promise<void>;
  close(): Promise<void>;
  readonly depth: number;
  readonly dropped: number;
  readonly droppedByKind: Readonly<Record<AuditKind, number>>;
  /** Refusals folded into aggregate events so far. */
  readonly aggregated: number;
}

export interface BatchingOptions {
  writer: AuditWriter;
  maxQueue?: number;
  refusalQueueMax?: number;
  aggregateMax?: number;
  /**
   * Events per store write (default 250). Building and sending a batch holds the event
   * loop about 0.35 ms per 100 events, and a flush awaits each write before the next,
   * so 250 keeps every slice near 1 ms whatever the rate (1,000 held it 3–4 ms).
   */
  batchSize?: number;
  intervalMs?: number;
  failMode?: AuditFailMode;
  onError?: (error: unknown) => void;
}

interface Aggregate {
  event: AuditEvent;
  count: number;
}

export class BatchingAuditSink implements AuditSink {
  readonly #o: Required<Omit<BatchingOptions, "onError">> & Pick<BatchingOptions, "onError">;
  #allows: AuditEvent[] = [];
  #refusals: AuditEvent[] = [];
  #aggregates = new Map<string, Aggregate>();
  #reserved = 0;
  #aggregated = 0;
  readonly #dropped: Record<AuditKind, number> = { allow: 0, refuse: 0 };
  #flushing: Promise<void> | null = null;
  readonly #timer: NodeJS.Timeout;

  constructor(options: BatchingOptions) {
    this.#o = {
      maxQueue: 100_000,
      refusalQueueMax: 10_000,
      aggregateMax: 10_000,
      batchSize: 250,
      intervalMs: 100,
      failMode: "open",
      ...options,
    };
    this.#timer = setInterval(() => void this.flush(), this.#o.intervalMs);
    this.#timer.unref();
  }

  get failMode(): AuditFailMode {
    return this.#o.failMode;
  }

  /** Events waiting in memory (aggregates count once each). */
  get depth(): number {
    return this.#allows.length + this.#refusals.length + this.#aggregates.size;
  }

  get dropped(): number {
    return this.#dropped.allow + this.#dropped.refuse;
  }

  get droppedByKind(): Readonly<Record<AuditKind, number>> {
    return this.#dropped;
  }

  get aggregated(): number {
    return this.#aggregated;
  }

  reserveAllow(): boolean {
    if (this.#allows.length + this.#reserved >= this.#o.maxQueue) return false;
    this.#reserved++;
    return true;
  }

  record(event: AuditEvent, reserved = false): void {
    if (reserved) this.#reserved--;
    if (event.decision === "allow") {
      // A reserved event always has room: the reservation held it.
      if (!reserved && this.#allows.length + this.#reserved >= this.#o.maxQueue) {
        this.#dropped.allow++;
        return;
      }
      this.#allows.push(event);
      return;
    }
    if (this.#refusals.length < this.#o.refusalQueueMax) {
      this.#refusals.push(event);
      return;
    }
    this.#aggregate(event);
  }

  #aggregate(event: AuditEvent): void {
    this.#aggregated++;
    const tenant = event.tenantId ?? "";
    let key = `${event.clientIp}\n${event.reason}\n${tenant}`;
    let found = this.#aggregates.get(key);
    if (found === undefined && this.#aggregates.size >= this.#o.aggregateMax) {
      // Too many sources to tell apart: one per reason and tenant.
      key = `*\n${event.reason}\n${tenant}`;
      found = this.#aggregates.get(key);
      if (found === undefined) event = { ...event, clientIp: "*" };
    }
    if (found !== undefined) {
      found.count++;
      return;
    }
    this.#aggregates.set(key, {
      count: 1,
      event: {
        time: event.time,
        requestId: `agg-${randomUUID()}`,
        decision: "refuse",
        reason: event.reason,
        tenantId: event.tenantId,
        host: event.host,
        method: event.method,
        path: event.path,
        credential: event.credential,
        clientIp: event.clientIp,
        status: event.status,
      },
    });
  }

  flush(): Promise<void> {
    if (this.#flushing) return this.#flushing;
    if (this.depth === 0) return Promise.resolve();
    this.#flushing = (async () => {
      try {
        await this.#drain();
      } finally {
        this.#flushing = null;
      }
    })();
    return this.#flushing;
  }

  /**
   * One flush: at most the events queued when it began, so a steady trickle of one
   * kind never holds the other back. Allow and refusal batches alternate, allows
   * first. A kind stops for this flush when the stream is at its bound for it; the
   * whole flush stops when the writer fails (tried again on the next tick).
   */
  async #drain(): Promise<void> {
    const budget: Record<AuditKind, number> = { allow: this.#allows.length, refuse: this.#refusals.length };
    let moved = false;
    let refusalsFull = false;
    for (;;) {
      let wrote = false;
      for (const kind of ["allow", "refuse"] as const) {
        if (budget[kind] <= 0) continue;
        const step = await this.#writeBatch(kind, budget[kind]);
        if (step === "failed") return;
        if (step === "full") {
          budget[kind] = 0;
          if (kind === "refuse") refusalsFull = true;
        } else if (step === 0) {
          budget[kind] = 0;
        } else {
          budget[kind] -= step;
          wrote = true;
        }
      }
      if (wrote) continue;
      // Aggregates go out only once the refusals queued before them have, and never
      // while the stream is full of refusals or away: meanwhile they keep counting,
      // one event per source however long the flood, and the refusal queue stays
      // bounded (its own bound plus the aggregates).
      if (moved || refusalsFull || this.#aggregates.size === 0) return;
      for (const a of this.#aggregates.values()) {
        this.#refusals.push(a.count === 1 ? a.event : { ...a.event, count: a.count });
      }
      this.#aggregates.clear();
      budget.refuse = this.#refusals.length;
      moved = true;
    }
  }

  /** Writes one batch of a kind: how many left the queue (0: none queued), or why none could. */
  async #writeBatch(kind: AuditKind, limit: number): Promise<number | "full" | "failed"> {
    const queue = kind === "allow" ? this.#allows : this.#refusals;
    if (queue.length === 0) return 0;
    const batch = queue.slice(0, Math.min(this.#o.batchSize, limit));
    let refused = 0;
    try {
      const answer = await this.#o.writer(batch, kind);
      if (typeof answer === "number" && answer > 0) refused = Math.min(answer, batch.length);
    } catch (error) {
      // Kept in the queue (bounded) and tried again on the next tick.
      this.#o.onError?.(error);
      return "failed";
    }
    if (refused > 0 && kind === "allow" && this.#o.failMode === "closed") {
      // Never dropped: the refused tail stays at the head of the queue, and the
      // queue filling up refuses new allows instead.
      this.#take(kind, batch.length - refused);
      return "full";
    }
    // Dropped counts decisions: an aggregate stands for `count` of them.
    for (let i = batch.length - refused; i < batch.length; i++) this.#dropped[kind] += batch[i]?.count ?? 1;
    this.#take(kind, batch.length);
    return refused > 0 ? "full" : batch.length;
  }

  #take(kind: AuditKind, n: number): void {
    if (kind === "allow") this.#allows = this.#allows.slice(n);
    else this.#refusals = this.#refusals.slice(n);
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
 * Allows may fill the stream to `maxLen`; refusals only to `refusalMaxLen` (half of
 * it unless told), so a backlog of refusals always leaves room for allows. Events
 * beyond the bound are refused by the store and reported to the sink.
 */
export function storeWriter(
  store: StreamStore,
  options: { maxLen?: number; refusalMaxLen?: number; stream?: string } = {},
): AuditWriter {
  const stream = options.stream ?? AUDIT_STREAM.key;
  const maxLen = options.maxLen ?? AUDIT_STREAM.defaultMaxLen;
  const refusalMaxLen = Math.min(maxLen, options.refusalMaxLen ?? Math.floor(maxLen / 2));
  return async (batch, kind) => {
    const payloads = new Array<string>(batch.length);
    for (let i = 0; i < batch.length; i++) payloads[i] = JSON.stringify(batch[i]);
    const appended = await store.streamAppend(stream, payloads, kind === "refuse" ? refusalMaxLen : maxLen);
    return batch.length - appended;
  };
}
