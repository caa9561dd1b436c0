/**
 * Preflight: what applying a tenant file would do, and every conflict that stops it.
 * Pure: it compares the normalized file with a snapshot of the live system, so the
 * same function answers `--dry-run`, guards the real apply inside its transaction,
 * and is unit-tested without a database.
 *
 * The rule for a tenant in the file: a field written is the truth, a field left
 * out is left as it is (hostnames listed are the tenant's whole set of custom
 * domains; tenants not in the file are not touched). Conflicts are judged on the
 * end state, so moving a name or a server between two tenants of one file is fine.
 */
import { confusableWith } from "../domains/hostnames.ts";
import type { NormalizedTenant } from "./spec.ts";

export interface LiveState {
  tenants: { id: string; slug: string; name: string; plan: string }[];
  hosts: { hostname: string; tenantSlug: string; kind: "platform" | "custom"; status: string }[];
  bindings: { tenantSlug: string; server: string; database: string }[];
  upstreams: { tenantSlug: string; urls: string[] }[];
}

export type ConflictKind =
  | "duplicate_hostname"
  | "hostname_owned"
  | "hostname_confusable"
  | "server_shared"
  | "server_bound"
  | "binding_missing"
  /** A concurrent admin call took a name or server between the check and the write (the database refused it). */
  | "concurrent_change";

export interface Owner {
  tenant: string;
  source: "file" | "live";
  /** The spelling in the file, when it differs from the normalized name. */
  as?: string;
}

export interface Conflict {
  kind: ConflictKind;
  /** The hostname, the database server, or the tenant concerned. */
  subject: string;
  owners: Owner[];
  message: string;
}

export interface PlannedChange {
  action: "create_tenant" | "update_tenant" | "add_hostname" | "remove_hostname" | "bind_database" | "set_upstreams";
  tenant: string;
  detail: string;
}

export interface Plan {
  conflicts: Conflict[];
  changes: PlannedChange[];
}

const who = (o: Owner) => `tenant ${o.tenant} (${o.source}${o.as !== undefined ? `, as ${JSON.stringify(o.as)}` : ""})`;

