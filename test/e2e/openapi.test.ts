/**
 * The admin API's description (`GET /v1/openapi.json`, `/docs`) against the app that
 * serves it: every route Hono serves is an operation of the document and every
 * operation is served; the document is valid OpenAPI 3.1 by the specification's own
 * JSON Schema (@seriousme/openapi-schema-validator), and holds what a client generator
 * needs beyond it (unique operation ids, path parameters, resolvable $refs); and
 * the typed client's answers, on a live control plane, are exactly what the response
 * schemas say (parsing strips nothing and misses nothing).
 */
import { Validator } from "@seriousme/openapi-schema-validator";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type AdminClient, createAdminClient } from "../../control-plane/src/admin/client.ts";
import { openApiPath } from "../../control-plane/src/admin/openapi.ts";
import { OPERATIONS, type Operation } from "../../control-plane/src/admin/operations.ts";
import { SECRETS, startTestStack, type TestStack } from "../helpers/stack.ts";

/** Browser pages on the admin port, not operations of the JSON API. */
const PAGES = [/^\/docs$/, /^\/console(\/|$)/];
const METHODS = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

type Json = Record<string, any>;

function refs(node: unknown, out: string[] = []): string[] {
  if (Array.isArray(node)) for (const n of node) refs(n, out);
  else if (node && typeof node === "object") {
    for (const [k, v] of Object.entries(node)) {
      if (k === "$ref" && typeof v === "string") out.push(v);
      else refs(v, out);
    }
  }
  return out;
}

function pointer(doc: Json, ref: string): unknown {
  if (!ref.startsWith("#/")) return undefined;
  let at: unknown = doc;
  for (const part of ref.slice(2).split("/")) {
    const key = part.replace(/~1/g, "/").replace(/~0/g, "~");
    at = at && typeof at === "object" ? (at as Json)[key] : undefined;
  }
  return at;
}

