/**
 * The error registry: every refusal the product can answer with. `reason` is the
 * stable code written to the audit trail; `code`, `status` and `message` are what
 * the client sees. Several reasons share one public answer on purpose: every
 * invalid-key case is the same 401, byte for byte, so a client cannot tell an
 * unknown key from a revoked one or from another tenant's. Documented in
 * docs/errors.md (a test fails when a reason is missing there).
 */
export const REFUSALS = {
  // Malformed or ambiguous requests (contract rule 8).
  malformed_request: { status: 400, code: "malformed_request", message: "The request is malformed." },
  duplicate_host: { status: 400, code: "malformed_request", message: "The request is malformed." },
  missing_host: { status: 400, code: "malformed_request", message: "The request is malformed." },
  invalid_host: { status: 400, code: "malformed_request", message: "The request is malformed." },
  absolute_form_mismatch: { status: 400, code: "malformed_request", message: "The request is malformed." },
  invalid_target: { status: 400, code: "malformed_request", message: "The request is malformed." },
  conflicting_framing: { status: 400, code: "malformed_request", message: "The request is malformed." },
  invalid_header: { status: 400, code: "malformed_request", message: "The request is malformed." },
  method_not_allowed: { status: 405, code: "method_not_allowed", message: "The method is not allowed." },
  upgrade_not_supported: { status: 501, code: "upgrade_not_supported", message: "Protocol upgrades are not supported." },
  ambiguous_credentials: { status: 400, code: "ambiguous_credentials", message: "Present one credential." },
  key_in_query: { status: 400, code: "key_in_query", message: "API keys are not accepted in the URL." },
  // A valid key of the right tenant, but outside `Authorization: Bearer` and `X-API-Key`
  // (another scheme, another header, a cookie, Basic credentials): never forwarded, and
  // not taken either (SECURITY.md, guarantee 2). Only a holder of a valid key sees it.
  misplaced_key: {
    status: 400,
    code: "misplaced_key",
    message: "Send the API key in Authorization: Bearer or X-API-Key, and nowhere else.",
  },
  // An Expect other than 100-continue (RFC 9110 §10.1.1).
  expectation_failed: { status: 417, code: "expectation_failed", message: "The expectation cannot be met." },
  request_timeout: { status: 408, code: "request_timeout", message: "The request did not arrive in time." },
  headers_too_large: { status: 431, code: "headers_too_large", message: "Request headers are too large." },
  body_too_large: { status: 413, code: "body_too_large", message: "The request body is too large." },
  // Host resolution (rule 1).
  unknown_host: { status: 404, code: "unknown_host", message: "No tenant is served at this host." },
  // API keys (rules 2, 3): one public answer for every case.
  key_missing: { status: 401, code: "invalid_api_key", message: "A valid API key is required." },
  key_malformed: { status: 401, code: "invalid_api_key", message: "A valid API key is required." },
  key_unknown: { status: 401, code: "invalid_api_key", message: "A valid API key is required." },
  key_expired: { status: 401, code: "invalid_api_key", message: "A valid API key is required." },
  key_revoked: { status: 401, code: "invalid_api_key", message: "A valid API key is required." },
  key_other_tenant: { status: 401, code: "invalid_api_key", message: "A valid API key is required." },
  api_access_disabled: { status: 403, code: "api_access_disabled", message: "API access is not enabled for this tenant." },
  // Sessions (rule 4).
  session_invalid: { status: 401, code: "invalid_session", message: "The session is not valid." },
  session_other_tenant: { status: 401, code: "invalid_session", message: "The session is not valid." },
  // Tenant state (rules 5, 6).
  tenant_suspended: { status: 403, code: "tenant_suspended", message: "This tenant is suspended." },
  ip_not_allowed: { status: 403, code: "ip_not_allowed", message: "Access from this address is not allowed." },
  rate_limited: { status: 429, code: "rate_limited", message: "Too many requests." },
  quota_exceeded: { status: 429, code: "quota_exceeded", message: "The monthly request quota is used up." },
  concurrency_limited: { status: 429, code: "concurrency_limited", message: "Too many requests in flight." },
  binding_missing: { status: 503, code: "tenant_unavailable", message: "The tenant is not available." },
  binding_mismatch: { status: 503, code: "tenant_unavailable", message: "The tenant is not available." },
  no_upstream: { status: 503, code: "tenant_unavailable", message: "The tenant is not available." },
  // Resolution unavailable (rule 7).
  resolution_unavailable: { status: 503, code: "resolution_unavailable", message: "The request cannot be routed right now." },
  // AUDIT_FAIL_MODE=closed: an allow whose audit event cannot be kept is not forwarded.
  audit_unavailable: { status: 503, code: "audit_unavailable", message: "The request cannot be recorded right now." },
  // Upstream failures.
  upstream_unavailable: { status: 502, code: "upstream_unavailable", message: "The upstream is not reachable." },
  upstream_timeout: { status: 504, code: "upstream_timeout", message: "The upstream did not answer in time." },
  // Not a tenant route (public listener paths reserved for nothing).
  draining: { status: 503, code: "draining", message: "The server is shutting down." },
} as const;

export type RefusalReason = keyof typeof REFUSALS;
export type AllowReason = "host" | "api_key" | "session";

export interface ErrorBody {
  error: { code: string; message: string; requestId: string };
}

export function refusalBody(reason: RefusalReason, requestId: string): string {
  const r = REFUSALS[reason];
  // Hand-built: the message table is ours and holds no characters needing escapes.
  return `{"error":{"code":"${r.code}","message":"${r.message}","requestId":"${requestId}"}}`;
}

/** Control-plane (admin API) errors: same body shape. */
export const ADMIN_ERRORS = {
  unauthorized: { status: 401, message: "A valid admin token is required." },
  not_found: { status: 404, message: "Not found." },
  validation_failed: { status: 400, message: "The request body is not valid." },
  invalid_json: { status: 400, message: "The request body is not valid JSON." },
  slug_taken: { status: 409, message: "The slug is taken." },
  slug_reserved: { status: 422, message: "The slug is reserved for the platform." },
  hostname_taken: { status: 409, message: "The hostname belongs to a tenant already." },
  hostname_invalid: { status: 422, message: "The hostname is not valid." },
  hostname_reserved: { status: 422, message: "Hostnames under the platform domain are reserved." },
  hostname_confusable: { status: 409, message: "The hostname is confusable with one already registered." },
  server_taken: { status: 409, message: "The database server is bound to another tenant." },
  email_taken: { status: 409, message: "The email belongs to a user already." },
  verification_failed: { status: 422, message: "The verification record was not found." },
  platform_hostname: { status: 422, message: "A platform subdomain cannot be changed this way." },
  apply_invalid: { status: 422, message: "The configuration is not valid." },
  apply_conflict: { status: 409, message: "The configuration conflicts with itself or with the live system." },
  // If-Match named a version the tenant is no longer at: read it again, then retry.
  precondition_failed: { status: 412, message: "The tenant changed since it was read." },
  // Postgres unreachable, or known down (the control plane's "postgres" breaker); retry later.
  database_unavailable: { status: 503, message: "The database is unavailable; try again shortly." },
  // The request outlived its deadline (a black-holed database answers nothing); a
  // write it made may still take effect, so a client reads before it retries.
  deadline_exceeded: { status: 503, message: "The request did not complete in time; a change it made may still take effect." },
  internal: { status: 500, message: "Internal error." },
} as const;
export type AdminErrorCode = keyof typeof ADMIN_ERRORS;
