/**
 * `GET /v1/openapi.json` (the document, admin/openapi.ts) and `GET /docs`, its
 * reference page. The page is rendered here, from the document, with no script and
 * no asset from anywhere else: `@scalar/hono-api-reference` only writes a page that
 * loads Scalar's bundle from a CDN, and the admin port must work with no internet
 * (docs/console.md). Both are open like the TLS ask: they describe, they hold nothing.
 */
import type { Hono } from "hono";
import { html, raw } from "hono/html";
import type { HtmlEscapedString } from "hono/utils/html";
import { openApiDocument } from "./openapi.ts";
import { OPERATIONS, route } from "./operations.ts";

type Json = Record<string, any>;

const STYLE = `body{font:15px/1.45 system-ui,sans-serif;margin:0;color:#1d2330}main{max-width:980px;margin:0 auto;padding:1rem 1.5rem}
h1{font-size:1.5rem}h2{margin-top:2rem;border-bottom:1px solid #ddd;text-transform:capitalize}
details{border:1px solid #dde;border-radius:6px;margin:.4rem 0;padding:.3rem .6rem}summary{cursor:pointer}
.m{display:inline-block;min-width:4.2em;font:600 12px monospace;text-transform:uppercase;padding:2px 6px;border-radius:4px;background:#eef;color:#224}
.get{background:#e3f1ff}.post{background:#e5f7e8}.put,.patch{background:#fff3dc}.delete{background:#fde7e7}
code,pre{font:13px ui-monospace,monospace}pre{background:#f6f7f9;padding:.6rem;overflow:auto;max-height:24rem}
table{border-collapse:collapse}td,th{border-bottom:1px solid #eee;padding:2px 8px;text-align:left;vertical-align:top}`;

function resolve(doc: Json, schema: Json | undefined): Json | undefined {
  const ref = schema?.$ref as string | undefined;
  return ref ? doc.components.schemas[ref.replace("#/components/schemas/", "")] : schema;
}

function schemaBlock(doc: Json, schema: Json | undefined): HtmlEscapedString | Promise<HtmlEscapedString> {
  if (!schema) return html``;
  const named = schema.$ref
    ? html`<p>schema <a href="#schema-${schema.$ref.split("/").pop()}">${schema.$ref.split("/").pop()}</a></p>`
    : html``;
  return html`${named}<pre>${JSON.stringify(resolve(doc, schema), null, 2)}</pre>`;
}

function operation(doc: Json, path: string, method: string, op: Json) {
  const params = (op.parameters ?? []) as Json[];
  const body = op.requestBody?.content?.["application/json"]?.schema as Json | undefined;
  return html`<details id="${op.operationId}">
    <summary><span class="m ${method}">${method}</span> <code>${path}</code> — ${op.summary}</summary>
    ${op.description ? html`<p>${op.description}</p>` : ""}
    ${op.security?.length === 0 ? html`<p>No admin token needed.</p>` : html`<p>Needs <code>Authorization: Bearer ADMIN_TOKEN</code>.</p>`}
    ${
      params.length > 0
        ? html`<table><tr><th>parameter</th><th>in</th><th>required</th><th>schema</th></tr>${params.map(
            (p) =>
              html`<tr><td><code>${p.name}</code></td><td>${p.in}</td><td>${p.required ? "yes" : "no"}</td><td><code>${JSON.stringify(p.schema)}</code></td></tr>`,
          )}</table>`
        : ""
    }
    ${body ? html`<h4>Request body${op.requestBody.required ? "" : " (optional)"}</h4>${schemaBlock(doc, body)}` : ""}
    <h4>Responses</h4>
    ${Object.entries(op.responses as Record<string, Json>).map(
      ([status, r]) =>
        html`<p><b>${status}</b> ${r.description}</p>${
          status.startsWith("2") ? schemaBlock(doc, r.content?.["application/json"]?.schema) : ""
        }`,
    )}
  </details>`;
}

export function referencePage() {
  const doc = openApiDocument() as Json;
  const byTag = new Map<string, ReturnType<typeof operation>[]>();
  for (const [path, item] of Object.entries(doc.paths as Record<string, Json>)) {
    for (const [method, op] of Object.entries(item as Record<string, Json>)) {
      const tag = (op.tags?.[0] as string) ?? "other";
      byTag.set(tag, [...(byTag.get(tag) ?? []), operation(doc, path, method, op)]);
    }
  }
  return html`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>${doc.info.title}</title><style>${raw(STYLE)}</style></head>
<body><main>
<h1>${doc.info.title}</h1>
<p>${doc.info.description}</p>
<p>OpenAPI ${doc.openapi}: <a href="/v1/openapi.json">/v1/openapi.json</a> · the operator's console: <a href="/console">/console</a></p>
${[...byTag].map(([tag, ops]) => html`<h2 id="tag-${tag}">${tag}</h2>${ops}`)}
<h2>Schemas</h2>
${Object.entries(doc.components.schemas as Record<string, Json>).map(
  ([name, s]) =>
    html`<details id="schema-${name}"><summary><code>${name}</code></summary><pre>${JSON.stringify(s, null, 2)}</pre></details>`,
)}
</main></body></html>`;
}

export function mountReference(app: Hono<any>): void {
  route(app, OPERATIONS.openapi, (c) => c.json(openApiDocument()));
  // A browser page, not an operation of the API: listed as such in test/e2e/openapi.test.ts.
  app.get("/docs", (c) => {
    c.header("content-security-policy", "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'");
    return c.html(referencePage());
  });
}
