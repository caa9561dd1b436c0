/**
 * The route guard: walks an app's routes as two tenants and reports every way tenant
 * B can see tenant A's rows. For each listing route, A's rows are listed as A, then
 * the same route as B must list none of them; for each item route (one `:param`, as
 * `/orders/:id` or `/orders/:orderId/lines`; `honoRoutes(app)` lists a Hono app's),
 * every id of A must answer B with 404 — not 403, which confirms the row exists — and
 * A itself with 200 (so a route broken for everyone does not pass as isolated). A
 * guard that found no row of A fails too: it would have proved nothing.
 *
 * Ids are compared as strings, so they must be unique across tenants (random,
 * prefixed ids; per-database serials would collide by design).
 */
import { request as httpRequest } from "node:http";
import { type SignOptions, signedHeaders, type TestTenant } from "./signer.ts";

export type FetchLike = (request: Request) => Response | Promise<Response>;

export interface GuardTenant {
  /** A name for the report. */
  name: string;
  host: string;
  /** Sign each request with this context key and context (calling the app directly). */
  key?: string;
  context?: TestTenant;
  /** More headers (an API key, a session cookie, when going through the router). */
  headers?: Record<string, string>;
}

export interface GuardRoute {
  /** A listing (`/orders`), or an item route with one parameter (`/orders/:id`, `/orders/:orderId/lines`). */
  path: string;
  /** Item routes: the methods B tries on A's ids (default GET). */
  methods?: string[];
  /** Item routes: the listing A's ids come from (default the path before `/:id`). */
  idsFrom?: string;
  /** Listings: the row ids of a response body (default: `id` of the objects in the body's array). */
  ids?: (body: unknown) => string[];
}

export interface RouteGuardOptions {
  /** The app: a fetch handler (`honoApp.fetch`) or a base URL (`http://127.0.0.1:3000`). */
  app: FetchLike | string;
  tenants: readonly [GuardTenant, GuardTenant];
  routes: readonly (string | GuardRoute)[];
  /** Also check A against B's rows (default true). */
  bothWays?: boolean;
  /** At most this many ids of each listing are tried on item routes (default 25). */
  maxIds?: number;
}

export type ViolationKind =
  | "leak_in_list"
  | "leak_by_id"
  | "forbidden_not_404"
  | "unexpected_status"
  | "no_rows"
  | "own_row_unreadable";

export interface Violation {
  kind: ViolationKind;
  /** The tenant that made the request. */
  as: string;
  /** The tenant whose rows are at stake. */
  owner: string;
  method: string;
  path: string;
  status: number;
  detail: string;
}

export interface GuardReport {
  ok: boolean;
  requests: number;
  violations: Violation[];
}

interface Answer {
  status: number;
  body: unknown;
}

/** Default row ids: a JSON array of objects, or the first array property of an object. */
export function defaultIds(body: unknown): string[] {
  let list: unknown = body;
  if (!Array.isArray(list) && typeof list === "object" && list !== null)
    list = Object.values(list).find((v) => Array.isArray(v)) ?? [];
  if (!Array.isArray(list)) return [];
  return list
    .map((row) => (typeof row === "object" && row !== null ? (row as { id?: unknown }).id : undefined))
    .filter((id) => typeof id === "string" || typeof id === "number")
    .map(String);
}

