/**
 * The console's live decisions: one poller per process reads the audit trail's new
 * rows (`audit_events`, filled from the routers' audit stream by the consumer,
 * audit/consumer.ts) and fans them out to the open event streams, each of which
 * keeps those matching its filters. Polling the table rather than reading the store's
 * stream works whichever control plane consumes the stream, on Postgres and PGlite
 * alike; the poller runs only while someone watches.
 *
 * Best effort, by design: rows are read by id, and a row whose id was taken before a
 * later one but committed after it was read is not shown live (it is in the trail).
 */
import { asc, gt, sql } from "drizzle-orm";
import type { Logger } from "pino";
import type { Db } from "../db/client.ts";
import { type AuditEventView, auditEventView } from "../audit/routes.ts";
import { auditEvents } from "../db/schema/index.ts";

/** A decision as the live view sends it: the API's view of the event, and its row id. */
export type LiveEvent = AuditEventView & { id: number };

type Listener = (events: LiveEvent[]) => void;

export class LiveFeed {
  readonly #db: Db;
  readonly #log: Logger;
  readonly #intervalMs: number;
  readonly #listeners = new Set<Listener>();
  #last: number | null = null;
  #timer: NodeJS.Timeout | null = null;
  /** The start in progress or done (reading where the trail ends), shared by every subscriber. */
  #started: Promise<void> | null = null;
  /** Bumped by close(): a start that finishes after a close does not start a timer. */
  #generation = 0;
  #polling = false;

  constructor(deps: { db: Db; log: Logger; intervalMs?: number }) {
    this.#db = deps.db;
    this.#log = deps.log;
    this.#intervalMs = deps.intervalMs ?? 500;
  }

  /**
   * Events stored from now on, in batches; returns the unsubscribe function. The
   * listener is registered before the first await, so subscribers arriving together
   * share one start and one timer.
   */
  async subscribe(listener: Listener): Promise<() => void> {
    this.#listeners.add(listener);
    const started = (this.#started ??= this.#start(this.#generation));
    let subscribed = true;
    const unsubscribe = () => {
      if (!subscribed) return;
      subscribed = false;
      this.#listeners.delete(listener);
      if (this.#listeners.size === 0) this.close();
    };
    try {
      await started;
    } catch (error) {
      if (this.#started === started) this.#started = null;
      unsubscribe();
      throw error;
    }
    return unsubscribe;
  }

  /** How many listeners are subscribed (open event streams). */
  get listeners(): number {
    return this.#listeners.size;
  }

  close(): void {
    this.#generation++;
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
    this.#started = null;
    this.#last = null;
    this.#listeners.clear();
  }

  async #start(generation: number): Promise<void> {
    // Start after what is already stored: the live view shows what happens next.
    const [row] = await this.#db.select({ max: sql<string | null>`max(${auditEvents.id})` }).from(auditEvents);
    if (generation !== this.#generation) return;
    this.#last = Number(row?.max ?? 0);
    this.#timer = setInterval(() => void this.#poll(), this.#intervalMs);
    this.#timer.unref();
  }

  async #poll(): Promise<void> {
    if (this.#polling || this.#last === null) return;
    this.#polling = true;
    try {
      const rows = await this.#db
        .select()
        .from(auditEvents)
        .where(gt(auditEvents.id, this.#last))
        .orderBy(asc(auditEvents.id))
        .limit(500);
      if (rows.length === 0) return;
      this.#last = rows.at(-1)?.id ?? this.#last;
      const events = rows.map((r) => ({ id: r.id, ...auditEventView(r) }));
      for (const listener of this.#listeners) listener(events);
    } catch (error) {
      this.#log.warn({ err: error }, "console live feed: reading the audit trail failed; retrying");
    } finally {
      this.#polling = false;
    }
  }
}
