/**
 * The declarative tenant file (contract: "Declarative configuration and preflight"):
 * its schema, its YAML parsing, and its normalization through the same rules the
 * admin API applies — slugs, the shared hostname normalizer, `host:port` servers,
 * upstream origins. Shared by the CLI (which refuses an invalid file with exit 2
 * before contacting anything) and by `POST /v1/apply` (which also knows the
 * platform domain and the API hostname).
 */
import { parseDocument } from "yaml";
import { z } from "zod";
import { checkCustomHostname, type PlatformNames } from "../domains/hostnames.ts";
import { PLANS } from "../plans.ts";
import { checkSlug, normalizeServer, normalizeUpstream } from "../tenants/validation.ts";

export const TenantSpec = z
  .object({
    slug: z.string().min(1).max(40),
    name: z.string().min(1).max(200),
    plan: z.string().optional(),
    hostnames: z.array(z.string().min(1).max(300)).max(1000).optional(),
    database: z
      .object({ server: z.string().min(3).max(300), database: z.string().min(1).max(63) })
      .strict()
      .optional(),
    upstreams: z.array(z.string().max(2000)).min(1).max(64).optional(),
  })
  .strict();
export type TenantSpec = z.infer<typeof TenantSpec>;

export const TenantFile = z.object({ tenants: z.array(TenantSpec).max(10_000) }).strict();
export type TenantFile = z.infer<typeof TenantFile>;

/** The body of `POST /v1/apply`: the parsed file plus whether to change anything. */
export const ApplyRequest = TenantFile.extend({ dryRun: z.boolean().default(false) }).strict();
export type ApplyRequest = z.infer<typeof ApplyRequest>;

export interface NormalizedTenant {
  slug: string;
  name: string;
  plan: string | undefined;
  /** In file order, duplicates kept (preflight reports them); `as` is how the file spelled it. */
  hostnames: { hostname: string; as: string }[] | undefined;
  database: { server: string; database: string } | undefined;
  upstreams: string[] | undefined;
}

export type Normalized = { ok: true; tenants: NormalizedTenant[] } | { ok: false; issues: string[] };

const issueText = (issues: z.core.$ZodIssue[]) =>
  issues.map((i) => `${i.path.length > 0 ? i.path.join(".") : "file"}: ${i.message}`);

/** Parse YAML (or JSON, which is YAML) into the file schema. */
export function parseTenantFile(text: string): { ok: true; file: TenantFile } | { ok: false; issues: string[] } {
  const doc = parseDocument(text, { uniqueKeys: true, prettyErrors: true });
  if (doc.errors.length > 0) return { ok: false, issues: doc.errors.map((e) => `YAML: ${e.message.split("\n")[0]}`) };
  const parsed = TenantFile.safeParse(doc.toJS());
  if (!parsed.success) return { ok: false, issues: issueText(parsed.error.issues) };
  return { ok: true, file: parsed.data };
}

/**
 * Normalize every name in the file; collect every problem rather than the first.
 * `platform` is null in the CLI, which does not know the platform domain: the
 * control plane checks those names again when it receives the file.
 */
export function normalizeTenantFile(file: TenantFile, platform: PlatformNames | null): Normalized {
  const issues: string[] = [];
  const seen = new Map<string, number>();
  const tenants: NormalizedTenant[] = [];
  file.tenants.forEach((t, i) => {
    const at = `tenants.${i} (${t.slug})`;
    const slug = checkSlug(t.slug);
    if (slug === "invalid") issues.push(`${at}: slug must be 1-40 of a-z, 0-9 and single hyphens`);
    if (slug === "reserved") issues.push(`${at}: slug ${t.slug} is reserved for the platform`);
    if (platform && `${t.slug}.${platform.platformDomain}` === platform.apiHostname) {
      issues.push(`${at}: slug ${t.slug} would take the API hostname`);
    }
    const first = seen.get(t.slug);
    if (first !== undefined) issues.push(`${at}: tenant ${t.slug} is listed twice (also tenants.${first})`);
    else seen.set(t.slug, i);
    if (t.plan !== undefined && !(t.plan in PLANS)) {
      issues.push(`${at}: plan must be one of ${Object.keys(PLANS).join(", ")}`);
    }
    let hostnames: NormalizedTenant["hostnames"];
    if (t.hostnames) {
      hostnames = [];
      for (const input of t.hostnames) {
        const checked = checkCustomHostname(input, platform);
        if (checked.ok) hostnames.push({ hostname: checked.hostname, as: input });
        else issues.push(`${at}: hostname ${checked.detail}`);
      }
    }
    let database: NormalizedTenant["database"];
    if (t.database) {
      const canonical = normalizeServer(t.database.server);
      const server = canonical.ok ? canonical.server : null;
      if (!canonical.ok) issues.push(`${at}: ${canonical.detail}`);
      if (!/^[A-Za-z0-9_][A-Za-z0-9_$-]{0,62}$/.test(t.database.database)) {
        issues.push(`${at}: database must be a plain database name`);
      }
      if (server) database = { server, database: t.database.database };
    }
    let upstreams: string[] | undefined;
    if (t.upstreams) {
      upstreams = [];
      for (const url of t.upstreams) {
        const n = normalizeUpstream(url);
        if (!n) issues.push(`${at}: not an upstream origin: ${url}`);
        else if (!upstreams.includes(n)) upstreams.push(n);
      }
    }
    tenants.push({ slug: t.slug, name: t.name, plan: t.plan, hostnames, database, upstreams });
  });
  return issues.length > 0 ? { ok: false, issues } : { ok: true, tenants };
}
