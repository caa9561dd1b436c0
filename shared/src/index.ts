export * from "./breaker/index.ts";
export * from "./cache/index.ts";
export * from "./contracts/index.ts";
export * from "./crypto/index.ts";
export * from "./errors/index.ts";
export * from "./hostname/index.ts";
export * from "./ids.ts";
export * from "./config.ts";
