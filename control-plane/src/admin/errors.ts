import type { Context } from "hono";
import { ADMIN_ERRORS, type AdminErrorCode } from "@portcullis/shared";

/** The admin API's error body (docs/errors.md), with an optional `detail` for the operator. */
export function adminError(c: Context, code: AdminErrorCode, detail?: string) {
  const e = ADMIN_ERRORS[code];
  const requestId = c.get("requestId" as never) ?? "";
  return c.json({ error: { code, message: e.message, requestId, ...(detail ? { detail } : {}) } }, e.status as 400);
}

/** The error body as a value, for answers that add fields beside it (apply's conflicts). */
export function errorBody(c: Context, code: AdminErrorCode, detail?: string) {
  const e = ADMIN_ERRORS[code];
  const requestId = c.get("requestId" as never) ?? "";
  return { error: { code, message: e.message, requestId, ...(detail ? { detail } : {}) } };
}
