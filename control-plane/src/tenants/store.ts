/**
 * What the tenant operations are given: `Deps` as callers pass them to
 * `TenantService`, and `TenantStore`, the same with the clock defaulted, which every
 * operation module in this folder takes as its first argument.
 */
import type { ControlPlaneConfig } from "../config.ts";
import type { Db } from "../db/client.ts";
import type { TxtLookup } from "../domains/verify.ts";
import type { Publisher } from "../publish/index.ts";

export interface Deps {
  db: Db;
  publisher: Publisher;
  config: Pick<ControlPlaneConfig, "platformDomain" | "apiHostname" | "sessionSecret" | "sessionCookie" | "sessionTtlSeconds">;
  txtLookup: TxtLookup;
  now?: () => Date;
}

export interface TenantStore {
  readonly db: Db;
  readonly publisher: Publisher;
  readonly config: Deps["config"];
  readonly txt: TxtLookup;
  readonly now: () => Date;
}

export function tenantStore(deps: Deps): TenantStore {
  return {
    db: deps.db,
    publisher: deps.publisher,
    config: deps.config,
    txt: deps.txtLookup,
    now: deps.now ?? (() => new Date()),
  };
}
