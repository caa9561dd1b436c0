/**
 * The CLI's client of the admin API: one authenticated JSON request per call, the
 * status and parsed body back; a control plane that cannot be reached is
 * `Unreachable` (exit 3).
 */
import { request } from "undici";
import type { CliConfig } from "../config.ts";
import { Usage } from "./io.ts";

export type ApiAnswer = { status: number; body: any };
export type Api = ReturnType<typeof client>;

export class Unreachable extends Error {}

export const enc = encodeURIComponent;

export function client(config: CliConfig) {
  return async (method: string, path: string, body?: unknown): Promise<ApiAnswer> => {
    if (!config.adminToken) throw new Usage("ADMIN_TOKEN is not set");
    let res: Awaited<ReturnType<typeof request>>;
    try {
      res = await request(`${config.adminUrl}${path}`, {
        method: method as "GET",
        headers: {
          authorization: `Bearer ${config.adminToken}`,
          ...(body === undefined ? {} : { "content-type": "application/json" }),
        },
        body: body === undefined ? null : JSON.stringify(body),
        headersTimeout: 30_000,
        bodyTimeout: 30_000,
      });
    } catch (error) {
      throw new Unreachable(`cannot reach the control plane at ${config.adminUrl}: ${(error as Error).message}`);
    }
    const text = await res.body.text();
    let parsed: unknown = null;
    try {
      parsed = text ? JSON.parse(text) : null;
    } catch {
      parsed = { error: { code: "invalid_response", message: text.slice(0, 200) } };
    }
    return { status: res.statusCode, body: parsed };
  };
}
