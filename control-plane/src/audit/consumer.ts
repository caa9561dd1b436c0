/**
 * Moves audit events from the durable stream (Redis Streams, or the in-process
 * store) into Postgres. One consumer group; each control plane is one consumer.
 * An entry is acknowledged (and deleted from the stream) only after the transaction
 * that stored it committed, so a Postgres outage leaves events in the stream until
 * it ends. Writes are idempotent by request id: an entry delivered twice (a commit
 * whose answer was lost, a router retrying an append) is stored once. Within the
 * transaction an advisory lock serialises writers of one chain, so the hash chain
 * (chain.ts) has no forks even with several control planes.
 */
import { hostname } from "node:os";
import { randomBytes } from "node:crypto";
import { desc, eq, sql } from "drizzle-orm";
import { AUDIT_STREAM, AuditEvent, type StreamEntry, type StreamStore } from "@portcullis/shared";
import type { Logger } from "pino";
import { type Db, rows } from "../db/client.ts";
import { auditEvents } from "../db/schema/index.ts";
import { type ChainRow, chainHash, GENESIS } from "./chain.ts";

export interface AuditConsumerMetrics {
  written(n: number): void;
  /** The chain's last position after a commit: watched from outside, a truncated tail shows as a drop. */
  head?(seq: number): void;
  invalid(n: number): void;
  failed(): void;
}

export interface AuditConsumerDeps {
  db: Db;
  store: StreamStore;
  log: Logger;
  metrics?: AuditConsumerMetrics;
  /** Name within the consumer group; unique per process by default. */
  consumer?: string;
  batchSize?: number;
  blockMs?: number;
  /** Entries another consumer left unacknowledged this long are taken over. */
  claimIdleMs?: number;
}

const INSERT_CHUNK = 5_000;

export class AuditConsumer {
  readonly #d: Required<Omit<AuditConsumerDeps, "metrics">> & Pick<AuditConsumerDeps, "metrics">;
  #running: Promise<void> | null = null;
  #stopped = false;
  #wake: (() => void) | null = null;

