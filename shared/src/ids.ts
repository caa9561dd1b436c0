/** Prefixed, random identifiers: `ten_…`, `hst_…`, `key_…`. */
import { randomBytes } from "node:crypto";

export const ID_PREFIX = {
  tenant: "ten",
  hostname: "hst",
  key: "key",
  user: "usr",
  session: "ses",
  server: "dbs",
  upstream: "ups",
  request: "req",
  audit: "aud",
} as const;

const ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"; // Crockford base32, lower case

export function newId(kind: keyof typeof ID_PREFIX): string {
  const bytes = randomBytes(15);
  let out = `${ID_PREFIX[kind]}_`;
  // 15 bytes = 120 bits = 24 base32 characters.
  let bits = 0;
  let value = 0;
  for (const byte of bytes) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      bits -= 5;
      out += ALPHABET[(value >>> bits) & 31];
    }
    value &= 0xff;
  }
  return out;
}
