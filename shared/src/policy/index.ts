/**
 * Policy: the one allow-or-refuse decision (`decide`) and the outcomes it is fed,
 * built from the cache records both the router and the control plane read.
 */
export * from "./decide.ts";
export * from "./outcomes.ts";
