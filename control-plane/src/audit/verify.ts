/**
 * Checks the hash chain of audit events (chain.ts) over a range and names the first
 * broken link: a row whose content no longer matches its hash (edited), a row whose
 * `prev_hash` is not the hash of the row before it (edited, reordered or replaced),
 * or a gap in `seq` (deleted). The range is chosen by event time but walked by
 * position, so rows in between are never skipped. Rows removed from the very end of
 * a chain leave no trace in the chain itself.
 */
import { and, asc, eq, gt, gte, lte, max, min } from "drizzle-orm";
import type { Db } from "../db/client.ts";
import { auditEvents } from "../db/schema/index.ts";
import { chainHash, GENESIS } from "./chain.ts";

export type ChainVerdict =
  | { ok: true; stream: string; checked: number; from: number | null; to: number | null }
  | {
      ok: false;
      stream: string;
      checked: number;
      seq: number;
      code: "hash_mismatch" | "prev_hash_mismatch" | "rows_missing";
      detail: string;
      requestId?: string;
    };

const PAGE = 5_000;

export async function verifyChain(db: Db, options: { stream: string; since?: Date; until?: Date }): Promise<ChainVerdict> {
  const { stream } = options;
  const lower = options.since
    ? and(eq(auditEvents.stream, stream), gte(auditEvents.time, options.since))
    : eq(auditEvents.stream, stream);
  const upper = options.until
    ? and(eq(auditEvents.stream, stream), lte(auditEvents.time, options.until))
    : eq(auditEvents.stream, stream);
  const [lo] = await db
    .select({ v: min(auditEvents.seq) })
    .from(auditEvents)
    .where(lower);
  const [hi] = await db
    .select({ v: max(auditEvents.seq) })
    .from(auditEvents)
    .where(upper);
  const from = lo?.v === null || lo?.v === undefined ? null : Number(lo.v);
  const to = hi?.v === null || hi?.v === undefined ? null : Number(hi.v);
  if (from === null || to === null || from > to) return { ok: true, stream, checked: 0, from: null, to: null };

  // The link into the range: GENESIS at the start of the chain, else the row before.
  let expectedSeq = from;
  let expectedPrev = GENESIS;
  if (options.since === undefined) expectedSeq = 1;
  else if (from > 1) {
    const [anchor] = await db
      .select({ hash: auditEvents.hash })
      .from(auditEvents)
      .where(and(eq(auditEvents.stream, stream), eq(auditEvents.seq, from - 1)));
    if (!anchor) {
      return {
        ok: false,
        stream,
        checked: 0,
        seq: from - 1,
        code: "rows_missing",
        detail: `row ${from - 1} (before the range) is missing`,
      };
    }
    expectedPrev = anchor.hash;
  }

  let checked = 0;
  let after = expectedSeq - 1;
  for (;;) {
    const rows = await db
      .select()
      .from(auditEvents)
      .where(and(eq(auditEvents.stream, stream), gt(auditEvents.seq, after), lte(auditEvents.seq, to)))
      .orderBy(asc(auditEvents.seq))
      .limit(PAGE);
    if (rows.length === 0) break;
    for (const row of rows) {
      if (row.seq !== expectedSeq) {
        const detail =
          row.seq - expectedSeq === 1 ? `row ${expectedSeq} is missing` : `rows ${expectedSeq}..${row.seq - 1} are missing`;
        return { ok: false, stream, checked, seq: expectedSeq, code: "rows_missing", detail };
      }
      if (row.prevHash !== expectedPrev) {
        return {
          ok: false,
          stream,
          checked,
          seq: row.seq,
          code: "prev_hash_mismatch",
          detail: `row ${row.seq} does not link to row ${row.seq - 1}`,
          requestId: row.requestId,
        };
      }
      const hash = chainHash(row.prevHash, {
        stream: row.stream,
        seq: row.seq,
        time: row.time,
        requestId: row.requestId,
        decision: row.decision,
        reason: row.reason,
        tenantId: row.tenantId,
        host: row.host,
        method: row.method,
        path: row.path,
        credential: row.credential,
        keyId: row.keyId,
        userId: row.userId,
        clientIp: row.clientIp,
        status: row.status,
        count: row.count,
      });
      if (hash !== row.hash) {
        return {
          ok: false,
          stream,
          checked,
          seq: row.seq,
          code: "hash_mismatch",
          detail: `row ${row.seq} does not match its hash (altered)`,
          requestId: row.requestId,
        };
      }
      expectedPrev = row.hash;
      expectedSeq++;
      checked++;
      after = row.seq;
    }
  }
  if (expectedSeq <= to) {
    return {
      ok: false,
      stream,
      checked,
      seq: expectedSeq,
      code: "rows_missing",
      detail: `rows ${expectedSeq}..${to} are missing`,
    };
  }
  return { ok: true, stream, checked, from: options.since === undefined ? 1 : from, to };
}

/** Every chain name present in the table. */
export async function chainNames(db: Db): Promise<string[]> {
  const rows = await db.selectDistinct({ stream: auditEvents.stream }).from(auditEvents).orderBy(asc(auditEvents.stream));
  return rows.map((r) => r.stream);
}
