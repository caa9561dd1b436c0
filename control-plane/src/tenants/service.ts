/**
 * The control plane's operations on tenants and everything they own. Each returns
 * an outcome value (never throws for expected failures), runs in one transaction,
 * and publishes what changed for routers after it commits.
 */
import { randomBytes } from "node:crypto";
import { and, asc, eq, gt, inArray } from "drizzle-orm";
import {
  type AdminErrorCode,
  confusableSkeleton,
  generateApiKey,
  newId,
  normalizeHostname,
  signSession,
} from "@portcullis/shared";
import type { ControlPlaneConfig } from "../config.ts";
import { type Db, type Executor, nextVersion } from "../db/client.ts";
import { uniqueViolation } from "../db/errors.ts";
import {
  apiKeys,
  databaseBindings,
  databaseServers,
  hostnames,
  sessions,
  type TenantLimitsOverride,
  type TenantSettings,
  tenants,
  upstreams,
  users,
} from "../db/schema/index.ts";
import { checkCustomHostname, confusableWith, lockSkeletons } from "../domains/hostnames.ts";
import { type TxtLookup, verificationName, verificationValue } from "../domains/verify.ts";
import type { Publisher } from "../publish/index.ts";
import { effectiveFeatures, effectiveLimits } from "../records/index.ts";
import { PLANS } from "../plans.ts";
import { checkSlug, normalizeServer, normalizeUpstream } from "./validation.ts";

export type Outcome<T> = { ok: true; value: T } | { ok: false; code: AdminErrorCode; detail?: string };
const ok = <T>(value: T): Outcome<T> => ({ ok: true, value });
const fail = <T>(code: AdminErrorCode, detail?: string): Outcome<T> => ({ ok: false, code, detail });

type TenantRow = typeof tenants.$inferSelect;

export interface TenantView {
  id: string;
  slug: string;
  name: string;
  status: string;
  plan: string;
  limits: ReturnType<typeof effectiveLimits>;
  features: Record<string, boolean>;
  settings: TenantSettings;
  overrides: { limits: TenantLimitsOverride; features: Record<string, boolean> };
  hostnames: { hostname: string; kind: string; status: string }[];
  database: { server: string; database: string } | null;
  upstreams: string[];
  createdAt: string;
  updatedAt: string;
  /** The tenant's routing version: its `ETag`, for `If-Match` on updates. */
  version: number;
}

export interface TenantPatch {
  status?: "active" | "suspended";
  plan?: string;
  limits?: TenantLimitsOverride;
  features?: Record<string, boolean>;
  settings?: TenantSettings;
}

export interface Deps {
  db: Db;
  publisher: Publisher;
  config: Pick<ControlPlaneConfig, "platformDomain" | "apiHostname" | "sessionSecret" | "sessionCookie" | "sessionTtlSeconds">;
  txtLookup: TxtLookup;
  now?: () => Date;
}

/**
 * A tenant's branded subdomain: registered and verified when the tenant is created
 * (the platform owns the name), by the admin API and by `portcullis apply` alike.
 */
export async function insertPlatformHostname(tx: Executor, tenantId: string, subdomain: string, version: number, now: Date) {
  await tx.insert(hostnames).values({
    id: newId("hostname"),
    tenantId,
    hostname: subdomain,
    kind: "platform",
    status: "verified",
    verificationToken: randomBytes(16).toString("hex"),
    skeleton: confusableSkeleton(subdomain),
    verifiedAt: now,
    version,
  });
}

export class TenantService {
  readonly #db: Db;
  readonly #publisher: Publisher;
  readonly #config: Deps["config"];
  readonly #txt: TxtLookup;
  readonly #now: () => Date;

  constructor(deps: Deps) {
    this.#db = deps.db;
    this.#publisher = deps.publisher;
    this.#config = deps.config;
    this.#txt = deps.txtLookup;
    this.#now = deps.now ?? (() => new Date());
  }

  /**
   * `:tenant` in the admin API is an id or a slug. Inside a transaction the row is
   * locked (FOR UPDATE) until it commits: every read-modify-write of a tenant holds it,
   * so two concurrent updates run one after the other, each on the other's result (no
   * lost update), and take their routing versions in commit order.
   */
  async find(ref: string, executor: Executor = this.#db): Promise<TenantRow | null> {
    const query = executor
      .select()
      .from(tenants)
      .where(ref.startsWith("ten_") ? eq(tenants.id, ref) : eq(tenants.slug, ref));
    const [row] = executor === this.#db ? await query : await query.for("update");
    return row ?? null;
  }

