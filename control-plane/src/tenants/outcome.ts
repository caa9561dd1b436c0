/**
 * The value every tenant operation returns: its result, or an admin error code (and
 * an optional detail) for an expected refusal. Nothing here throws for those.
 */
import type { AdminErrorCode } from "@portcullis/shared";

export type Outcome<T> = { ok: true; value: T } | { ok: false; code: AdminErrorCode; detail?: string };
export const ok = <T>(value: T): Outcome<T> => ({ ok: true, value });
export const fail = <T>(code: AdminErrorCode, detail?: string): Outcome<T> => ({ ok: false, code, detail });
