/**
 * The OpenAPI 3.1 document of the admin API, generated from the route table
 * (admin/operations.ts) with zod 4's `z.toJSONSchema` (JSON Schema 2020-12, which is
 * OpenAPI 3.1's schema dialect). Request schemas are rendered as input (what a client
 * may send: defaults optional), answers as output. Schemas named with `.meta({id})`
 * become `components/schemas` and are referenced, everything else is inlined.
 */
import { ADMIN_ERRORS, type AdminErrorCode } from "@portcullis/shared";
import { z } from "zod";
import { OPERATIONS, type Operation } from "./operations.ts";
import { ErrorBody } from "./responses.ts";

type Json = Record<string, unknown>;

/** `/v1/tenants/:tenant` → `/v1/tenants/{tenant}` (OpenAPI 3.1 §4.8.2 path templating). */
export function openApiPath(path: string): string {
  return path.replace(/:([A-Za-z0-9_]+)/g, "{$1}");
}

export function pathParams(path: string): string[] {
  return [...path.matchAll(/:([A-Za-z0-9_]+)/g)].map((m) => m[1] as string);
}

class Components {
  readonly schemas: Record<string, Json> = {};

  /** A JSON Schema of `schema`, its named parts moved into components and referenced. */
  add(schema: z.ZodType, io: "input" | "output"): Json {
    const rendered = z.toJSONSchema(schema, { target: "draft-2020-12", io, unrepresentable: "any" });
    // zod references its named parts inside the schema (`#/$defs/X`); here they live in components.
    const json = JSON.parse(JSON.stringify(rendered).replaceAll('"#/$defs/', '"#/components/schemas/')) as Json;
    delete json.$schema;
    const defs = (json.$defs ?? {}) as Record<string, Json>;
    delete json.$defs;
    for (const [id, def] of Object.entries(defs)) {
      // Input and output renderings of one named schema differ only in defaults; the
      // first one kept is the one every reference means.
      this.schemas[id] ??= def;
    }
    // A schema that is itself named comes back as its definition plus an `id`.
    if (typeof json.id === "string") {
      const id = json.id;
      delete json.id;
      this.schemas[id] ??= json;
      return { $ref: `#/components/schemas/${id}` };
    }
    return json;
  }
}

function errorResponses(op: Operation, components: Components): Record<string, Json> {
  const codes: AdminErrorCode[] = [...op.errors];
  if (op.body) codes.push("invalid_json", "validation_failed");
  else if (op.query) codes.push("validation_failed");
  if (op.auth !== false) codes.push("unauthorized", "database_unavailable", "deadline_exceeded");
  if (op.auth !== false || op.body || op.query) codes.push("internal");
  const byStatus = new Map<number, AdminErrorCode[]>();
  for (const code of new Set(codes)) {
    const status = ADMIN_ERRORS[code].status;
    byStatus.set(status, [...(byStatus.get(status) ?? []), code]);
  }
  const out: Record<string, Json> = {};
  const ref = components.add(ErrorBody, "output");
  for (const [status, list] of [...byStatus].sort((a, b) => a[0] - b[0])) {
    out[String(status)] = {
      description: list.map((c) => `\`${c}\`: ${ADMIN_ERRORS[c].message}`).join(" "),
      content: { "application/json": { schema: ref } },
    };
  }
  return out;
}

function queryParameters(schema: z.ZodType, components: Components): Json[] {
  const json = components.add(schema, "input");
  const props = (json.properties ?? {}) as Record<string, Json>;
  const required = new Set((json.required ?? []) as string[]);
  return Object.entries(props).map(([name, s]) => ({ name, in: "query", required: required.has(name), schema: s }));
}

function operationObject(id: string, op: Operation, components: Components): Json {
  const parameters: Json[] = pathParams(op.path).map((name) => ({
    name,
    in: "path",
    required: true,
    schema: { type: "string" },
    ...(name === "tenant" ? { description: "The tenant's id (`ten_…`) or slug." } : {}),
  }));
  if (op.query) parameters.push(...queryParameters(op.query, components));
  const ok: Json = { description: op.ok.description };
  if (op.ok.schema) ok.content = { "application/json": { schema: components.add(op.ok.schema, "output") } };
  return {
    operationId: id,
    tags: [op.tag],
    summary: op.summary,
    ...(op.description ? { description: op.description } : {}),
    ...(op.auth === false ? { security: [] } : {}),
    ...(parameters.length > 0 ? { parameters } : {}),
    ...(op.body
      ? {
          requestBody: {
            required: !op.bodyOptional,
            content: { "application/json": { schema: components.add(op.body, "input") } },
          },
        }
      : {}),
    responses: { [String(op.ok.status)]: ok, ...errorResponses(op, components) },
  };
}

let cached: Json | null = null;

/** The document (built once: the table is static). */
export function openApiDocument(): Json {
  if (cached) return cached;
  const components = new Components();
  const paths: Record<string, Record<string, Json>> = {};
  for (const [id, op] of Object.entries(OPERATIONS) as [string, Operation][]) {
    const item = (paths[openApiPath(op.path)] ??= {});
    item[op.method] = operationObject(id, op, components);
  }
  cached = {
    openapi: "3.1.0",
    info: {
      title: "Portcullis admin API",
      version: "1",
      description:
        "The control plane's admin API (docs/admin-api.md). Errors share one body: `{error: {code, message, requestId, detail?}}` (docs/errors.md).",
    },
    jsonSchemaDialect: "https://json-schema.org/draft/2020-12/schema",
    servers: [{ url: "/" }],
    security: [{ adminToken: [] }],
    tags: [...new Set(Object.values(OPERATIONS).map((o) => o.tag))].map((name) => ({ name })),
    paths,
    components: {
      schemas: components.schemas,
      securitySchemes: { adminToken: { type: "http", scheme: "bearer", description: "The ADMIN_TOKEN setting." } },
    },
  };
  return cached;
}
