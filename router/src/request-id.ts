/** Request ids: `req_` + a random per-process prefix + a counter (unique, cheap). */
import { randomBytes } from "node:crypto";

const prefix = randomBytes(6).toString("hex");
let counter = 0;

export function nextRequestId(): string {
  counter = (counter + 1) % Number.MAX_SAFE_INTEGER;
  return `req_${prefix}${counter.toString(36).padStart(6, "0")}`;
}
