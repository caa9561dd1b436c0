/**
 * The router's client of the key service: one keep-alive pool, short timeouts, and
 * zod validation of every answer (a malformed answer is "unavailable", never an allow).
 */
import { Pool } from "undici";
import {
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
}

export interface KeyServiceClient {
  resolveHost(hostname: string): Promise<ResolveHost>;
  tenant(id: string): Promise<Tenant>;
  verifyKey(hash: string): Promise<VerifyKey>;
  session(id: string): Promise<Session>;
  reportUsed(ids: string[]): Promise<void>;
  healthy(): Promise<boolean>;
  close(): Promise<void>;
}

export function createKeyServiceClient(options: { url: string; token: string; timeoutMs?: number }): KeyServiceClient {
  const timeout = options.timeoutMs ?? 2_000;
  const pool = new Pool(options.url, {
    connections: 32,
    connectTimeout: timeout,
    headersTimeout: timeout,
    bodyTimeout: timeout,
    keepAliveTimeout: 30_000,
  });
  const authorization = `Bearer ${options.token}`;

  async function call<S extends z.ZodType>(schema: S, method: "GET" | "POST", path: string, body?: unknown): Promise<z.infer<S>> {
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
      throw new KeyServiceError(`key service answered ${res.statusCode}`);
    }
    const parsed = schema.safeParse(await res.body.json().catch(() => undefined));
    if (!parsed.success) throw new KeyServiceError("key service answer is malformed");
    return parsed.data;
  }

  return {
    resolveHost: (hostname) => call(ResolveHostResponse, "GET", `/v1/resolve/host/${encodeURIComponent(hostname)}`),
    tenant: (id) => call(TenantEntry, "GET", `/v1/resolve/tenant/${encodeURIComponent(id)}`),
    verifyKey: (hash) => call(VerifyKeyResponse, "POST", "/v1/keys/verify", { hash }),
    session: (id) => call(SessionEntry, "GET", `/v1/sessions/${encodeURIComponent(id)}`),
    async reportUsed(ids) {
      const res = await pool.request({
        method: "POST",
        path: "/v1/keys/used",
        headers: { authorization, "content-type": "application/json" },
        body: JSON.stringify({ ids }),
      });
      await res.body.dump();
      if (res.statusCode !== 204 && res.statusCode !== 200) throw new KeyServiceError(`key service answered ${res.statusCode}`);
    },
    async healthy() {
      try {
        const res = await pool.request({ method: "GET", path: "/healthz" });
        await res.body.dump();
        return res.statusCode === 200;
      } catch {
        return false;
      }
    },
    close: () => pool.close(),
  };
}
