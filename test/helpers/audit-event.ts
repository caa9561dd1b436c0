/** An audit event as a router writes one for an unknown host: for tests that feed the audit stream directly. */
import type { AuditEvent } from "@portcullis/shared";

export function unknownHostEvent(requestId: string): AuditEvent {
  return {
    time: new Date().toISOString(),
    requestId,
    decision: "refuse",
    reason: "unknown_host",
    tenantId: null,
    host: "nobody.localhost",
    method: "GET",
    path: "/",
    credential: "none",
    clientIp: "127.0.0.1",
    status: 404,
  };
}
