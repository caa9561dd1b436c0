/**
 * Writing refusals: the JSON body of docs/errors.md, built from the shared registry with
 * no allocation beyond the string itself and no stack trace.
 */
import type { ServerResponse } from "node:http";
import { REFUSALS, type RefusalReason, refusalBody } from "@portcullis/shared";

export function refusalHeaders(reason: RefusalReason, requestId: string): Record<string, string> {
  const headers: Record<string, string> = {
    "content-type": "application/json",
    "cache-control": "no-store",
    "x-request-id": requestId,
  };
  if (reason === "key_missing" || REFUSALS[reason].code === "invalid_api_key") headers["www-authenticate"] = 'Bearer realm="api"';
  return headers;
}

/** Write a refusal straight onto a Node response (outside Hono: guard, proxy). */
export function writeRefusal(res: ServerResponse, reason: RefusalReason, requestId: string, close = false): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = refusalBody(reason, requestId);
  const headers = refusalHeaders(reason, requestId);
  headers["content-length"] = String(Buffer.byteLength(body));
  if (close) headers.connection = "close";
  res.writeHead(REFUSALS[reason].status, headers);
  res.end(body);
}
