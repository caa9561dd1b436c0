/**
 * API key format: `pck_<32 base62 characters of randomness><6 base62 checksum>`.
 * 32 base62 characters carry ≈190 bits. The checksum (CRC-32 of the random part,
 * base62) lets the router refuse a mistyped or invented key without any lookup.
 * Keys are stored and cached only as SHA-256 digests: with this much entropy a
 * slow hash adds nothing (the secret cannot be guessed), and lookups stay O(1).
 */
import { createHash, randomBytes } from "node:crypto";
import { crc32 } from "node:zlib";

export const API_KEY_PREFIX = "pck_";
const ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const RANDOM_LENGTH = 32;
const CHECKSUM_LENGTH = 6;
export const API_KEY_LENGTH = API_KEY_PREFIX.length + RANDOM_LENGTH + CHECKSUM_LENGTH;
const SHAPE = /^pck_[0-9A-Za-z]{38}$/;

function base62(value: number, width: number): string {
  let out = "";
  let n = value >>> 0;
  for (let i = 0; i < width; i++) {
    out = ALPHABET[n % 62] + out;
    n = Math.floor(n / 62);
  }
  return out;
}

function randomBase62(length: number): string {
  let out = "";
  while (out.length < length) {
    // Rejection sampling keeps every character uniform (248 = 4 × 62).
    for (const byte of randomBytes(length * 2)) {
      if (byte < 248) out += ALPHABET[byte % 62];
      if (out.length === length) break;
    }
  }
  return out;
}

export function generateApiKey(): { key: string; prefix: string; hash: string } {
  const random = randomBase62(RANDOM_LENGTH);
  const key = `${API_KEY_PREFIX}${random}${base62(crc32(random), CHECKSUM_LENGTH)}`;
  return { key, prefix: apiKeyPrefix(key), hash: hashApiKey(key) };
}

/** True when the key has the right shape and checksum: no lookup needed to refuse. */
export function isWellFormedApiKey(key: string): boolean {
  if (key.length !== API_KEY_LENGTH || !SHAPE.test(key)) return false;
  const random = key.slice(API_KEY_PREFIX.length, API_KEY_PREFIX.length + RANDOM_LENGTH);
  return key.slice(-CHECKSUM_LENGTH) === base62(crc32(random), CHECKSUM_LENGTH);
}

/** The displayable, non-secret start of a key (`pck_` and 8 characters). */
export function apiKeyPrefix(key: string): string {
  return key.slice(0, API_KEY_PREFIX.length + 8);
}

export function hashApiKey(key: string): string {
  return createHash("sha256").update(key).digest("hex");
}
