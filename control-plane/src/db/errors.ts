/** Recognize unique violations (SQLSTATE 23505) from either driver, through drizzle's wrapper. */
export function uniqueViolation(error: unknown): string | null {
  let e = error as { code?: string; constraint_name?: string; constraint?: string; cause?: unknown } | undefined;
  for (let depth = 0; e && depth < 4; depth++) {
    if (e.code === "23505") return e.constraint_name ?? e.constraint ?? "unique";
    e = e.cause as typeof e;
  }
  return null;
}
