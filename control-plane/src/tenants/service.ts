/**
 * The control plane's operations on tenants and everything they own, as the one
 * `TenantService` the admin API, the key service and the jobs are given. Each
 * operation returns an outcome value (never throws for expected failures), runs in
 * one transaction, and publishes what changed for routers after it commits.
 *
 * The operations live by concern beside this file: `views.ts` (finding and showing
 * tenants), `lifecycle.ts` (the tenant row), `bindings.ts` (database and upstreams),
 * `hostnames.ts`, `keys.ts` and `users.ts` (users and sessions); this class holds
 * their dependencies and hands them in.
 */
import type { Executor } from "../db/client.ts";
import { putDatabase, putUpstreams } from "./bindings.ts";
import { addHostname, deleteHostname, listHostnames, normalizeCustomHostname, verifyHostname } from "./hostnames.ts";
import { createKey, listKeys, revokeKey, touchKeys } from "./keys.ts";
import {
  createTenant,
  deleteTenant,
  getTenant,
  listTenants,
  patchTenant,
  type TenantListQuery,
  type TenantPatch,
} from "./lifecycle.ts";
import { type Deps, type TenantStore, tenantStore } from "./store.ts";
import { createSession, createUser, revokeSession } from "./users.ts";
import { findTenant, type TenantRow, tenantView, tenantViews } from "./views.ts";

export { insertPlatformHostname } from "./hostnames.ts";
export type { TenantPatch } from "./lifecycle.ts";
export type { Outcome } from "./outcome.ts";
export type { Deps } from "./store.ts";
export type { TenantView } from "./views.ts";

export class TenantService {
  readonly #s: TenantStore;

  constructor(deps: Deps) {
    this.#s = tenantStore(deps);
  }

  /** See `findTenant`: by id or slug, locked until commit when `executor` is a transaction. */
  find(ref: string, executor?: Executor) {
    return findTenant(this.#s, ref, executor);
  }

  view(row: TenantRow, executor?: Executor) {
    return tenantView(this.#s, row, executor);
  }

  views(rows: TenantRow[], executor?: Executor) {
    return tenantViews(this.#s, rows, executor);
  }

  // ---- the tenant row ----------------------------------------------------------

  list(page?: TenantListQuery) {
    return listTenants(this.#s, page);
  }

  get(ref: string) {
    return getTenant(this.#s, ref);
  }

  create(input: { slug: string; name: string; plan?: string | undefined }) {
    return createTenant(this.#s, input);
  }

  patch(ref: string, patch: TenantPatch, options?: { ifMatch?: readonly number[] }) {
    return patchTenant(this.#s, ref, patch, options);
  }

  delete(ref: string) {
    return deleteTenant(this.#s, ref);
  }

  // ---- database and upstreams --------------------------------------------------

  putDatabase(ref: string, input: { server: string; database: string }) {
    return putDatabase(this.#s, ref, input);
  }

  putUpstreams(ref: string, urls: string[]) {
    return putUpstreams(this.#s, ref, urls);
  }

  // ---- hostnames ---------------------------------------------------------------

  normalizeCustomHostname(input: string) {
    return normalizeCustomHostname(this.#s, input);
  }

  addHostname(ref: string, input: string) {
    return addHostname(this.#s, ref, input);
  }

  listHostnames(ref: string) {
    return listHostnames(this.#s, ref);
  }

  verifyHostname(ref: string, input: string) {
    return verifyHostname(this.#s, ref, input);
  }

  deleteHostname(ref: string, input: string) {
    return deleteHostname(this.#s, ref, input);
  }

  // ---- API keys ----------------------------------------------------------------

  createKey(ref: string, input: Parameters<typeof createKey>[2]) {
    return createKey(this.#s, ref, input);
  }

  listKeys(ref: string) {
    return listKeys(this.#s, ref);
  }

  revokeKey(ref: string, keyId: string) {
    return revokeKey(this.#s, ref, keyId);
  }

  touchKeys(ids: string[], at: Date) {
    return touchKeys(this.#s, ids, at);
  }

  // ---- users and sessions ------------------------------------------------------

  createUser(ref: string, input: { email: string }) {
    return createUser(this.#s, ref, input);
  }

  createSession(ref: string, userId: string) {
    return createSession(this.#s, ref, userId);
  }

  revokeSession(ref: string, sessionId: string) {
    return revokeSession(this.#s, ref, sessionId);
  }
}