  async view(row: TenantRow, executor: Executor = this.#db): Promise<TenantView> {
    return (await this.views([row], executor))[0] as TenantView;
  }

  /** The views of many tenants in four queries, whatever their number (a page of the list). */
  async views(rows: TenantRow[], executor: Executor = this.#db): Promise<TenantView[]> {
    if (rows.length === 0) return [];
    const ids = rows.map((r) => r.id);
    const [hosts, bindings, ups] = await Promise.all([
      executor
        .select({ tenantId: hostnames.tenantId, hostname: hostnames.hostname, kind: hostnames.kind, status: hostnames.status })
        .from(hostnames)
        .where(inArray(hostnames.tenantId, ids))
        .orderBy(asc(hostnames.createdAt), asc(hostnames.hostname)),
      executor
        .select({ tenantId: databaseBindings.tenantId, server: databaseServers.address, database: databaseBindings.database })
        .from(databaseBindings)
        .innerJoin(databaseServers, eq(databaseServers.id, databaseBindings.serverId))
        .where(inArray(databaseBindings.tenantId, ids)),
      executor
        .select({ tenantId: upstreams.tenantId, url: upstreams.url })
        .from(upstreams)
        .where(inArray(upstreams.tenantId, ids))
        .orderBy(asc(upstreams.position)),
    ]);
    const byTenant = <T extends { tenantId: string }>(list: T[]) => {
      const out = new Map<string, T[]>();
      for (const item of list) {
        const group = out.get(item.tenantId);
        if (group) group.push(item);
        else out.set(item.tenantId, [item]);
      }
      return out;
    };
    const hostsOf = byTenant(hosts);
    const bindingOf = byTenant(bindings);
    const upsOf = byTenant(ups);
    return rows.map((row) => {
      const binding = bindingOf.get(row.id)?.[0];
      return {
        id: row.id,
        slug: row.slug,
        name: row.name,
        status: row.status,
        plan: row.plan,
        limits: effectiveLimits(row),
        features: effectiveFeatures(row),
        settings: row.settings,
        overrides: { limits: row.limits, features: row.features },
        hostnames: (hostsOf.get(row.id) ?? []).map(({ hostname, kind, status }) => ({ hostname, kind, status })),
        database: binding ? { server: binding.server, database: binding.database } : null,
        upstreams: (upsOf.get(row.id) ?? []).map((u) => u.url),
        createdAt: row.createdAt.toISOString(),
        updatedAt: row.updatedAt.toISOString(),
        version: row.version,
      };
    });
  }

  /**
   * One page of tenants in slug order: at most `limit`, after the slug `after` (the
   * previous page's `next`); `next` is set when more follow.
   */
  async list(page: { limit: number; after?: string | undefined } = { limit: 1_000 }): Promise<{
    tenants: TenantView[];
    next: string | null;
  }> {
    const rows = await this.#db
      .select()
      .from(tenants)
      .where(page.after === undefined ? undefined : gt(tenants.slug, page.after))
      .orderBy(asc(tenants.slug))
      .limit(page.limit + 1);
    const more = rows.length > page.limit;
    const shown = more ? rows.slice(0, page.limit) : rows;
    return { tenants: await this.views(shown), next: more ? (shown.at(-1)?.slug ?? null) : null };
  }

  async get(ref: string): Promise<Outcome<TenantView>> {
    const row = await this.find(ref);
    return row ? ok(await this.view(row)) : fail("not_found");
  }

