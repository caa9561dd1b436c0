/**
 * A tenant's public branding as JSON, answered by the router itself (never the
 * upstream) at `BRANDING_PATH` on the tenant's hostnames, for its own pages to read.
 */
import type { TenantRecord } from "@portcullis/shared";
import { COLOUR } from "./page.ts";

export const BRANDING_PATH = "/.well-known/portcullis/branding.json";

const jsonCache = new WeakMap<TenantRecord, string>();

/** The tenant's public branding as JSON (built once per record). */
export function brandingJson(tenant: TenantRecord): string {
  let json = jsonCache.get(tenant);
  if (json === undefined) {
    const b = tenant.settings.branding;
    json = JSON.stringify({
      displayName: b.displayName ?? tenant.slug,
      logoUrl: b.logoUrl ?? null,
      primaryColor: b.primaryColor !== undefined && COLOUR.test(b.primaryColor) ? b.primaryColor : null,
    });
    jsonCache.set(tenant, json);
  }
  return json;
}
