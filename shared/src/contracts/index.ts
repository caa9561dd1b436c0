export * from "./audit.ts";
export * from "./records.ts";
