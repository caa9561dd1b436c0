export * from "./keys.ts";
export * from "./memory-store.ts";
export * from "./redis-store.ts";
export type { SetMode, Store, StreamEntry, StreamReadOptions } from "./store.ts";
