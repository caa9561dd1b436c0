export * from "./keys.ts";
export * from "./memory-store.ts";
export * from "./redis-store.ts";
export type { Admission, QuotaCheck, RateCheck, SetMode, Store } from "./store.ts";
