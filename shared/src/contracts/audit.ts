/**
 * The audit event: one per routing decision, written by routers into the durable
 * audit stream and read by the control plane into Postgres. The schema is the
 * boundary between the two (a malformed entry is counted and skipped, never
 * written). Never holds an API key, a session token or a query string.
 */
import { z } from "zod";

export const AuditEvent = z.object({
  // An ISO 8601 time; checked with Date.parse (a regex here costs more than the rest of the schema).
  time: z
    .string()
    .max(40)
    .refine((t) => !Number.isNaN(Date.parse(t)), "must be an ISO 8601 time"),
  requestId: z.string().min(1).max(200),
  decision: z.enum(["allow", "refuse"]),
  reason: z.string().min(1).max(100),
  tenantId: z.string().max(200).nullable(),
  host: z.string().max(2000),
  method: z.string().max(100),
  path: z.string().max(16_384),
  credential: z.enum(["none", "hostname", "api-key", "session"]),
  keyId: z.string().max(200).optional(),
  userId: z.string().max(200).optional(),
  clientIp: z.string().max(100),
  status: z.number().int().min(0).max(999),
  // An aggregate of refusals (a flood): how many refusals this one event stands for.
  // Absent for a single decision.
  count: z.number().int().min(2).max(2_147_483_647).optional(),
});
export type AuditEvent = z.infer<typeof AuditEvent>;
