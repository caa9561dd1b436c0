/**
 * The router's client of the key service: one keep-alive pool, short timeouts, zod
 * validation of every answer (a malformed answer is "unavailable", never an allow),
 * and a circuit breaker: once the key service is found down (unreachable, timing out
 * or answering 5xx a few times in a row) calls fail at once, so an uncached key is
 * answered 503 without waiting, until a health probe finds the service back.
 */
import { Pool } from "undici";
import {
  CircuitBreaker,
  ResolveHostResponse,
  SessionEntry,
  TenantEntry,
  VerifyKeyResponse,
  type ResolveHostResponse as ResolveHost,
  type SessionEntry as Session,
  type TenantEntry as Tenant,
  type VerifyKeyResponse as VerifyKey,
} from "@portcullis/shared";
import type { z } from "zod";

export class KeyServiceError extends Error {
  override name = "KeyServiceError";
  /** The service did not answer, or answered 5xx: counts against its breaker. */
  readonly outage: boolean;
  constructor(message: string, outage = true) {
    super(message);
    this.outage = outage;
  }
}

export interface KeyServiceClient {
  resolveHost(hostname: string): Promise<ResolveHost>;
  tenant(id: string): Promise<Tenant>;
  verifyKey(hash: string): Promise<VerifyKey>;
  session(id: string): Promise<Session>;
  reportUsed(ids: string[]): Promise<void>;
  healthy(): Promise<boolean>;
  close(): Promise<void>;
  /** The breaker in front of the service (absent on test doubles). */
  readonly breaker?: CircuitBreaker;
}

export interface KeyServiceClientOptions {
  url: string;
  token: string;
  timeoutMs?: number;
  /** Consecutive failures that open the breaker (default 3). */
  breakerThreshold?: number;
  /** How often the breaker probes /healthz while open (default 1,000 ms). */
  breakerProbeMs?: number;
}

export function createKeyServiceClient(options: KeyServiceClientOptions): KeyServiceClient {
  const timeout = options.timeoutMs ?? 2_000;
  const pool = new Pool(options.url, {
    connections: 32,
    connectTimeout: timeout,
    headersTimeout: timeout,
    bodyTimeout: timeout,
    keepAliveTimeout: 30_000,
  });
  const authorization = `Bearer ${options.token}`;

  async function healthy(): Promise<boolean> {
    try {
      const res = await pool.request({ method: "GET", path: "/healthz" });
      await res.body.dump();
      return res.statusCode === 200;
    } catch {
      return false;
    }
  }

  const breaker = new CircuitBreaker({
    name: "key_service",
    failureThreshold: options.breakerThreshold ?? 3,
    openMs: options.breakerProbeMs ?? 1_000,
    probe: healthy,
    isFailure: (error) => !(error instanceof KeyServiceError) || error.outage,
  });

  function call<S extends z.ZodType>(schema: S, method: "GET" | "POST", path: string, body?: unknown): Promise<z.infer<S>> {
    return breaker.run(() => request(schema, method, path, body));
  }

  async function request<S extends z.ZodType>(
    schema: S,
    method: "GET" | "POST",
    path: string,
    body?: unknown,
  ): Promise<z.infer<S>> {
    let res: Awaited<ReturnType<Pool["request"]>>;
    try {
      res = await pool.request({
        method,
        path,
        headers: body === undefined ? { authorization } : { authorization, "content-type": "application/json" },
        body: body === undefined ? null : JSON.stringify(body),
      });
    } catch (error) {
      throw new KeyServiceError(`key service unreachable: ${(error as Error).message}`);
    }
    if (res.statusCode !== 200) {
      await res.body.dump();
      throw new KeyServiceError(`key service answered ${res.statusCode}`, res.statusCode >= 500);
    }
    const parsed = schema.safeParse(await res.body.json().catch(() => undefined));
    if (!parsed.success) throw new KeyServiceError("key service answer is malformed", false);
    return parsed.data;
  }

  return {
    resolveHost: (hostname) => call(ResolveHostResponse, "GET", `/v1/resolve/host/${encodeURIComponent(hostname)}`),
    tenant: (id) => call(TenantEntry, "GET", `/v1/resolve/tenant/${encodeURIComponent(id)}`),
    verifyKey: (hash) => call(VerifyKeyResponse, "POST", "/v1/keys/verify", { hash }),
    session: (id) => call(SessionEntry, "GET", `/v1/sessions/${encodeURIComponent(id)}`),
    reportUsed: (ids) =>
      breaker.run(async () => {
        let res: Awaited<ReturnType<Pool["request"]>>;
        try {
          res = await pool.request({
            method: "POST",
            path: "/v1/keys/used",
            headers: { authorization, "content-type": "application/json" },
            body: JSON.stringify({ ids }),
          });
        } catch (error) {
          throw new KeyServiceError(`key service unreachable: ${(error as Error).message}`);
        }
        await res.body.dump();
        if (res.statusCode !== 204 && res.statusCode !== 200)
          throw new KeyServiceError(`key service answered ${res.statusCode}`, res.statusCode >= 500);
      }),
    healthy,
    breaker,
    close: async () => {
      breaker.close();
      await pool.close();
    },
  };
}