export function planApply(file: NormalizedTenant[], live: LiveState): Plan {
  const conflicts: Conflict[] = [];
  const changes: PlannedChange[] = [];
  const inFile = new Map(file.map((t) => [t.slug, t]));
  const liveTenant = new Map(live.tenants.map((t) => [t.slug, t]));
  const liveBinding = new Map(live.bindings.map((b) => [b.tenantSlug, b]));

  // -- hostnames: duplicates inside the file --------------------------------------
  const claims = new Map<string, Owner[]>();
  for (const t of file) {
    for (const h of t.hostnames ?? []) {
      const list = claims.get(h.hostname) ?? [];
      list.push({ tenant: t.slug, source: "file", ...(h.as !== h.hostname ? { as: h.as } : {}) });
      claims.set(h.hostname, list);
    }
  }
  for (const [hostname, owners] of claims) {
    if (owners.length < 2) continue;
    conflicts.push({
      kind: "duplicate_hostname",
      subject: hostname,
      owners,
      message: `duplicate hostname ${hostname}: claimed by ${owners.map(who).join(" and by ")}`,
    });
  }

  // -- hostnames: the end state against live owners ---------------------------------
  // A live custom name stays with its owner unless the file rewrites that owner's list without it.
  const released = (h: LiveState["hosts"][number]) => {
    const t = inFile.get(h.tenantSlug);
    return h.kind === "custom" && t?.hostnames !== undefined && !t.hostnames.some((x) => x.hostname === h.hostname);
  };
  const endHosts: { hostname: string; owner: Owner }[] = live.hosts
    .filter((h) => !released(h))
    .map((h) => ({ hostname: h.hostname, owner: { tenant: h.tenantSlug, source: "live" as const } }));
  const liveOwner = new Map(endHosts.map((h) => [h.hostname, h.owner]));
  for (const [hostname, owners] of claims) {
    const ownerLive = liveOwner.get(hostname);
    for (const claim of owners) {
      if (ownerLive && ownerLive.tenant !== claim.tenant) {
        conflicts.push({
          kind: "hostname_owned",
          subject: hostname,
          owners: [claim, ownerLive],
          message: `hostname ${hostname}: claimed by ${who(claim)} but owned by ${who(ownerLive)}`,
        });
      }
    }
  }
  // Homoglyphs of another tenant's name (either in the file or live), which the admin API refuses too.
  const everyName = [...endHosts, ...[...claims].flatMap(([hostname, owners]) => owners.map((owner) => ({ hostname, owner })))];
  const reported = new Set<string>();
  for (const [hostname, owners] of claims) {
    for (const claim of owners) {
      for (const other of everyName) {
        if (other.owner.tenant === claim.tenant || !confusableWith(hostname, other.hostname)) continue;
        const key = [hostname, other.hostname].sort().join(" ");
        if (reported.has(key)) continue;
        reported.add(key);
        conflicts.push({
          kind: "hostname_confusable",
          subject: hostname,
          owners: [claim, other.owner],
          message: `confusable hostname ${hostname}: claimed by ${who(claim)} looks like ${other.hostname} of ${who(other.owner)}`,
        });
      }
    }
  }

  // -- database servers ---------------------------------------------------------------
  const endBinding = (slug: string) => inFile.get(slug)?.database ?? liveBinding.get(slug);
  const serverClaims = new Map<string, Owner[]>();
  for (const t of file) {
    if (!t.database) continue;
    const list = serverClaims.get(t.database.server) ?? [];
    list.push({ tenant: t.slug, source: "file" });
    serverClaims.set(t.database.server, list);
  }
  for (const [server, owners] of serverClaims) {
    if (owners.length > 1) {
      conflicts.push({
        kind: "server_shared",
        subject: server,
        owners,
        message: `database server ${server}: bound to ${owners.map(who).join(" and to ")}`,
      });
    }
    for (const b of live.bindings) {
      if (b.server !== server || owners.some((o) => o.tenant === b.tenantSlug)) continue;
      // Still bound at the end unless the file moves that tenant to another server.
      if (endBinding(b.tenantSlug)?.server !== server) continue;
      const ownerLive: Owner = { tenant: b.tenantSlug, source: "live" };
      for (const claim of owners) {
        conflicts.push({
          kind: "server_bound",
          subject: server,
          owners: [claim, ownerLive],
          message: `database server ${server}: wanted by ${who(claim)} but bound to ${who(ownerLive)}`,
        });
      }
    }
  }
  for (const t of file) {
    if (endBinding(t.slug)) continue;
    conflicts.push({
      kind: "binding_missing",
      subject: t.slug,
      owners: [{ tenant: t.slug, source: "file" }],
      message: `tenant ${t.slug} has no database binding: set database: {server, database} (a tenant without one cannot serve traffic)`,
    });
  }

  // -- the changes --------------------------------------------------------------------
  for (const t of file) {
    const current = liveTenant.get(t.slug);
    if (!current)
      changes.push({
        action: "create_tenant",
        tenant: t.slug,
        detail: `name ${JSON.stringify(t.name)}, plan ${t.plan ?? "free"}`,
      });
    else {
      const diffs: string[] = [];
      if (current.name !== t.name) diffs.push(`name ${JSON.stringify(current.name)} → ${JSON.stringify(t.name)}`);
      if (t.plan !== undefined && current.plan !== t.plan) diffs.push(`plan ${current.plan} → ${t.plan}`);
      if (diffs.length > 0) changes.push({ action: "update_tenant", tenant: t.slug, detail: diffs.join(", ") });
    }
    if (t.hostnames) {
      const have = new Set(live.hosts.filter((h) => h.tenantSlug === t.slug && h.kind === "custom").map((h) => h.hostname));
      const want = new Set(t.hostnames.map((h) => h.hostname));
      for (const h of want)
        if (!have.has(h)) changes.push({ action: "add_hostname", tenant: t.slug, detail: `${h} (pending verification)` });
      for (const h of have) if (!want.has(h)) changes.push({ action: "remove_hostname", tenant: t.slug, detail: h });
    }
    if (t.database) {
      const b = liveBinding.get(t.slug);
      if (!b || b.server !== t.database.server || b.database !== t.database.database) {
        changes.push({ action: "bind_database", tenant: t.slug, detail: `${t.database.server}/${t.database.database}` });
      }
    }
    if (t.upstreams) {
      const cur = live.upstreams.find((u) => u.tenantSlug === t.slug)?.urls ?? [];
      if (cur.join(" ") !== t.upstreams.join(" "))
        changes.push({ action: "set_upstreams", tenant: t.slug, detail: t.upstreams.join(", ") });
    }
  }
  return { conflicts, changes };
}
