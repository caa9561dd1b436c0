/**
 * A typed client of the admin API, derived from the route table (admin/operations.ts):
 * one method per operation, its path parameters, query and body typed from the same
 * zod schemas the handlers validate with, its answer typed from admin/responses.ts.
 * Used by the `portcullis` CLI (over HTTP) and by the console (in process, through
 * the admin app's own `fetch`, so a console action passes the same auth, validation
 * and change recording as any admin call).
 *
 * Expected refusals are answers (`ok: false` with the error body), not exceptions; a
 * control plane that cannot be reached throws `AdminUnreachable`.
 */
import type { z } from "zod";
import { OPERATIONS, type OperationId, type Operations } from "./operations.ts";
import type { ErrorBody } from "./responses.ts";

type ParamNames<P extends string> = P extends `${string}:${infer N}/${infer Rest}`
  ? N | ParamNames<`/${Rest}`>
  : P extends `${string}:${infer N}`
    ? N
    : never;

type Op<K extends OperationId> = Operations[K];
type ParamsArg<K extends OperationId> = [ParamNames<Op<K>["path"]>] extends [never]
  ? { params?: undefined }
  : { params: Record<ParamNames<Op<K>["path"]>, string> };
type BodyArg<K extends OperationId> =
  Op<K> extends { body: infer B extends z.ZodType }
    ? Op<K> extends { bodyOptional: true }
      ? { body?: z.input<B> }
      : { body: z.input<B> }
    : { body?: undefined };
type QueryArg<K extends OperationId> =
  Op<K> extends { query: infer Q extends z.ZodType }
    ? { query?: { [F in keyof z.input<Q>]?: z.input<Q>[F] | undefined } }
    : { query?: undefined };

export type Args<K extends OperationId> = ParamsArg<K> &
  BodyArg<K> &
  QueryArg<K> & {
    /** Extra request headers (`If-Match`, `X-Portcullis-Actor`). */
    headers?: Record<string, string>;
  };

export type Success<K extends OperationId> = Op<K>["ok"] extends { schema: infer S extends z.ZodType } ? z.output<S> : null;

/** A refusal's body: the error, and what some calls add beside it (apply's issues and report). */
export type Refusal = z.output<typeof ErrorBody> & Record<string, any>;

export type Answer<K extends OperationId> =
  | { ok: true; status: number; body: Success<K>; headers: Headers }
  | { ok: false; status: number; body: Refusal; headers: Headers };

export type AdminClient = {
  [K in OperationId]: Record<never, never> extends Args<K>
    ? (args?: Args<K>) => Promise<Answer<K>>
    : (args: Args<K>) => Promise<Answer<K>>;
} & { call<K extends OperationId>(id: K, args?: Args<K>): Promise<Answer<K>> };

export class AdminUnreachable extends Error {}

export interface AdminClientOptions {
  /** `http://127.0.0.1:8081`, or any origin when `fetch` is the admin app's own. */
  baseUrl: string;
  token: string;
  /** Default: the global fetch. The console passes the admin app's `fetch`. */
  fetch?: (request: Request) => Response | Promise<Response>;
  timeoutMs?: number;
  /** Sent as `X-Portcullis-Actor`, the operator named in the change log (admin/changes.ts). */
  actor?: string;
}

export function pathOf(template: string, params: Record<string, string> | undefined): string {
  return template.replace(/:([A-Za-z0-9_]+)/g, (_, name: string) => {
    const value = params?.[name];
    if (value === undefined) throw new TypeError(`missing path parameter ${name}`);
    return encodeURIComponent(value);
  });
}

export function createAdminClient(options: AdminClientOptions): AdminClient {
  const base = options.baseUrl.replace(/\/+$/, "");
  const send = options.fetch ?? ((request: Request) => fetch(request));

  async function call<K extends OperationId>(id: K, args: Args<K> = {} as Args<K>): Promise<Answer<K>> {
    const op = OPERATIONS[id];
    const a = args as {
      params?: Record<string, string>;
      query?: Record<string, unknown>;
      body?: unknown;
      headers?: Record<string, string>;
    };
    const url = new URL(`${base}${pathOf(op.path, a.params)}`);
    for (const [name, value] of Object.entries(a.query ?? {})) if (value !== undefined) url.searchParams.set(name, String(value));
    const headers: Record<string, string> = { authorization: `Bearer ${options.token}`, ...a.headers };
    if (options.actor) headers["x-portcullis-actor"] = options.actor;
    if (a.body !== undefined) headers["content-type"] = "application/json";
    const request = new Request(url, {
      method: op.method.toUpperCase(),
      headers,
      ...(a.body === undefined ? {} : { body: JSON.stringify(a.body) }),
      signal: AbortSignal.timeout(options.timeoutMs ?? 30_000),
    });
    let res: Response;
    let text: string;
    try {
      res = await send(request);
      text = await res.text();
    } catch (error) {
      throw new AdminUnreachable(`cannot reach the control plane at ${base}: ${describe(error)}`);
    }
    let body: unknown = null;
    try {
      body = text ? JSON.parse(text) : null;
    } catch {
      body = { error: { code: "invalid_response", message: text.slice(0, 200), requestId: "" } };
    }
    const ok = res.status >= 200 && res.status < 300;
    return { ok, status: res.status, body, headers: res.headers } as Answer<K>;
  }

  const client = { call } as Record<string, unknown>;
  for (const id of Object.keys(OPERATIONS) as OperationId[]) client[id] = (args?: Args<typeof id>) => call(id, args);
  return client as AdminClient;
}

function describe(error: unknown): string {
  const e = error as { message?: string; cause?: { code?: string; message?: string } };
  return e.cause?.code ?? e.cause?.message ?? e.message ?? String(error);
}
