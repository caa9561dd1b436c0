/**
 * The one hostname normalizer, used by the router (Host header), the control plane
 * (hostname registration) and preflight (declarative files). Rules:
 *
 * - case-insensitive (RFC 4343): lower-cased;
 * - a port is stripped (`:1-65535`, digits only); any other colon is refused;
 * - one trailing dot (the DNS root) is removed: `acme.com.` is `acme.com`;
 * - IP literals (IPv4 in any numeric form, bracketed IPv6) are refused: a tenant is
 *   reached by name only;
 * - each label is LDH (RFC 1123 §2.1): 1–63 of `a-z 0-9 -`, not starting or ending
 *   with `-`; the whole name at most 253 characters; `_` and `*` are refused, so no
 *   wildcard can ever be registered or matched;
 * - Unicode (U-labels) is converted to A-labels (`xn--…`, RFC 5891) where the caller
 *   allows it (control plane, preflight); on the wire (the Host header) only ASCII is
 *   accepted, and `xn--` labels must decode to valid IDNA.
 */
import { domainToASCII, domainToUnicode } from "node:url";

export type HostnameError =
  | "empty"
  | "too_long"
  | "invalid_character"
  | "invalid_port"
  | "ip_literal"
  | "invalid_label"
  | "wildcard"
  | "invalid_idn";

export type HostnameResult = { ok: true; hostname: string; port: number | null } | { ok: false; code: HostnameError };

export interface NormalizeOptions {
  /** Accept Unicode input and convert it to A-labels (control plane, preflight). */
  allowUnicode?: boolean;
  /** Accept a `:port` suffix and strip it (router, preflight). */
  allowPort?: boolean;
}

const MAX_NAME = 253;
const LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
const NUMERIC_LABEL = /^(?:0x[0-9a-f]*|[0-9]+)$/;

function fail(code: HostnameError): HostnameResult {
  return { ok: false, code };
}

/** Fast path for the router: a Host made only of `a-z 0-9 . -` (already lower case). */
const SIMPLE = /^[a-z0-9.-]+$/;

export function normalizeHostname(input: string, options: NormalizeOptions = {}): HostnameResult {
  if (input.length === 0) return fail("empty");
  if (input.length > MAX_NAME + 7) return fail("too_long");
  let name = input;
  let port: number | null = null;

  if (name.charCodeAt(0) === 0x5b /* [ */) return fail("ip_literal");
  if (name.includes("*")) return fail("wildcard");

  const colon = name.indexOf(":");
  if (colon !== -1) {
    if (!options.allowPort) return fail("invalid_port");
    const portText = name.slice(colon + 1);
    if (!/^[0-9]{1,5}$/.test(portText)) {
      // Several colons without brackets is an unbracketed IPv6 literal, or garbage.
      return fail(portText.includes(":") ? "ip_literal" : "invalid_port");
    }
    port = Number(portText);
    if (port < 1 || port > 65535) return fail("invalid_port");
    name = name.slice(0, colon);
  }

  if (!SIMPLE.test(name)) {
    // Anything outside printable ASCII is either Unicode (IDN) or an attack.
    for (let i = 0; i < name.length; i++) {
      const c = name.charCodeAt(i);
      if (c <= 0x20 || c === 0x7f) return fail("invalid_character");
      if (c > 0x7f && !options.allowUnicode) return fail("invalid_character");
    }
    if (/[^\x21-\x7e]/.test(name)) {
      const ascii = domainToASCII(name);
      if (ascii === "") return fail("invalid_idn");
      name = ascii;
    }
    name = name.toLowerCase();
    if (!SIMPLE.test(name)) return fail(name.includes("_") ? "invalid_label" : "invalid_character");
  }

  if (name.endsWith(".")) name = name.slice(0, -1);
  if (name.length === 0) return fail("empty");
  if (name.length > MAX_NAME) return fail("too_long");

  const labels = name.split(".");
  const last = labels[labels.length - 1] as string;
  // A numeric final label is how every IPv4 spelling (dotted, octal, hex, integer)
  // looks; no public TLD is numeric (RFC 3696 §2).
  if (NUMERIC_LABEL.test(last)) return fail("ip_literal");
  let hasIdn = false;
  for (const label of labels) {
    if (!LABEL.test(label)) return fail("invalid_label");
    if (label.length >= 4 && label.charCodeAt(2) === 0x2d && label.charCodeAt(3) === 0x2d) {
      // `??--` is reserved for IDNA; only `xn--` is valid (RFC 5891 §4.2.3.1).
      if (!label.startsWith("xn--")) return fail("invalid_idn");
      hasIdn = true;
    }
  }
  if (hasIdn) {
    // An A-label must decode and round-trip through Unicode unchanged. WHATWG's
    // domainToUnicode leaves an undecodable label as it was (`xn--zz` stays
    // `xn--zz`), so a label still starting with `xn--` after decoding is invalid
    // punycode (RFC 3492), not a name.
    const unicode = domainToUnicode(name);
    if (unicode === "" || domainToASCII(unicode) !== name) return fail("invalid_idn");
    if (unicode.startsWith("xn--") || unicode.includes(".xn--")) return fail("invalid_idn");
  }
  return { ok: true, hostname: name, port };
}

/** The Unicode form of a normalized hostname, for display. */
export function hostnameToUnicode(hostname: string): string {
  return domainToUnicode(hostname) || hostname;
}

/** True when `hostname` is `suffix` itself or a name under it. */
export function isUnder(hostname: string, suffix: string): boolean {
  return hostname === suffix || hostname.endsWith(`.${suffix}`);
}

/**
 * A skeleton for confusable detection (Unicode TR #39, reduced): maps common
 * homoglyphs of Latin letters to their Latin look-alike, so `аcme.com` (Cyrillic a)
 * and `acme.com` share a skeleton. Input is a normalized (A-label) hostname.
 */
const CONFUSABLES: Record<string, string> = {
  а: "a",
  в: "b",
  с: "c",
  е: "e",
  һ: "h",
  і: "i",
  ј: "j",
  к: "k",
  м: "m",
  н: "h",
  о: "o",
  р: "p",
  ѕ: "s",
  т: "t",
  у: "y",
  х: "x",
  ԁ: "d",
  ɡ: "g",
  ӏ: "l",
  ο: "o",
  α: "a",
  ν: "v",
  ρ: "p",
  τ: "t",
  υ: "u",
  χ: "x",
  κ: "k",
  ι: "i",
  ϲ: "c",
  ɑ: "a",
  "0": "o",
  "1": "l",
  ı: "i",
  ł: "l",
  ø: "o",
  ß: "ss",
  rn: "m",
  vv: "w",
};
export function confusableSkeleton(hostname: string): string {
  let text = hostnameToUnicode(hostname).normalize("NFKD").replace(/\p{M}/gu, "");
  text = text.replace(/rn/g, "m").replace(/vv/g, "w");
  let out = "";
  for (const ch of text) out += CONFUSABLES[ch] ?? ch;
  return out;
}