  async create(input: { slug: string; name: string; plan?: string | undefined }): Promise<Outcome<TenantView>> {
    const slugCheck = checkSlug(input.slug);
    if (slugCheck === "invalid") return fail("validation_failed", "slug must be 1-40 of a-z, 0-9 and single hyphens");
    if (slugCheck === "reserved") return fail("slug_reserved");
    const plan = input.plan ?? "free";
    if (!(plan in PLANS)) return fail("validation_failed", `plan must be one of ${Object.keys(PLANS).join(", ")}`);
    const subdomain = `${input.slug}.${this.#config.platformDomain}`;
    if (subdomain === this.#config.apiHostname) return fail("slug_reserved");
    const id = newId("tenant");
    try {
      const view = await this.#db.transaction(async (tx) => {
        const version = await nextVersion(tx);
        await tx.insert(tenants).values({ id, slug: input.slug, name: input.name, plan, version });
        await insertPlatformHostname(tx, id, subdomain, version, this.#now());
        const [row] = await tx.select().from(tenants).where(eq(tenants.id, id));
        return this.view(row as TenantRow, tx);
      });
      await this.#publisher.publish({ tenants: [id], hosts: [subdomain] });
      return ok(view);
    } catch (error) {
      const constraint = uniqueViolation(error);
      if (constraint?.includes("slug")) return fail("slug_taken");
      if (constraint?.includes("hostname")) return fail("hostname_taken", subdomain);
      throw error;
    }
  }

