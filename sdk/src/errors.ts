/**
 * Every error code the SDK answers or throws, in one registry (documented in the
 * package README; a test fails when one is missing there).
 *
 * A refused request gets 401 and the contract's body
 * `{"error":{"code","message","requestId"}}`: the code says which check failed
 * (missing, malformed, unknown key version, bad signature, stale, incomplete context)
 * and nothing more; the message is the same for all of them, so a refusal never
 * says which field or byte did not match.
 */
export const CONTEXT_REFUSALS = {
  missing_signature: "No x-tenant-signature header: the request did not come through the router.",
  malformed_signature: "The x-tenant-signature header is not in the router's format.",
  unknown_key: "No context key of this app has the signature's key version (a rotation not yet handed to the app?).",
  bad_signature: "The signature does not match this request with this app's keys.",
  stale_signature: "The signature's timestamp is outside the replay window (clock skew, or a replayed request).",
  malformed_context: "The signature verifies, but a context field the router always sets is missing or malformed.",
} as const;
export type ContextRefusal = keyof typeof CONTEXT_REFUSALS;

/** The one public message of every refusal. */
export const REFUSAL_MESSAGE = "The tenant context is missing or not valid.";
export const REFUSAL_STATUS = 401;

/** Why a job's envelope was refused (the job does not run and is not retried). */
export const JOB_REFUSALS = {
  missing_envelope: "The job carries no tenant envelope.",
  malformed_envelope: "The envelope is not in the SDK's format.",
  unknown_key: "No job key of this app has the envelope's key version.",
  bad_signature: "The envelope's signature does not match its tenant, payload and times (forged or altered).",
  expired_envelope: "The envelope's expiry has passed.",
} as const;
export type JobRefusal = keyof typeof JOB_REFUSALS;

/** Programmer errors, thrown. */
export const USAGE_ERRORS = {
  unverified_tenant: "withTenant, tenantDatabases and enqueueForTenant take only a tenant this SDK verified.",
  invalid_identifier: "An SQL identifier (table, column, role, policy) is empty or too long.",
  no_signing_key: "No key to sign job envelopes with: pass a pctx_ key, or signingVersion with a key function.",
  registry_closed: "The tenantDatabases registry was closed.",
} as const;
export type UsageError = keyof typeof USAGE_ERRORS;

export class PortcullisSdkError extends Error {
  readonly code: UsageError;
  constructor(code: UsageError, detail?: string) {
    super(detail ? `${USAGE_ERRORS[code]} (${detail})` : USAGE_ERRORS[code]);
    this.name = "PortcullisSdkError";
    this.code = code;
  }
}

/** `requestId` is echoed only when it looks like one: it is not verified on a refusal. */
const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** The refusal body. */
export function refusalBody(code: ContextRefusal, requestId: string | undefined): string {
  const error: { code: string; message: string; requestId?: string } = { code, message: REFUSAL_MESSAGE };
  if (requestId !== undefined && REQUEST_ID.test(requestId)) error.requestId = requestId;
  return JSON.stringify({ error });
}

export const REFUSAL_HEADERS = { "content-type": "application/json", "cache-control": "no-store" } as const;
