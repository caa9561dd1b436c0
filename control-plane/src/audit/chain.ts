/**
 * The tamper-evident form of the audit trail. Each row of a stream (chain) carries
 * `hash = sha256(prev_hash || canonical(row))`, where `prev_hash` is the hash of the
 * row before it (`seq - 1`) and the first row's is GENESIS. The canonical form is a
 * JSON array in a fixed field order that includes the chain name and position, so
 * editing any field (an aggregate's count too), deleting or reordering rows breaks the chain from that point.
 */
import { createHash } from "node:crypto";

export const GENESIS = "0".repeat(64);

export interface ChainRow {
  stream: string;
  seq: number;
  time: Date;
  requestId: string;
  decision: string;
  reason: string;
  tenantId: string | null;
  host: string;
  method: string;
  path: string;
  credential: string;
  keyId: string | null;
  userId: string | null;
  clientIp: string;
  status: number;
  /** How many refusals an aggregate row stands for; 1 for a single decision. */
  count: number;
}

export function canonical(row: ChainRow): string {
  const fields: unknown[] = [
    row.stream,
    row.seq,
    row.time.toISOString(),
    row.requestId,
    row.decision,
    row.reason,
    row.tenantId,
    row.host,
    row.method,
    row.path,
    row.credential,
    row.keyId,
    row.userId,
    row.clientIp,
    row.status,
  ];
  // A single decision's form is unchanged since before aggregates existed, so rows
  // written then still verify; an aggregate's count is part of what is chained.
  if (row.count !== 1) fields.push(row.count);
  return JSON.stringify(fields);
}

export function chainHash(prevHash: string, row: ChainRow): string {
  return createHash("sha256").update(prevHash).update(canonical(row)).digest("hex");
}
