/** Test helpers for apps built on the SDK: a signer standing in for the router, and the route guard. */
export { randomContextKey, type SignOptions, signedHeaders, type TestTenant, verifiedTenant } from "./signer.ts";
export {
  assertRouteIsolation,
  checkRouteIsolation,
  defaultIds,
  type FetchLike,
  honoRoutes,
  type GuardReport,
  type GuardRoute,
  type GuardTenant,
  type RouteGuardOptions,
  type Violation,
  type ViolationKind,
} from "./route-guard.ts";
