/**
 * The admin API's one route table: every operation's method, path, the zod schemas
 * of its body and query (admin/schemas.ts, the very ones its handler validates with),
 * its answer (admin/responses.ts) and the error codes it may answer. Handlers are
 * registered through `route()` with an entry of this table, `/v1/openapi.json` is
 * generated from it (admin/openapi.ts), and the typed client has one method per entry
 * (admin/client.ts). test/e2e/openapi.test.ts checks that every route the admin app
 * serves is one of these.
 */
import type { AdminErrorCode } from "@portcullis/shared";
import type { Context, Env as HonoEnv, Hono } from "hono";
import type { z } from "zod";
import * as R from "./responses.ts";
import * as S from "./schemas.ts";

export interface Operation {
  method: "get" | "post" | "put" | "patch" | "delete";
  /** Hono's form (`/v1/tenants/:tenant`); the document spells it `{tenant}`. */
  path: string;
  tag: string;
  summary: string;
  description?: string;
  /** False for the two calls a client without the admin token makes. */
  auth?: boolean;
  body?: z.ZodType;
  /** The body may be absent (an empty body is `{}`). */
  bodyOptional?: boolean;
  query?: z.ZodType;
  ok: { status: 200 | 201 | 204; schema?: z.ZodType; description: string };
  errors: readonly AdminErrorCode[];
}

const T = ["not_found"] as const;