  constructor(deps: AuditConsumerDeps) {
    this.#d = {
      consumer: `${hostname()}-${process.pid}-${randomBytes(3).toString("hex")}`,
      batchSize: 1_000,
      blockMs: 1_000,
      // A control plane that died mid-batch: its entries move to a survivor within 10 s.
      claimIdleMs: 5_000,
      ...deps,
    };
  }

  start(): void {
    if (this.#running) return;
    this.#stopped = false;
    this.#running = this.#loop();
  }

  /**
   * Stop after the batch in hand. Bounded: a batch stuck on a black-holed Postgres is
   * left behind unacknowledged (its entries stay pending in the stream, and the next
   * consumer run or another control plane stores them), so shutdown never hangs on it.
   */
  async stop(timeoutMs = 5_000): Promise<void> {
    this.#stopped = true;
    this.#wake?.();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.#running, new Promise((resolve) => (timer = setTimeout(resolve, timeoutMs)))]);
    clearTimeout(timer);
    this.#running = null;
  }

  async #sleep(ms: number): Promise<void> {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.#wake = done;
    });
    this.#wake = null;
  }

  async #loop(): Promise<void> {
    const { store, log, batchSize } = this.#d;
    const key = AUDIT_STREAM.key;
    const group = AUDIT_STREAM.group;
    // Start with our own unacknowledged entries (a previous run of this consumer).
    let pending = true;
    let failures = 0;
    let lastClaim = 0;
    let lastWarning = 0;
    while (!this.#stopped) {
      try {
        let entries: StreamEntry[] = [];
        if (pending) {
          entries = await store.streamRead(key, {
            group,
            consumer: this.#d.consumer,
            count: batchSize,
            blockMs: 0,
            pending: true,
          });
          if (entries.length === 0) pending = false;
        } else {
          if (Date.now() - lastClaim >= this.#d.claimIdleMs) {
            lastClaim = Date.now();
            entries = await store.streamClaim(key, group, this.#d.consumer, this.#d.claimIdleMs, batchSize);
          }
          if (entries.length === 0) {
            entries = await store.streamRead(key, {
              group,
              consumer: this.#d.consumer,
              count: batchSize,
              blockMs: this.#d.blockMs,
              pending: false,
            });
          }
        }
        if (entries.length === 0) continue;
        await this.write(entries);
        await store.streamAck(
          key,
          group,
          entries.map((e) => e.id),
        );
        if (failures > 0) log.info({ after: failures }, "audit writes resumed");
        failures = 0;
      } catch (error) {
        // Postgres or the store is unreachable: the entries stay pending in the
        // stream and are re-read from the start of this consumer's pending list.
        pending = true;
        failures++;
        this.#d.metrics?.failed();
        if (failures === 1 || Date.now() - lastWarning > 30_000) {
          lastWarning = Date.now();
          log.warn({ err: error, failures }, "audit write failed; events stay in the stream and will be retried");
        }
        if (!this.#stopped) await this.#sleep(Math.min(50 * 2 ** Math.min(failures, 6), 2_000));
      }
    }
  }

  /** Store one batch of stream entries in one transaction (exported for tests and tools). */
  async write(entries: StreamEntry[]): Promise<number> {
    const events: AuditEvent[] = [];
    let invalid = 0;
    for (const entry of entries) {
      let parsed: ReturnType<typeof AuditEvent.safeParse> | null = null;
      try {
        parsed = AuditEvent.safeParse(JSON.parse(entry.data));
      } catch {
        parsed = null;
      }
      if (parsed?.success) events.push(parsed.data);
      else invalid++;
    }
    if (invalid > 0) {
      // Not retryable: counted and logged, then acknowledged with the rest.
      this.#d.metrics?.invalid(invalid);
      this.#d.log.error({ invalid }, "malformed audit entries skipped");
    }
    if (events.length === 0) return 0;
    const chain = AUDIT_STREAM.chain;
    const written = await this.#d.db.transaction(async (tx) => {
      await tx.execute(sql`select pg_advisory_xact_lock(hashtext(${`portcullis.audit.${chain}`}))`);
      const [head] = await tx
        .select({ seq: auditEvents.seq, hash: auditEvents.hash })
        .from(auditEvents)
        .where(eq(auditEvents.stream, chain))
        .orderBy(desc(auditEvents.seq))
        .limit(1);
      // Idempotence: request ids already stored (a redelivered entry) are skipped.
      // Arrays travel as one JSON parameter: far cheaper than thousands of bind parameters.
      const ids = JSON.stringify([...new Set(events.map((e) => e.requestId))]);
      const seen = new Set(
        (
          await rows<{ request_id: string }>(
            tx,
            sql`select request_id from audit_events where request_id in (select jsonb_array_elements_text(${ids}::jsonb))`,
          )
        ).map((r) => r.request_id),
      );
      let seq = head?.seq ?? 0;
      let prev = head?.hash ?? GENESIS;
      const out: (ChainRow & { prevHash: string; hash: string })[] = [];
      for (const e of events) {
        if (seen.has(e.requestId)) continue;
        seen.add(e.requestId);
        seq++;
        const row: ChainRow = {
          stream: chain,
          seq,
          time: new Date(e.time),
          requestId: e.requestId,
          decision: e.decision,
          reason: e.reason,
          tenantId: e.tenantId,
          host: e.host,
          method: e.method,
          path: e.path,
          credential: e.credential,
          keyId: e.keyId ?? null,
          userId: e.userId ?? null,
          clientIp: e.clientIp,
          status: e.status,
          count: e.count ?? 1,
        };
        const hash = chainHash(prev, row);
        out.push({ ...row, prevHash: prev, hash });
        prev = hash;
      }
      for (let i = 0; i < out.length; i += INSERT_CHUNK) {
        const chunk = JSON.stringify(
          out.slice(i, i + INSERT_CHUNK).map((r) => ({
            stream: r.stream,
            seq: r.seq,
            time: r.time.toISOString(),
            request_id: r.requestId,
            decision: r.decision,
            reason: r.reason,
            tenant_id: r.tenantId,
            host: r.host,
            method: r.method,
            path: r.path,
            credential: r.credential,
            key_id: r.keyId,
            user_id: r.userId,
            client_ip: r.clientIp,
            status: r.status,
            count: r.count,
            prev_hash: r.prevHash,
            hash: r.hash,
          })),
        );
        await tx.execute(sql`
          insert into audit_events (stream, seq, time, request_id, decision, reason, tenant_id, host, method, path,
                                    credential, key_id, user_id, client_ip, status, count, prev_hash, hash)
          select stream, seq, time, request_id, decision, reason, tenant_id, host, method, path,
                 credential, key_id, user_id, client_ip, status, count, prev_hash, hash
          from jsonb_to_recordset(${chunk}::jsonb) as r(stream text, seq bigint, time timestamptz, request_id text,
               decision text, reason text, tenant_id text, host text, method text, path text, credential text,
               key_id text, user_id text, client_ip text, status integer, count integer, prev_hash text, hash text)`);
      }
      return { count: out.length, head: seq };
    });
    // Reported only once committed.
    this.#d.metrics?.written(written.count);
    this.#d.metrics?.head?.(written.head);
    return written.count;
  }
}
