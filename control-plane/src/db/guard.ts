/**
 * Postgres as the HTTP edges (admin API, key service) see it: one circuit breaker
 * named "postgres" per process, and a deadline per request. A request that finds
 * Postgres unreachable answers 503 at once (postgres.js fails fast on a refused or
 * lost connection, and within its connect timeout on one that never completes);
 * after a few such failures in a row the breaker opens and every request answers
 * 503 without touching the pool, until a `select 1` probe finds Postgres back. A
 * black-holed Postgres (connections open, nothing answers) has no error to fail
 * with, so the deadline answers for it: 503 after `deadlineMs`, counted as a failure.
 */
import type { Context, MiddlewareHandler } from "hono";
import { sql } from "drizzle-orm";
import { CircuitBreaker, type BreakerState } from "@portcullis/shared";
import type { Db } from "./client.ts";
import { databaseUnavailable } from "./errors.ts";

export type DatabaseRefusal = "database_unavailable" | "deadline_exceeded";

export interface DatabaseGuardOptions {
  db: Db;
  /** Consecutive unavailable answers (or missed deadlines) that open the breaker (default 3). */
  failureThreshold?: number;
  /** How long the breaker stays open before its probe tries Postgres (default 1,000 ms). */
  probeMs?: number;
  /** A probe that takes longer has failed (default 2,000 ms). */
  probeTimeoutMs?: number;
  onStateChange?: (state: BreakerState) => void;
}

/** The "postgres" breaker of a process, probed with `select 1`. */
export function databaseBreaker(options: DatabaseGuardOptions): CircuitBreaker {
  const { db } = options;
  return new CircuitBreaker({
    name: "postgres",
    failureThreshold: options.failureThreshold ?? 3,
    openMs: options.probeMs ?? 1_000,
    timeoutMs: options.probeTimeoutMs ?? 2_000,
    probe: async () => {
      await db.execute(sql`select 1`);
      return true;
    },
    isFailure: databaseUnavailable,
    ...(options.onStateChange ? { onStateChange: (state) => options.onStateChange?.(state) } : {}),
  });
}

/**
 * Middleware: refuse at once while the breaker is open, bound the rest of the chain
 * by `deadlineMs`, and tell the breaker how each request went. `refuse` builds the
 * 503 in the app's own error shape. A request cut by the deadline keeps running
 * in the background (a write may still commit; the 503 says so); its outcome is
 * dropped.
 */
export function guardDatabase(options: {
  breaker: CircuitBreaker;
  deadlineMs: number;
  refuse: (c: Context, code: DatabaseRefusal) => Response;
}): MiddlewareHandler {
  const { breaker, deadlineMs, refuse } = options;
  return async function databaseGuard(c, next) {
    if (!breaker.allow()) return refuse(c, "database_unavailable");
    let timer: NodeJS.Timeout | undefined;
    const work = next().then(() => "done" as const);
    const late = new Promise<"late">((resolve) => {
      timer = setTimeout(() => resolve("late"), deadlineMs);
    });
    const outcome = await Promise.race([work, late]).finally(() => clearTimeout(timer));
    if (outcome === "late") {
      // Still running: whatever it ends with is nobody's to handle now.
      work.catch(() => {});
      breaker.failure();
      return refuse(c, "deadline_exceeded");
    }
    // Errors were answered by the app's onError (which maps these to 503 as well).
    if (c.error !== undefined && databaseUnavailable(c.error)) breaker.failure();
    else breaker.success();
  };
}