export const OPERATIONS = {
  health: {
    method: "get",
    path: "/healthz",
    tag: "operations",
    summary: "Liveness of the admin listener",
    auth: false,
    ok: { status: 200, schema: R.Health, description: "Up." },
    errors: [],
  },
  openapi: {
    method: "get",
    path: "/v1/openapi.json",
    tag: "operations",
    summary: "This document",
    auth: false,
    ok: { status: 200, schema: R.OpenApiDocument, description: "The OpenAPI 3.1 document of the admin API." },
    errors: [],
  },
  tlsAsk: {
    method: "get",
    path: "/v1/tls/ask",
    tag: "hostnames",
    summary: "May a TLS terminator get a certificate for this name? (docs/tls-ask.md)",
    description:
      "Unauthenticated, for Caddy's on_demand_tls `ask`; rate limited per source (429). 400/404 answer `{allowed: false, code}`.",
    auth: false,
    query: S.tlsAskQuery,
    ok: { status: 200, schema: R.TlsAskAnswer, description: "The name is a verified hostname of an active tenant." },
    errors: [],
  },
  createTenant: {
    method: "post",
    path: "/v1/tenants",
    tag: "tenants",
    summary: "Create a tenant with its verified subdomain",
    body: S.createTenant,
    ok: { status: 201, schema: R.Tenant, description: "The tenant." },
    errors: ["slug_taken", "slug_reserved"],
  },
  listTenants: {
    method: "get",
    path: "/v1/tenants",
    tag: "tenants",
    summary: "List tenants, in slug order, paged by `after`",
    query: S.listTenants,
    ok: { status: 200, schema: R.TenantList, description: "A page; `next` when more follow." },
    errors: [],
  },
  getTenant: {
    method: "get",
    path: "/v1/tenants/:tenant",
    tag: "tenants",
    summary: "A tenant (by id or slug), with its version as ETag",
    ok: { status: 200, schema: R.Tenant, description: "The tenant." },
    errors: T,
  },
  patchTenant: {
    method: "patch",
    path: "/v1/tenants/:tenant",
    tag: "tenants",
    summary: "Suspend, resume, or change plan, limits, features and settings (If-Match honoured)",
    body: S.patchTenant,
    ok: { status: 200, schema: R.Tenant, description: "The tenant." },
    errors: [...T, "precondition_failed"],
  },
  deleteTenant: {
    method: "delete",
    path: "/v1/tenants/:tenant",
    tag: "tenants",
    summary: "Delete a tenant: its hostnames, keys and sessions stop at once",
    ok: { status: 204, description: "Deleted." },
    errors: T,
  },
  putDatabase: {
    method: "put",
    path: "/v1/tenants/:tenant/database",
    tag: "tenants",
    summary: "Bind the tenant's one database server",
    body: S.database,
    ok: { status: 200, schema: R.DatabaseBinding, description: "The binding, the server in its canonical spelling." },
    errors: [...T, "server_taken"],
  },
  putUpstreams: {
    method: "put",
    path: "/v1/tenants/:tenant/upstreams",
    tag: "tenants",
    summary: "Set the tenant's upstream app instances",
    body: S.upstreams,
    ok: { status: 200, schema: R.Upstreams, description: "The upstreams as origins." },
    errors: T,
  },
  listHostnames: {
    method: "get",
    path: "/v1/tenants/:tenant/hostnames",
    tag: "hostnames",
    summary: "A tenant's hostnames with their TXT records and check times",
    ok: { status: 200, schema: R.HostnameList, description: "The hostnames." },
    errors: T,
  },
  addHostname: {
    method: "post",
    path: "/v1/tenants/:tenant/hostnames",
    tag: "hostnames",
    summary: "Claim a custom hostname; it routes once verified",
    body: S.hostname,
    ok: { status: 201, schema: R.HostnameClaim, description: "Pending, with the TXT record to publish." },
    errors: [...T, "hostname_taken", "hostname_invalid", "hostname_reserved", "hostname_confusable"],
  },
  verifyHostname: {
    method: "post",
    path: "/v1/tenants/:tenant/hostnames/:hostname/verify",
    tag: "hostnames",
    summary: "Check the TXT record now",
    ok: { status: 200, schema: R.Verified, description: "Verified: it routes." },
    errors: [...T, "verification_failed"],
  },
  deleteHostname: {
    method: "delete",
    path: "/v1/tenants/:tenant/hostnames/:hostname",
    tag: "hostnames",
    summary: "Remove a custom hostname",
    ok: { status: 204, description: "Removed." },
    errors: [...T, "platform_hostname"],
  },
  createKey: {
    method: "post",
    path: "/v1/tenants/:tenant/keys",
    tag: "keys",
    summary: "Create an API key; the secret is shown once",
    body: S.key,
    ok: { status: 201, schema: R.CreatedKey, description: "The key, with its secret." },
    errors: T,
  },
  listKeys: {
    method: "get",
    path: "/v1/tenants/:tenant/keys",
    tag: "keys",
    summary: "A tenant's keys, never their secrets",
    ok: { status: 200, schema: R.KeyList, description: "The keys." },
    errors: T,
  },
  revokeKey: {
    method: "delete",
    path: "/v1/tenants/:tenant/keys/:keyId",
    tag: "keys",
    summary: "Revoke a key",
    ok: { status: 204, description: "Revoked." },
    errors: T,
  },
  createUser: {
    method: "post",
    path: "/v1/tenants/:tenant/users",
    tag: "users",
    summary: "Create a user of the tenant",
    body: S.user,
    ok: { status: 201, schema: R.User, description: "The user." },
    errors: [...T, "email_taken"],
  },
  createSession: {
    method: "post",
    path: "/v1/tenants/:tenant/users/:userId/sessions",
    tag: "users",
    summary: "Open a session for a user",
    ok: { status: 201, schema: R.Session, description: "The session token and its cookie." },
    errors: T,
  },
  revokeSession: {
    method: "delete",
    path: "/v1/tenants/:tenant/sessions/:sessionId",
    tag: "users",
    summary: "Revoke a session",
    ok: { status: 204, description: "Revoked." },
    errors: T,
  },
  apply: {
    method: "post",
    path: "/v1/apply",
    tag: "apply",
    summary: "Check a tenant file against the live system, and apply it in one transaction",
    description: "422 `apply_invalid` adds `issues`; 409 `apply_conflict` adds the report (deploy/README.md).",
    body: S.ApplyRequest,
    ok: { status: 200, schema: R.ApplyReport, description: "The report (a dry run with conflicts answers 200 too)." },
    errors: ["apply_invalid", "apply_conflict"],
  },
  usage: {
    method: "get",
    path: "/v1/tenants/:tenant/usage",
    tag: "usage",
    summary: "Metered usage of the current month",
    ok: { status: 200, schema: R.Usage, description: "The month's counts." },
    errors: T,
  },
  usageHourly: {
    method: "get",
    path: "/v1/tenants/:tenant/usage/hourly",
    tag: "usage",
    summary: "Requests and refusals per hour, from the audit trail",
    query: S.usageHourlyQuery,
    ok: { status: 200, schema: R.UsageHourly, description: "One entry per hour, oldest first." },
    errors: T,
  },
  getContextKey: {
    method: "get",
    path: "/v1/tenants/:tenant/context-key",
    tag: "credentials",
    summary: "The keys that sign the tenant's context now",
    ok: { status: 200, schema: R.ContextKey, description: "Current and previous keys." },
    errors: T,
  },
  rotateContextKey: {
    method: "post",
    path: "/v1/tenants/:tenant/context-key/rotate",
    tag: "credentials",
    summary: "Rotate the context key; the previous one signs on for the overlap",
    body: S.rotateContextKey,
    bodyOptional: true,
    ok: { status: 200, schema: R.ContextKey, description: "The new keys." },
    errors: T,
  },
  audit: {
    method: "get",
    path: "/v1/audit",
    tag: "audit",
    summary: "Every routing decision, newest first",
    query: S.auditQuery,
    ok: { status: 200, schema: R.AuditPage, description: "A page; `next` is the cursor of the following one." },
    errors: [],
  },
  tenantAudit: {
    method: "get",
    path: "/v1/tenants/:tenant/audit",
    tag: "audit",
    summary: "One tenant's routing decisions, newest first",
    query: S.auditQuery,
    ok: { status: 200, schema: R.AuditPage, description: "A page." },
    errors: T,
  },
  changes: {
    method: "get",
    path: "/v1/changes",
    tag: "audit",
    summary: "Configuration changes made through the admin API",
    query: S.auditQuery,
    ok: { status: 200, schema: R.ChangePage, description: "A page." },
    errors: [],
  },
  tenantChanges: {
    method: "get",
    path: "/v1/tenants/:tenant/changes",
    tag: "audit",
    summary: "One tenant's configuration changes (readable by id after deletion)",
    query: S.auditQuery,
    ok: { status: 200, schema: R.ChangePage, description: "A page." },
    errors: T,
  },
  explain: {
    method: "get",
    path: "/v1/explain",
    tag: "audit",
    summary: "What the router would decide for a request, and by which rule",
    query: S.explainQuery,
    ok: { status: 200, schema: R.Explanation, description: "The decision." },
    errors: [],
  },
} as const satisfies Record<string, Operation>;

export type Operations = typeof OPERATIONS;
export type OperationId = keyof Operations;

/** Register `handler` for one operation of the table (the only way routes are added). */
export function route<E extends HonoEnv, P extends string>(
  app: Hono<E>,
  op: Operation & { path: P },
  handler: (c: Context<E, P>) => Response | Promise<Response>,
): void {
  app.on(op.method.toUpperCase(), op.path, handler as (c: Context<E, string>) => Response | Promise<Response>);
}
