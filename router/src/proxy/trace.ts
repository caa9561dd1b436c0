/**
 * W3C Trace Context (https://www.w3.org/TR/trace-context/): the router is one hop
 * of the trace. A valid incoming `traceparent` keeps its trace id and flags and
 * gets a new parent id (this hop, §3.2.2.3); an absent, repeated or invalid one is
 * replaced by a new trace (§4.3). Random ids come from a pre-filled pool, so a
 * request costs no system call.
 */
import { randomBytes } from "node:crypto";

const VALID = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-|$)/;
const ZERO_TRACE = "0".repeat(32);
const ZERO_PARENT = "0".repeat(16);

let pool = "";
let offset = 0;

function hex(chars: number): string {
  if (offset + chars > pool.length) {
    pool = randomBytes(4096).toString("hex");
    offset = 0;
  }
  const out = pool.slice(offset, offset + chars);
  offset += chars;
  return out;
}

function parentId(): string {
  const id = hex(16);
  return id === ZERO_PARENT ? parentId() : id;
}

/** The `traceparent` to send upstream, given the client's (undefined: absent; "": repeated). */
export function nextTraceparent(incoming: string | undefined): string {
  if (incoming) {
    const m = VALID.exec(incoming);
    // Version ff is invalid; version 00 has exactly this length (§3.2.2.1, §3.2.4).
    if (m && m[1] !== "ff" && m[2] !== ZERO_TRACE && m[3] !== ZERO_PARENT && (m[1] !== "00" || incoming.length === 55)) {
      return `00-${m[2]}-${parentId()}-${m[4]}`;
    }
  }
  let trace = hex(32);
  while (trace === ZERO_TRACE) trace = hex(32);
  return `00-${trace}-${parentId()}-00`;
}
