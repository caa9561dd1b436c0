/**
 * A lease on one singleton job of the control plane, kept in Postgres (`job_leases`),
 * so that several control planes on one database run the job exactly once between
 * them, and a survivor takes it over when its holder dies.
 *
 * - One statement acquires or renews: it takes the row when it is free, expired or
 *   already ours, on the database's clock, so the processes' clocks do not matter.
 *   `fence` grows on every change of holder.
 * - The holder renews every `renewMs`; a holder that cannot renew (Postgres away, the
 *   process stalled) stops counting itself the holder at `ttlMs - marginMs` after its
 *   last renewal began, before the row expires for the others.
 * - A holder that stops cleanly expires its row: another process takes over on its
 *   next renewal. A holder that dies leaves the row to expire: taken over within
 *   `ttlMs + renewMs` (8 s with the defaults).
 *
 * Jobs ask `held` before each run. Several control planes are safe without it (every
 * job is idempotent), but would do the work once per process.
 */
import { hostname } from "node:os";
import { randomBytes } from "node:crypto";
import { sql } from "drizzle-orm";
import type { Logger } from "pino";
import { type Db, rows } from "../db/client.ts";

export interface JobLeaseOptions {
  db: Db;
  name: string;
  /** Unique per process by default. */
  holder?: string;
  ttlMs?: number;
  renewMs?: number;
  marginMs?: number;
  log?: Logger;
  /** Called when this process gains or loses the lease. */
  onChange?: (held: boolean) => void;
  /** Monotonic milliseconds. */
  now?: () => number;
}

export class JobLease {
  readonly name: string;
  readonly holder: string;
  readonly #db: Db;
  readonly #ttlMs: number;
  readonly #renewMs: number;
  readonly #marginMs: number;
  readonly #log: Logger | undefined;
  readonly #onChange: (held: boolean) => void;
  readonly #now: () => number;
  #heldUntil = 0;
  #fence = 0;
  #was = false;
  #timer: NodeJS.Timeout | null = null;
  #renewing: Promise<boolean> | null = null;

  constructor(o: JobLeaseOptions) {
    this.name = o.name;
    this.holder = o.holder ?? `${hostname()}-${process.pid}-${randomBytes(3).toString("hex")}`;
    this.#db = o.db;
    this.#ttlMs = o.ttlMs ?? 6_000;
    this.#renewMs = o.renewMs ?? 2_000;
    this.#marginMs = o.marginMs ?? 1_000;
    this.#log = o.log;
    this.#onChange = o.onChange ?? (() => {});
    this.#now = o.now ?? (() => performance.now());
  }

  /** Whether this process holds the lease now. */
  get held(): boolean {
    const held = this.#now() < this.#heldUntil;
    if (!held && this.#was) this.#changed(false);
    return held;
  }

  /** The fence of the current holding (0: never held). */
  get fence(): number {
    return this.#fence;
  }

  start(): void {
    if (this.#timer) return;
    void this.renew();
    this.#timer = setInterval(() => void this.renew(), this.#renewMs);
    this.#timer.unref();
  }

  /** Acquire or renew once; true when held afterwards. Never throws. */
  renew(): Promise<boolean> {
    this.#renewing ??= this.#renew().finally(() => {
      this.#renewing = null;
    });
    return this.#renewing;
  }

  async #renew(): Promise<boolean> {
    const began = this.#now();
    try {
      const [row] = await rows<{ fence: string | number }>(
        this.#db,
        sql`insert into job_leases (name, holder, fence, expires_at)
            values (${this.name}, ${this.holder}, 1, now() + ${`${this.#ttlMs} milliseconds`}::interval)
            on conflict (name) do update set
              holder = excluded.holder,
              fence = case when job_leases.holder = excluded.holder then job_leases.fence else job_leases.fence + 1 end,
              expires_at = excluded.expires_at
            where job_leases.holder = excluded.holder or job_leases.expires_at < now()
            returning fence`,
      );
      if (row === undefined) {
        this.#heldUntil = 0;
        if (this.#was) this.#changed(false);
        return false;
      }
      this.#fence = Number(row.fence);
      this.#heldUntil = began + this.#ttlMs - this.#marginMs;
      if (!this.#was) this.#changed(true);
      return true;
    } catch (error) {
      // Postgres away: the holding lapses on its own at `heldUntil`.
      this.#log?.warn({ err: error, job: this.name }, "job lease not renewed");
      return this.held;
    }
  }

  #changed(held: boolean): void {
    this.#was = held;
    this.#log?.info({ job: this.name, holder: this.holder, fence: this.#fence }, held ? "job lease taken" : "job lease lost");
    this.#onChange(held);
  }

  /** Stop renewing; a held lease is released at once for another process to take. */
  async stop(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
    await this.#renewing?.catch(() => {});
    const wasHeld = this.#now() < this.#heldUntil;
    this.#heldUntil = 0;
    if (this.#was) this.#changed(false);
    if (!wasHeld) return;
    // Expired, not deleted: the fence keeps growing across holders.
    await this.#db
      .execute(
        sql`update job_leases set expires_at = now() - interval '1 millisecond'
            where name = ${this.name} and holder = ${this.holder}`,
      )
      .catch((error: unknown) => this.#log?.warn({ err: error, job: this.name }, "job lease not released"));
  }
}
