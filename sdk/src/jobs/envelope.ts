/**
 * The tenant envelope of a background job: the verified tenant's fields, the job's
 * type and payload, when it was sealed and until when it may run, signed with a key
 * derived from the app's context key. A worker trusts the tenant a job names only
 * through this signature, so a row written into the queue by anything but the app
 * (or a job whose payload or tenant was edited in the table) does not run.
 *
 * The job key is HKDF-SHA256 of the context key with its own label: an envelope's
 * MAC can never be replayed as a context signature or the other way round. The signed
 * text is a JSON array, which no field value can escape; the payload is signed as the
 * exact JSON text stored in the envelope.
 */
import { createHmac, hkdfSync, timingSafeEqual } from "node:crypto";
import { type ContextKeys, contextKeyFor, parseContextKey } from "../context/index.ts";
import { type JobRefusal, PortcullisSdkError } from "../errors.ts";
import { fieldsOfTenant, isVerifiedTenant, mintTenant, type Tenant, type TenantFields } from "../tenant.ts";

export interface JobEnvelope {
  v: 1;
  /** Version of the context key the job key was derived from. */
  k: number;
  /** Sealed at, and valid until (epoch ms). */
  iat: number;
  exp: number;
  type: string;
  tenant: TenantFields;
  /** The payload as JSON text, signed byte for byte. */
  payload: string;
  /** HMAC-SHA256, hex. */
  sig: string;
}

export interface JobKeyOptions {
  /** The app's context key(s) (`pctx_…`), as given to `verify`. */
  keys: ContextKeys;
  /** With a key function: the version to seal with (with a key list, the first key's). */
  signingVersion?: number;
}

/** Default lifetime of an envelope: a job not run within a day is refused. */
export const DEFAULT_JOB_TTL_MS = 24 * 3_600_000;

const LABEL = "portcullis/job-envelope/v1";

function jobKey(contextKey: Buffer): Buffer {
  return Buffer.from(hkdfSync("sha256", contextKey, "", LABEL, 32));
}

function signedText(e: Omit<JobEnvelope, "sig">): string {
  const t = e.tenant;
  return JSON.stringify([
    "pjob1",
    e.k,
    e.iat,
    e.exp,
    e.type,
    t.id,
    t.slug,
    t.db,
    t.auth,
    t.features,
    t.userId,
    t.keyId,
    t.requestId,
    e.payload,
  ]);
}

function signingKey(options: JobKeyOptions, tenantId: string): { version: number; key: Buffer } {
  let version = options.signingVersion;
  if (version === undefined && typeof options.keys !== "function") {
    const first = typeof options.keys === "string" ? options.keys : options.keys[0];
    version = first === undefined ? undefined : parseContextKey(first)?.version;
  }
  const key = version === undefined ? null : contextKeyFor(options.keys, tenantId, version);
  if (version === undefined || key === null) throw new PortcullisSdkError("no_signing_key");
  return { version, key };
}

/** Seal a job for a verified tenant. */
export function sealJob(
  tenant: Tenant,
  type: string,
  payload: unknown,
  options: JobKeyOptions & { ttlMs?: number; now?: number },
): JobEnvelope {
  if (!isVerifiedTenant(tenant)) throw new PortcullisSdkError("unverified_tenant");
  const { version, key } = signingKey(options, tenant.id);
  const iat = options.now ?? Date.now();
  const body = {
    v: 1 as const,
    k: version,
    iat,
    exp: iat + (options.ttlMs ?? DEFAULT_JOB_TTL_MS),
    type,
    tenant: fieldsOfTenant(tenant),
    payload: JSON.stringify(payload ?? null),
  };
  return { ...body, sig: createHmac("sha256", jobKey(key)).update(signedText(body)).digest("hex") };
}

export type OpenedJob = { ok: true; tenant: Tenant; type: string; payload: unknown } | { ok: false; code: JobRefusal };

const str = (v: unknown): v is string => typeof v === "string";
const strOrNull = (v: unknown): v is string | null => v === null || typeof v === "string";
const int = (v: unknown): v is number => Number.isSafeInteger(v);

function wellFormed(e: unknown): e is JobEnvelope {
  if (typeof e !== "object" || e === null) return false;
  const j = e as Record<string, unknown>;
  const t = j.tenant as Record<string, unknown> | null;
  return (
    j.v === 1 &&
    int(j.k) &&
    int(j.iat) &&
    int(j.exp) &&
    str(j.type) &&
    str(j.payload) &&
    str(j.sig) &&
    /^[0-9a-f]{64}$/.test(j.sig) &&
    typeof t === "object" &&
    t !== null &&
    str(t.id) &&
    str(t.slug) &&
    str(t.db) &&
    str(t.auth) &&
    str(t.features) &&
    strOrNull(t.userId) &&
    strOrNull(t.keyId) &&
    strOrNull(t.requestId)
  );
}

/** Verify an envelope: its signature with the app's keys, then its expiry. */
export function openJob(envelope: unknown, options: { keys: ContextKeys; now?: number }): OpenedJob {
  if (envelope === undefined || envelope === null) return { ok: false, code: "missing_envelope" };
  if (!wellFormed(envelope)) return { ok: false, code: "malformed_envelope" };
  const key = contextKeyFor(options.keys, envelope.tenant.id, envelope.k);
  if (key === null) return { ok: false, code: "unknown_key" };
  const { sig, ...body } = envelope;
  const expected = createHmac("sha256", jobKey(key)).update(signedText(body)).digest();
  if (!timingSafeEqual(expected, Buffer.from(sig, "hex"))) return { ok: false, code: "bad_signature" };
  if ((options.now ?? Date.now()) > envelope.exp) return { ok: false, code: "expired_envelope" };
  let payload: unknown;
  try {
    payload = JSON.parse(envelope.payload);
  } catch {
    return { ok: false, code: "malformed_envelope" };
  }
  const tenant = mintTenant(envelope.tenant, "job");
  if (tenant === null) return { ok: false, code: "malformed_envelope" };
  return { ok: true, tenant, type: envelope.type, payload };
}
