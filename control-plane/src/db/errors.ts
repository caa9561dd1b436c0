/** What a database error means to the caller: a unique violation, or "Postgres is unavailable". */

/** Recognize unique violations (SQLSTATE 23505) from either driver, through drizzle's wrapper. */
export function uniqueViolation(error: unknown): string | null {
  let e = error as { code?: string; constraint_name?: string; constraint?: string; cause?: unknown } | undefined;
  for (let depth = 0; e && depth < 4; depth++) {
    if (e.code === "23505") return e.constraint_name ?? e.constraint ?? "unique";
    e = e.cause as typeof e;
  }
  return null;
}

// Socket errors (Node), postgres.js's own connection errors, and the breaker's.
const UNREACHABLE = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ETIMEDOUT",
  "EPIPE",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ENOTFOUND",
  "EAI_AGAIN",
  "CONNECT_TIMEOUT",
  "CONNECTION_CLOSED",
  "CONNECTION_ENDED",
  "CONNECTION_DESTROYED",
  "breaker_open",
  "breaker_timeout",
]);

/**
 * True when the error says Postgres cannot be reached or cannot serve now (as
 * opposed to a query it refused): unreachable, connection lost or timed out, or one
 * of the SQLSTATEs of a server that is starting, stopping or full (class 08
 * connection exception, 57P01-57P03 shutdown and start-up, 53300 too many connections).
 * Walks drizzle's wrapper (`cause`).
 */
export function databaseUnavailable(error: unknown): boolean {
  let e = error as { code?: unknown; cause?: unknown } | undefined;
  for (let depth = 0; e && depth < 4; depth++) {
    const code = typeof e.code === "string" ? e.code : "";
    if (UNREACHABLE.has(code) || code.startsWith("08") || /^57P0[123]$/.test(code) || code === "53300") return true;
    e = e.cause as typeof e;
  }
  return false;
}