function call(app: FetchLike | string, tenant: GuardTenant, method: string, target: string): Promise<Answer> {
  let headers: Record<string, string> = { host: tenant.host, ...tenant.headers };
  if (tenant.key !== undefined && tenant.context !== undefined) {
    const sign: SignOptions = { key: tenant.key, tenant: tenant.context, method, host: tenant.host, target };
    headers = { ...headers, ...signedHeaders(sign) };
  }
  const parse = (status: number, text: string): Answer => {
    try {
      return { status, body: text === "" ? null : JSON.parse(text) };
    } catch {
      return { status, body: text };
    }
  };
  if (typeof app === "function") {
    return Promise.resolve(app(new Request(`http://${tenant.host}${target}`, { method, headers }))).then(async (res) =>
      parse(res.status, await res.text()),
    );
  }
  return new Promise((resolve, reject) => {
    const req = httpRequest(new URL(target, app), { method, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve(parse(res.statusCode ?? 0, Buffer.concat(chunks).toString("utf8"))));
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end();
  });
}

/** A path parameter segment (`/:id`, `/:orderId`). */
const PARAM = /\/:[A-Za-z_][A-Za-z0-9_]*(?=\/|$)/g;

/** An item route's parameter: its one `:param` segment (null for a listing). */
function itemParam(path: string): string | null {
  const found = path.match(PARAM) ?? [];
  if (found.length > 1)
    throw new TypeError(`route guard: ${path} has ${found.length} parameters; give the guard one :param per route`);
  return found[0]?.slice(1) ?? null;
}

/**
 * The routes a Hono app serves to GET, for `routes`: every path registered with a GET
 * (or `all`) handler, less middleware patterns (`*`, `/*`) and paths with more than
 * one parameter, which the guard cannot fill.
 */
export function honoRoutes(app: { routes: readonly { method: string; path: string }[] }): string[] {
  const paths = app.routes
    .filter((r) => (r.method === "GET" || r.method === "ALL") && !r.path.includes("*"))
    .map((r) => r.path)
    .filter((p) => (p.match(PARAM) ?? []).length <= 1);
  return [...new Set(paths)];
}

export async function checkRouteIsolation(options: RouteGuardOptions): Promise<GuardReport> {
  const routes = options.routes.map((r): GuardRoute => (typeof r === "string" ? { path: r } : r));
  const params = new Map(routes.map((r) => [r, itemParam(r.path)]));
  const lists = routes.filter((r) => params.get(r) === null);
  const items = routes.filter((r) => params.get(r) !== null);
  const maxIds = options.maxIds ?? 25;
  const violations: Violation[] = [];
  let requests = 0;
  const send = (t: GuardTenant, method: string, path: string) => {
    requests++;
    return call(options.app, t, method, path);
  };

  async function direction(owner: GuardTenant, other: GuardTenant) {
    const v = (kind: ViolationKind, as: GuardTenant, method: string, path: string, status: number, detail: string) =>
      violations.push({ kind, as: as.name, owner: owner.name, method, path, status, detail });
    const owned = new Map<string, string[]>();
    for (const list of lists) {
      const mine = await send(owner, "GET", list.path);
      if (mine.status !== 200) v("unexpected_status", owner, "GET", list.path, mine.status, "the owner cannot list its own rows");
      const ids = (list.ids ?? defaultIds)(mine.body);
      owned.set(list.path, ids);
      if (ids.length === 0)
        v("no_rows", owner, "GET", list.path, mine.status, `${owner.name} has no rows here: nothing to check`);
      const theirs = await send(other, "GET", list.path);
      const seen = new Set((list.ids ?? defaultIds)(theirs.body));
      const leaked = ids.filter((id) => seen.has(id));
      if (leaked.length > 0)
        v("leak_in_list", other, "GET", list.path, theirs.status, `${other.name} sees ${owner.name}'s rows ${leaked.join(", ")}`);
      else if (theirs.status !== 200)
        v("unexpected_status", other, "GET", list.path, theirs.status, "expected 200 (its own rows)");
    }
    const all = [...new Set([...owned.values()].flat())];
    for (const item of items) {
      const param = `/${params.get(item)}`;
      const from = item.idsFrom ?? item.path.slice(0, item.path.indexOf(param));
      const ids = (owned.get(from) ?? all).slice(0, maxIds);
      for (const id of ids) {
        const at = item.path.indexOf(param);
        const path = `${item.path.slice(0, at)}/${encodeURIComponent(id)}${item.path.slice(at + param.length)}`;
        const mine = await send(owner, "GET", path);
        if (mine.status !== 200) v("own_row_unreadable", owner, "GET", path, mine.status, "the owner cannot read its own row");
        for (const method of item.methods ?? ["GET"]) {
          const theirs = await send(other, method, path);
          if (theirs.status === 404) continue;
          if (theirs.status === 403)
            v("forbidden_not_404", other, method, path, 403, `403 tells ${other.name} that ${owner.name}'s row ${id} exists`);
          else if (theirs.status >= 200 && theirs.status < 300)
            v("leak_by_id", other, method, path, theirs.status, `${other.name} reached ${owner.name}'s row ${id}`);
          else v("unexpected_status", other, method, path, theirs.status, "expected 404");
        }
      }
    }
  }

  const [a, b] = options.tenants;
  await direction(a, b);
  if (options.bothWays !== false) await direction(b, a);
  return { ok: violations.length === 0, requests, violations };
}

/** `checkRouteIsolation`, throwing an error that lists every violation. */
export async function assertRouteIsolation(options: RouteGuardOptions): Promise<GuardReport> {
  const report = await checkRouteIsolation(options);
  if (!report.ok) {
    const lines = report.violations.map((x) => `  ${x.kind}: ${x.as} ${x.method} ${x.path} -> ${x.status}: ${x.detail}`);
    throw new Error(`tenant isolation violated (${report.violations.length}):\n${lines.join("\n")}`);
  }
  return report;
}
