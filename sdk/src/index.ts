/**
 * @portcullis/sdk: the app side of tenant isolation.
 *
 *   verify / verifyNode      trust a request's tenant only through the router's signature
 *   withTenant               every statement in a transaction scoped by row-level security
 *   tenantDatabases          bounded connection registry keyed by the tenant's database binding
 *   tenantRlsStatements      the migration that enables, forces and writes the tenant policy
 *   checkTenantRls           CI: tables with a tenant column that RLS does not fully guard
 *   enqueueForTenant / runForTenant / jobWorker   jobs that carry a signed tenant
 *
 * Test helpers (a signer standing in for the router, the route guard): `@portcullis/sdk/testing`.
 */
export * from "./context/index.ts";
export {
  CONTEXT_REFUSALS,
  type ContextRefusal,
  JOB_REFUSALS,
  type JobRefusal,
  PortcullisSdkError,
  REFUSAL_MESSAGE,
  USAGE_ERRORS,
  type UsageError,
} from "./errors.ts";
export { AUTH_KINDS, type AuthKind, type DatabaseBinding, isVerifiedTenant, parseBinding, type Tenant } from "./tenant.ts";
export { createVerifier, type Verification, type Verifier, type VerifyOptions } from "./verify/core.ts";
export { type TenantEnv, verify } from "./verify/hono.ts";
export { type NodeVerify, tenantOf, verifyNode } from "./verify/node.ts";
export { type AnyPgDatabase, TENANT_SETTING, type TransactionOf, withTenant, type WithTenantOptions } from "./db/with-tenant.ts";
export {
  type OpenedDatabase,
  postgresJs,
  type PostgresJsOptions,
  type TenantDatabases,
  tenantDatabases,
  type TenantDatabasesOptions,
} from "./db/registry.ts";
export {
  checkTenantRls,
  type Query,
  queryOf,
  quoteIdent,
  quoteLiteral,
  type RlsCheckOptions,
  type RlsOptions,
  type RlsProblem,
  type RlsProblemCode,
  tenantRlsSql,
  tenantRlsStatements,
} from "./db/rls.ts";
export { DEFAULT_JOB_TTL_MS, type JobEnvelope, type JobKeyOptions, type OpenedJob, openJob, sealJob } from "./jobs/envelope.ts";
export {
  createJobTable,
  DEFAULT_JOB_TABLE,
  type EnqueueOptions,
  enqueueForTenant,
  type JobHandler,
  type JobResult,
  type JobScope,
  jobTableStatements,
  jobWorker,
  type JobWorkerOptions,
  type RunOutcome,
  runForTenant,
} from "./jobs/queue.ts";