  /**
   * `ifMatch`: the version (ETag) the client last read; the update is made only if the
   * tenant is still at it, else `precondition_failed` (RFC 9110 §13.1.1).
   */
  async patch(ref: string, patch: TenantPatch, options: { ifMatch?: readonly number[] } = {}): Promise<Outcome<TenantView>> {
    if (patch.plan !== undefined && !(patch.plan in PLANS)) {
      return fail("validation_failed", `plan must be one of ${Object.keys(PLANS).join(", ")}`);
    }
    const result = await this.#db.transaction(async (tx) => {
      const row = await this.find(ref, tx);
      if (!row) return null;
      if (options.ifMatch !== undefined && !options.ifMatch.includes(row.version)) return "changed" as const;
      const version = await nextVersion(tx);
      const limits = patch.limits ? { ...row.limits, ...patch.limits } : row.limits;
      const features = patch.features ? { ...row.features, ...patch.features } : row.features;
      const settings = patch.settings
        ? {
            ...row.settings,
            ...patch.settings,
            branding: { ...(row.settings.branding ?? {}), ...(patch.settings.branding ?? {}) },
          }
        : row.settings;
      await tx
        .update(tenants)
        .set({
          status: patch.status ?? row.status,
          plan: patch.plan ?? row.plan,
          limits,
          features,
          settings,
          version,
          updatedAt: this.#now(),
        })
        .where(eq(tenants.id, row.id));
      const [updated] = await tx.select().from(tenants).where(eq(tenants.id, row.id));
      const keys = await tx.select({ hash: apiKeys.hash }).from(apiKeys).where(eq(apiKeys.tenantId, row.id));
      return { before: row, view: await this.view(updated as TenantRow, tx), keys: keys.map((k) => k.hash) };
    });
    if (!result) return fail("not_found");
    if (result === "changed") return fail("precondition_failed");
    // Status matters to key and session checks too: publish the tenant's keys with it.
    await this.#publisher.publish({ tenants: [result.view.id], keys: result.keys });
    return ok(result.view);
  }

  async delete(ref: string): Promise<Outcome<{ id: string }>> {
    const result = await this.#db.transaction(async (tx) => {
      const row = await this.find(ref, tx);
      if (!row) return null;
      const hosts = await tx.select({ h: hostnames.hostname }).from(hostnames).where(eq(hostnames.tenantId, row.id));
      const keys = await tx.select({ h: apiKeys.hash }).from(apiKeys).where(eq(apiKeys.tenantId, row.id));
      const sess = await tx.select({ id: sessions.id }).from(sessions).where(eq(sessions.tenantId, row.id));
      const [binding] = await tx.select().from(databaseBindings).where(eq(databaseBindings.tenantId, row.id));
      await tx.delete(tenants).where(eq(tenants.id, row.id));
      // The server row is released too, so another tenant may be bound to it later.
      if (binding) await tx.delete(databaseServers).where(eq(databaseServers.id, binding.serverId));
      return { id: row.id, hosts: hosts.map((h) => h.h), keys: keys.map((k) => k.h), sessions: sess.map((s) => s.id) };
    });
    if (!result) return fail("not_found");
    await this.#publisher.publish({ tenants: [result.id], hosts: result.hosts, keys: result.keys, sessions: result.sessions });
    return ok({ id: result.id });
  }

  async putDatabase(
    ref: string,
    input: { server: string; database: string },
  ): Promise<Outcome<{ server: string; database: string }>> {
    const canonical = normalizeServer(input.server);
    if (!canonical.ok) return fail("validation_failed", canonical.detail);
    const server = canonical.server;
    if (!/^[A-Za-z0-9_][A-Za-z0-9_$-]{0,62}$/.test(input.database)) {
      return fail("validation_failed", "database must be a plain database name");
    }
    try {
      const result = await this.#db.transaction(async (tx) => {
        const row = await this.find(ref, tx);
        if (!row) return null;
        const [existing] = await tx.select().from(databaseServers).where(eq(databaseServers.address, server));
        const [current] = await tx.select().from(databaseBindings).where(eq(databaseBindings.tenantId, row.id));
        let serverId = existing?.id;
        if (!serverId) {
          serverId = newId("server");
          await tx.insert(databaseServers).values({ id: serverId, address: server });
        }
        if (current) {
          await tx
            .update(databaseBindings)
            .set({ serverId, database: input.database })
            .where(eq(databaseBindings.tenantId, row.id));
          if (current.serverId !== serverId) await tx.delete(databaseServers).where(eq(databaseServers.id, current.serverId));
        } else {
          await tx.insert(databaseBindings).values({ tenantId: row.id, serverId, database: input.database });
        }
        await tx
          .update(tenants)
          .set({ version: await nextVersion(tx), updatedAt: this.#now() })
          .where(eq(tenants.id, row.id));
        const keys = await tx.select({ h: apiKeys.hash }).from(apiKeys).where(eq(apiKeys.tenantId, row.id));
        return { id: row.id, keys: keys.map((k) => k.h) };
      });
      if (!result) return fail("not_found");
      await this.#publisher.publish({ tenants: [result.id], keys: result.keys });
      return ok({ server, database: input.database });
    } catch (error) {
      if (uniqueViolation(error)) return fail("server_taken", server);
      throw error;
    }
  }

  async putUpstreams(ref: string, urls: string[]): Promise<Outcome<{ urls: string[] }>> {
    const normalized: string[] = [];
    for (const url of urls) {
      const n = normalizeUpstream(url);
      if (!n) return fail("validation_failed", `not an upstream origin: ${url}`);
      if (!normalized.includes(n)) normalized.push(n);
    }
    const id = await this.#db.transaction(async (tx) => {
      const row = await this.find(ref, tx);
      if (!row) return null;
      await tx.delete(upstreams).where(eq(upstreams.tenantId, row.id));
      if (normalized.length > 0) {
        await tx
          .insert(upstreams)
          .values(normalized.map((url, position) => ({ id: newId("upstream"), tenantId: row.id, url, position })));
      }
      await tx
        .update(tenants)
        .set({ version: await nextVersion(tx), updatedAt: this.#now() })
        .where(eq(tenants.id, row.id));
      return row.id;
    });
    if (!id) return fail("not_found");
    await this.#publisher.publish({ tenants: [id] });
    return ok({ urls: normalized });
  }

  // ---- custom hostnames --------------------------------------------------------

  /** The normalized form of a custom hostname, or why it cannot be one. */
  normalizeCustomHostname(input: string): Outcome<string> {
    const checked = checkCustomHostname(input, this.#config);
    return checked.ok ? ok(checked.hostname) : fail(checked.code, checked.detail);
  }

  async addHostname(ref: string, input: string) {
    const name = this.normalizeCustomHostname(input);
    if (!name.ok) return name;
    const hostname = name.value;
    const skeleton = confusableSkeleton(hostname);
    const token = randomBytes(20).toString("hex");
    try {
      const result = await this.#db.transaction(async (tx) => {
        const row = await this.find(ref, tx);
        if (!row) return { code: "not_found" as const };
        await lockSkeletons(tx, [hostname]);
        const lookalikes = await tx
          .select({ hostname: hostnames.hostname, tenantId: hostnames.tenantId })
          .from(hostnames)
          .where(eq(hostnames.skeleton, skeleton));
        // A tenant may own look-alikes of its own names; another tenant's is a homoglyph attack.
        const confusable = lookalikes.find((l) => l.tenantId !== row.id && confusableWith(hostname, l.hostname));
        if (confusable) return { code: "hostname_confusable" as const, detail: confusable.hostname };
        await tx.insert(hostnames).values({
          id: newId("hostname"),
          tenantId: row.id,
          hostname,
          kind: "custom",
          status: "pending",
          verificationToken: token,
          skeleton,
          version: await nextVersion(tx),
        });
        return { code: "ok" as const, tenantId: row.id };
      });
      if (result.code !== "ok") return fail(result.code, "detail" in result ? result.detail : undefined);
      await this.#publisher.publish({ hosts: [hostname] });
      return ok({
        hostname,
        status: "pending" as const,
        verification: { type: "dns-txt" as const, name: verificationName(hostname), value: verificationValue(token) },
      });
    } catch (error) {
      if (uniqueViolation(error)) return fail("hostname_taken", hostname);
      throw error;
    }
  }

  async #ownedHostname(ref: string, input: string, executor: Executor = this.#db) {
    const row = await this.find(ref, executor);
    if (!row) return null;
    const n = normalizeHostname(input, { allowUnicode: true, allowPort: true });
    if (!n.ok) return null;
    const [host] = await executor
      .select()
      .from(hostnames)
      .where(and(eq(hostnames.tenantId, row.id), eq(hostnames.hostname, n.hostname)));
    return host ? { tenant: row, host } : null;
  }

  async verifyHostname(ref: string, input: string): Promise<Outcome<{ hostname: string; status: "verified" }>> {
    const found = await this.#ownedHostname(ref, input);
    if (!found) return fail("not_found");
    const { host } = found;
    if (host.kind === "platform") return ok({ hostname: host.hostname, status: "verified" });
    const answer = await this.#txt(verificationName(host.hostname));
    const expected = verificationValue(host.verificationToken);
    if (!answer.ok) return fail("verification_failed", answer.code === "not_found" ? "no TXT record found" : "DNS lookup failed");
    if (!answer.records.includes(expected)) return fail("verification_failed", "the TXT record does not hold the expected value");
    await this.#db
      .update(hostnames)
      .set({
        status: "verified",
        verifiedAt: this.#now(),
        lastCheckedAt: this.#now(),
        missingSince: null,
        version: await nextVersion(this.#db),
      })
      .where(eq(hostnames.id, host.id));
    await this.#publisher.publish({ hosts: [host.hostname] });
    return ok({ hostname: host.hostname, status: "verified" });
  }

  async deleteHostname(ref: string, input: string): Promise<Outcome<null>> {
    const found = await this.#ownedHostname(ref, input);
    if (!found) return fail("not_found");
    if (found.host.kind === "platform") return fail("platform_hostname");
    await this.#db.delete(hostnames).where(eq(hostnames.id, found.host.id));
    await this.#publisher.publish({ hosts: [found.host.hostname] });
    return ok(null);
  }

  // ---- API keys ------------------------------------------------------------------

  async createKey(
    ref: string,
    input: {
      name?: string | undefined;
      expiresAt?: string | undefined;
      limits?: { requestsPerSecond: number; burst?: number | null | undefined } | undefined;
    },
  ) {
    const row = await this.find(ref);
    if (!row) return fail<never>("not_found");
    let expiresAt: Date | null = null;
    if (input.expiresAt !== undefined) {
      expiresAt = new Date(input.expiresAt);
      if (Number.isNaN(expiresAt.getTime())) return fail<never>("validation_failed", "expiresAt must be an ISO 8601 time");
      if (expiresAt.getTime() <= this.#now().getTime())
        return fail<never>("validation_failed", "expiresAt must be in the future");
    }
    const limits = input.limits ? { requestsPerSecond: input.limits.requestsPerSecond, burst: input.limits.burst ?? null } : null;
    const generated = generateApiKey();
    const id = newId("key");
    await this.#db.insert(apiKeys).values({
      id,
      tenantId: row.id,
      hash: generated.hash,
      prefix: generated.prefix,
      name: input.name ?? null,
      expiresAt,
      rateLimitRps: limits?.requestsPerSecond ?? null,
      rateLimitBurst: limits?.burst ?? null,
      version: await nextVersion(this.#db),
    });
    // Purges a cached "unknown key" for this hash (vanishingly unlikely, but cheap).
    await this.#publisher.publish({ keys: [generated.hash] });
    return ok({
      id,
      key: generated.key,
      prefix: generated.prefix,
      name: input.name ?? null,
      expiresAt: expiresAt?.toISOString() ?? null,
      limits,
    });
  }

  async listKeys(ref: string) {
    const row = await this.find(ref);
    if (!row) return fail<never>("not_found");
    const keys = await this.#db
      .select({
        id: apiKeys.id,
        prefix: apiKeys.prefix,
        name: apiKeys.name,
        createdAt: apiKeys.createdAt,
        expiresAt: apiKeys.expiresAt,
        revokedAt: apiKeys.revokedAt,
        lastUsedAt: apiKeys.lastUsedAt,
        rateLimitRps: apiKeys.rateLimitRps,
        rateLimitBurst: apiKeys.rateLimitBurst,
      })
      .from(apiKeys)
      .where(eq(apiKeys.tenantId, row.id))
      .orderBy(asc(apiKeys.createdAt));
    const now = this.#now().getTime();
    return ok(
      keys.map(({ rateLimitRps, rateLimitBurst, ...k }) => ({
        ...k,
        limits: rateLimitRps === null ? null : { requestsPerSecond: rateLimitRps, burst: rateLimitBurst },
        status: k.revokedAt ? "revoked" : k.expiresAt && k.expiresAt.getTime() <= now ? "expired" : "active",
      })),
    );
  }

  async revokeKey(ref: string, keyId: string): Promise<Outcome<null>> {
    const row = await this.find(ref);
    if (!row) return fail("not_found");
    const [key] = await this.#db
      .select()
      .from(apiKeys)
      .where(and(eq(apiKeys.id, keyId), eq(apiKeys.tenantId, row.id)));
    if (!key) return fail("not_found");
    if (!key.revokedAt) {
      await this.#db
        .update(apiKeys)
        .set({ revokedAt: this.#now(), version: await nextVersion(this.#db) })
        .where(eq(apiKeys.id, key.id));
    }
    await this.#publisher.publish({ keys: [key.hash] });
    return ok(null);
  }

  /** Record last use of keys (batched by the key service; no write per request). */
  async touchKeys(ids: string[], at: Date): Promise<void> {
    if (ids.length === 0) return;
    await this.#db.update(apiKeys).set({ lastUsedAt: at }).where(inArray(apiKeys.id, ids));
  }

  // ---- users and sessions --------------------------------------------------------

  async createUser(ref: string, input: { email: string }) {
    const row = await this.find(ref);
    if (!row) return fail<never>("not_found");
    const email = input.email.trim().toLowerCase();
    const id = newId("user");
    try {
      await this.#db.insert(users).values({ id, tenantId: row.id, email });
    } catch (error) {
      if (uniqueViolation(error)) return fail<never>("email_taken");
      throw error;
    }
    return ok({ id, tenantId: row.id, email });
  }

  async createSession(ref: string, userId: string) {
    const row = await this.find(ref);
    if (!row) return fail<never>("not_found");
    const [user] = await this.#db
      .select()
      .from(users)
      .where(and(eq(users.id, userId), eq(users.tenantId, row.id)));
    if (!user) return fail<never>("not_found");
    const id = newId("session");
    const expiresAt = new Date(this.#now().getTime() + this.#config.sessionTtlSeconds * 1000);
    await this.#db.insert(sessions).values({
      id,
      tenantId: row.id,
      userId: user.id,
      expiresAt,
      version: await nextVersion(this.#db),
    });
    await this.#publisher.publish({ sessions: [id] });
    const token = signSession(
      { sid: id, tid: row.id, uid: user.id, exp: Math.floor(expiresAt.getTime() / 1000) },
      this.#config.sessionSecret,
    );
    return ok({ id, token, cookie: `${this.#config.sessionCookie}=${token}`, expiresAt: expiresAt.toISOString() });
  }

  async revokeSession(ref: string, sessionId: string): Promise<Outcome<null>> {
    const row = await this.find(ref);
    if (!row) return fail("not_found");
    const [session] = await this.#db
      .select()
      .from(sessions)
      .where(and(eq(sessions.id, sessionId), eq(sessions.tenantId, row.id)));
    if (!session) return fail("not_found");
    await this.#db
      .update(sessions)
      .set({ revokedAt: this.#now(), version: await nextVersion(this.#db) })
      .where(eq(sessions.id, session.id));
    await this.#publisher.publish({ sessions: [session.id] });
    return ok(null);
  }
}