describe("the admin API's OpenAPI document", () => {
  let stack: TestStack;
  let doc: Json;
  let api: AdminClient;

  beforeAll(async () => {
    stack = await startTestStack({ backend: "embedded", routers: 1, audit: "stream" });
    const res = await fetch(`http://127.0.0.1:${stack.adminPort}/v1/openapi.json`);
    expect(res.status).toBe(200);
    doc = (await res.json()) as Json;
    api = createAdminClient({ baseUrl: `http://127.0.0.1:${stack.adminPort}`, token: SECRETS.ADMIN_TOKEN });
  });
  afterAll(async () => {
    await stack?.close();
  });

  it("is valid OpenAPI 3.1 by the specification's JSON Schema, and a broken copy is not", async () => {
    const validator = new Validator();
    const result = await validator.validate(structuredClone(doc));
    expect(result.errors, JSON.stringify(result.errors, null, 2)).toBeUndefined();
    expect(result.valid).toBe(true);
    expect(validator.version).toBe("3.1");
    // The check can fail: an operation without its required responses object is refused.
    const broken = structuredClone(doc);
    const [first] = Object.values(broken.paths as Json) as Json[];
    const [op] = Object.values(first as Json) as Json[];
    (op as Json).responses = "none";
    expect((await new Validator().validate(broken)).valid).toBe(false);
  });

  it("is structurally OpenAPI 3.1: info, paths, operations with responses, parameters, resolvable $refs", () => {
    expect(doc.openapi).toMatch(/^3\.1\.\d+$/);
    expect(typeof doc.info?.title).toBe("string");
    expect(typeof doc.info?.version).toBe("string");
    expect(typeof doc.paths).toBe("object");
    const ids = new Set<string>();
    for (const [path, item] of Object.entries(doc.paths as Json)) {
      expect(path.startsWith("/"), path).toBe(true);
      const templated = [...path.matchAll(/\{([^}]+)\}/g)].map((m) => m[1]);
      for (const [method, op] of Object.entries(item as Json)) {
        expect(METHODS, `${method} ${path}`).toContain(method);
        expect(ids.has(op.operationId), `duplicate operationId ${op.operationId}`).toBe(false);
        ids.add(op.operationId);
        const responses = Object.entries(op.responses ?? {});
        expect(responses.length, `${method} ${path} has responses`).toBeGreaterThan(0);
        for (const [status, r] of responses) {
          expect(status, `${method} ${path}`).toMatch(/^([1-5]\d\d|[1-5]XX|default)$/);
          expect(typeof (r as Json).description).toBe("string");
        }
        // Every templated segment is a required path parameter, and no other is declared.
        const pathParams = (op.parameters ?? []).filter((p: Json) => p.in === "path");
        expect(pathParams.map((p: Json) => p.name).sort()).toEqual([...templated].sort());
        for (const p of pathParams) expect(p.required).toBe(true);
        for (const p of op.parameters ?? []) expect(["query", "header", "path", "cookie"]).toContain(p.in);
      }
    }
    const all = refs(doc);
    expect(all.length).toBeGreaterThan(0);
    for (const ref of all) expect(pointer(doc, ref), ref).toBeDefined();
  });

  it("describes every route the admin app serves, and serves every operation it describes", () => {
    const served = new Set<string>();
    for (const r of stack.cp.admin.routes) {
      if (r.method === "ALL" || PAGES.some((p) => p.test(r.path))) continue;
      served.add(`${r.method.toLowerCase()} ${openApiPath(r.path)}`);
    }
    const described = new Set<string>();
    for (const [path, item] of Object.entries(doc.paths as Json))
      for (const method of Object.keys(item as Json)) described.add(`${method} ${path}`);
    expect(
      [...served].filter((r) => !described.has(r)),
      "served but not described",
    ).toEqual([]);
    expect(
      [...described].filter((r) => !served.has(r)),
      "described but not served",
    ).toEqual([]);
  });

  it("types what the live API answers: each success body parses to itself with its schema", async () => {
    const seen: string[] = [];
    const check = <T extends { ok: boolean; status: number; body: unknown }>(id: keyof typeof OPERATIONS, answer: T): T => {
      const op: Operation = OPERATIONS[id];
      expect(answer.ok, `${id}: ${JSON.stringify(answer.body)}`).toBe(true);
      expect(answer.status).toBe(op.ok.status);
      if (op.ok.schema) expect(op.ok.schema.parse(answer.body), id).toEqual(answer.body);
      seen.push(id);
      return answer;
    };
    const tenant = { tenant: "oapi" };
    check("health", await api.health());
    check("createTenant", await api.createTenant({ body: { slug: "oapi", name: "OpenAPI Inc", plan: "pro" } }));
    check("listTenants", await api.listTenants({ query: { q: "oap", status: "active" } }));
    check("getTenant", await api.getTenant({ params: tenant }));
    check(
      "patchTenant",
      await api.patchTenant({
        params: tenant,
        body: { limits: { burst: 9 }, settings: { branding: { displayName: "OAPI", primaryColor: "#aa3300" } } },
      }),
    );
    check("putDatabase", await api.putDatabase({ params: tenant, body: { server: "pg-oapi:5432", database: "oapi" } }));
    check(
      "putUpstreams",
      await api.putUpstreams({ params: tenant, body: { urls: [stack.upstreams[0]?.url ?? "http://127.0.0.1:9"] } }),
    );
    check("addHostname", await api.addHostname({ params: tenant, body: { hostname: "docs.oapi.test" } }));
    const hosts = check("listHostnames", await api.listHostnames({ params: tenant }));
    expect(hosts.ok && hosts.body.hostnames.find((h) => h.hostname === "docs.oapi.test")?.verification?.name).toBe(
      "_portcullis-verify.docs.oapi.test",
    );
    check("verifyHostname", await api.verifyHostname({ params: { ...tenant, hostname: "oapi.localhost" } }));
    check("deleteHostname", await api.deleteHostname({ params: { ...tenant, hostname: "docs.oapi.test" } }));
    const key = check(
      "createKey",
      await api.createKey({ params: tenant, body: { name: "doc", limits: { requestsPerSecond: 5 } } }),
    );
    check("listKeys", await api.listKeys({ params: tenant }));
    const user = check("createUser", await api.createUser({ params: tenant, body: { email: "a@oapi.test" } }));
    const session = check(
      "createSession",
      await api.createSession({ params: { ...tenant, userId: user.ok ? user.body.id : "" } }),
    );
    check("revokeSession", await api.revokeSession({ params: { ...tenant, sessionId: session.ok ? session.body.id : "" } }));
    await stack.request("oapi.localhost", "/hello");
    await stack.request("nobody.localhost", "/");
    check("usage", await api.usage({ params: tenant }));
    check("usageHourly", await api.usageHourly({ params: tenant, query: { hours: 3 } }));
    check("getContextKey", await api.getContextKey({ params: tenant }));
    check("rotateContextKey", await api.rotateContextKey({ params: tenant, body: { overlapSeconds: 60 } }));
    check("audit", await api.audit({ query: { limit: 5 } }));
    check("tenantAudit", await api.tenantAudit({ params: tenant }));
    check("changes", await api.changes({ query: { limit: 5 } }));
    check("tenantChanges", await api.tenantChanges({ params: tenant }));
    check("explain", await api.explain({ query: { host: "oapi.localhost", key: key.ok ? key.body.key : "" } }));
    check("explain", await api.explain({ query: { host: "nobody.localhost" } }));
    check("apply", await api.apply({ body: { tenants: [{ slug: "oapi2", name: "Second" }], dryRun: true } }));
    check("revokeKey", await api.revokeKey({ params: { ...tenant, keyId: key.ok ? key.body.id : "" } }));
    check("tlsAsk", await api.tlsAsk({ query: { domain: "oapi.localhost" } }));
    check("openapi", await api.openapi());
    check("deleteTenant", await api.deleteTenant({ params: tenant }));
    expect(
      Object.keys(OPERATIONS).filter((id) => !seen.includes(id)),
      "operations not exercised",
    ).toEqual([]);

    const refused = await api.getTenant({ params: tenant });
    expect(refused.ok).toBe(false);
    expect(refused.status).toBe(404);
    expect(refused.body).toMatchObject({ error: { code: "not_found" } });
  });

  it("serves a reference page at /docs that loads nothing from elsewhere", async () => {
    const res = await fetch(`http://127.0.0.1:${stack.adminPort}/docs`);
    expect(res.status).toBe(200);
    const page = await res.text();
    expect(page).toContain("/v1/tenants/{tenant}/hostnames/{hostname}/verify");
    expect(page).not.toMatch(/<(script|link|img)\b[^>]*(src|href)=["']?(https?:)?\/\//i);
  });
});
