/**
 * What a change of Redis master can take away, counted. Replication is asynchronous:
 * writes the old master acknowledged but had not yet passed on are not on the replica
 * promoted in its place. The store counts the writes it made, by kind, and every
 * `everyMs` writes the totals to a ledger hash of its own, on the same connection,
 * after the writes they cover. Redis replicates one connection's writes in order, so a
 * replica that holds a ledger entry holds every write made before it.
 *
 * When the store finds itself on another Redis server than before (its `run_id`
 * differs: a promoted replica, or a restart), it reads its ledger there: what it had
 * written by the time the old connection closed, past the totals the new master holds
 * (or past what a WAIT confirmed replicated, whichever is more), may be lost. That
 * is an upper bound: it includes writes made in the last `everyMs` before the change
 * that did reach the replica. A restart with no persistence loses the ledger too; the
 * bound is then everything written since the previous change.
 *
 * One connection, in order: not for a cluster, whose writes spread over masters.
 */
import type { Redis } from "ioredis";

/** Granted requests (rate buckets, quota counters), usage units, stream entries, configuration records. */
export const LEDGER_KINDS = ["admits", "counters", "stream", "records"] as const;
export type LedgerKind = (typeof LEDGER_KINDS)[number];
export type LedgerTotals = Record<LedgerKind, number>;

/** A change of master seen by one store: writes it made that the new master may lack, at most. */
export interface MasterChange {
  atRisk: LedgerTotals;
  /** Whether the new master held this store's ledger (false: a restart without persistence, or no replication yet). */
  ledgerFound: boolean;
}

const zero = (): LedgerTotals => ({ admits: 0, counters: 0, stream: 0, records: 0 });

/** The ledger hash lives an hour past its last write: a process gone for longer needs none. */
const LEDGER_TTL_MS = 3_600_000;

export class WriteLedger {
  readonly #client: Redis;
  readonly #key: string;
  readonly #call: <T>(fn: () => Promise<T>) => Promise<T>;
  readonly #timer: NodeJS.Timeout;
  readonly #listeners = new Set<(change: MasterChange) => void>();
  /** Writes acknowledged by a master, since this store started. */
  readonly #totals = zero();
  /** Totals in the last ledger write the master acknowledged. */
  #sent = zero();
  /** Totals a WAIT found replicated. */
  #confirmed = zero();
  /** Totals when the connection last closed: nothing resolves between a close and the next ready. */
  #atClose = zero();
  #runId: string | null = null;
  /** When the ledger was last written: rewritten unchanged before its expiry comes near. */
  #writtenAt = 0;
  /** A (re)connection not yet compared with the server before it: no ledger write until it is. */
  #checkPending = false;
  #busy = false;

  constructor(options: { client: Redis; key: string; call: <T>(fn: () => Promise<T>) => Promise<T>; everyMs?: number }) {
    this.#client = options.client;
    this.#key = options.key;
    this.#call = options.call;
    this.#client.on("close", () => {
      this.#atClose = { ...this.#totals };
    });
    this.#client.on("ready", () => {
      this.#checkPending = true;
      void this.#tick();
    });
    if (this.#client.status === "ready") this.#checkPending = true;
    this.#timer = setInterval(() => void this.#tick(), options.everyMs ?? 250);
    this.#timer.unref();
  }

  add(kind: LedgerKind, n: number): void {
    if (n > 0) this.#totals[kind] += n;
  }

  /** The totals as of now, for `confirmed` once a WAIT sent after them succeeds. */
  snapshot(): LedgerTotals {
    return { ...this.#totals };
  }

  /** Everything in `upTo` is on a replica (a WAIT sent after it succeeded). */
  confirmed(upTo: LedgerTotals): void {
    for (const k of LEDGER_KINDS) this.#confirmed[k] = Math.max(this.#confirmed[k], upTo[k]);
  }

  onMasterChange(listener: (change: MasterChange) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  close(): void {
    clearInterval(this.#timer);
  }

  async #tick(): Promise<void> {
    if (this.#busy || this.#client.status !== "ready") return;
    this.#busy = true;
    try {
      if (this.#checkPending) await this.#compare();
      else await this.#write();
    } catch {
      // Redis failed meanwhile: the breaker and the next tick deal with it.
    } finally {
      this.#busy = false;
    }
  }

  /** After a (re)connection: the same server as before, or another one? */
  async #compare(): Promise<void> {
    const info = await this.#call(() => this.#client.info("server"));
    const runId = /^run_id:(\w+)/m.exec(info)?.[1] ?? null;
    if (runId === null) throw new Error("INFO server without run_id");
    const before = this.#runId;
    if (before !== null && before !== runId) {
      const remote = await this.#call(() => this.#client.hgetall(this.#key));
      const held = zero();
      for (const k of LEDGER_KINDS) held[k] = Number(remote[k] ?? 0) || 0;
      const atRisk = zero();
      for (const k of LEDGER_KINDS) atRisk[k] = Math.max(0, this.#atClose[k] - Math.max(held[k], this.#confirmed[k]));
      // The new master's ledger is rewritten from here: the next change counts from it.
      this.#sent = held;
      const change: MasterChange = { atRisk, ledgerFound: Object.keys(remote).length > 0 };
      for (const listener of this.#listeners) {
        try {
          listener(change);
        } catch {
          // A listener's failure is its own.
        }
      }
    }
    this.#runId = runId;
    this.#checkPending = false;
  }

  async #write(): Promise<void> {
    const totals = { ...this.#totals };
    const now = performance.now();
    if (LEDGER_KINDS.every((k) => totals[k] === this.#sent[k]) && now - this.#writtenAt < LEDGER_TTL_MS / 4) return;
    await this.#call(() =>
      this.#client
        .multi()
        .hset(this.#key, totals)
        .pexpire(this.#key, LEDGER_TTL_MS)
        .exec()
        .then((replies) => {
          const failed = replies?.find(([error]) => error !== null);
          if (replies === null || failed) throw failed?.[0] ?? new Error("ledger write discarded");
        }),
    );
    this.#sent = totals;
    this.#writtenAt = now;
  }
}
