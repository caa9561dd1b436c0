export * from "./api-key.ts";
export * from "./context.ts";
export * from "./session.ts";
export { constantTimeEqual } from "./equal.ts";
