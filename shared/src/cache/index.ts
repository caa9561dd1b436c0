export * from "./keys.ts";
export * from "./memory-store.ts";
export { parseHostPorts, type RedisConnection } from "./redis-connection.ts";
export * from "./redis-store.ts";
export { LEDGER_KINDS, type LedgerKind, type LedgerTotals, type MasterChange } from "./ledger.ts";
export { hasStreams } from "./store.ts";
export type {
  AdmitCall,
  CounterBatch,
  Admission,
  QuotaCheck,
  RateCheck,
  SetMode,
  Store,
  StreamEntry,
  StreamReadOptions,
  StreamStore,
} from "./store.ts";
