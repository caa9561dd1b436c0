/**
 * The identity of a database server: one canonical `host:port` for every spelling of
 * one address, so the rule "a database server serves at most one tenant" can be a
 * unique constraint on text (control-plane `database_servers.address`) and preflight
 * can compare strings. Used by the admin API and by `portcullis apply`.
 *
 * Canonical form:
 * - IPv6 in brackets, RFC 5952 §4: lower-case hex, no leading zeros, the longest run
 *   of two or more zero groups (the first on a tie) compressed to `::` — exactly the
 *   WHATWG URL serialisation, which does the parsing here. Zone ids (`%eth0`) are
 *   refused: they name an interface of the machine that reads them, not a server.
 * - IPv4-mapped IPv6 (`::ffff:0:0/96`, RFC 4291 §2.5.5.2) is the IPv4 address it maps:
 *   a client connects to the same socket either way.
 * - IPv4 only as four decimal octets without leading zeros. `010.0.0.1` is 8.0.0.1 to
 *   libpq's resolver (inet_aton reads octal) and 10.0.0.1 to a human; hex parts,
 *   fewer than four parts and integers are ambiguous the same way. Those are refused
 *   with `ambiguous_ipv4` rather than guessed.
 * - Host names through the one hostname normalizer: lower case, no trailing dot, IDN
 *   as A-labels (punycode).
 * - The port defaults to 5432 (Postgres') and is written in decimal without leading
 *   zeros; `05432` is 5432 (ports are decimal everywhere, so nothing is ambiguous).
 *
 * Not canonicalised (it would need DNS): a name and the address it resolves to, or two
 * names of one machine, remain two spellings. Operators bind by one name per server.
 */
import { normalizeHostname } from "../hostname/index.ts";

export const DEFAULT_DATABASE_PORT = 5432;

export type DbServerError = "empty" | "invalid_port" | "unbracketed_ipv6" | "invalid_ipv6" | "ambiguous_ipv4" | "invalid_host";

export type DbServerResult =
  | { ok: true; server: string; host: string; port: number; kind: "ipv4" | "ipv6" | "name" }
  | { ok: false; code: DbServerError; detail: string };

const IPV4 = /^(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(?:\.(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}$/;
/** What an IPv4 spelling looks like to inet_aton: a numeric (decimal, octal, hex) last part. */
const IPV4_LOOKALIKE = /(?:^|\.)(?:0x[0-9a-f]*|[0-9]+)\.?$/i;
const IPV6_TEXT = /^[0-9a-fA-F:.]+$/;
const MAPPED = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/;

function fail(code: DbServerError, detail: string): DbServerResult {
  return { ok: false, code, detail };
}

function parsePort(text: string | undefined, input: string): number | DbServerResult {
  if (text === undefined) return DEFAULT_DATABASE_PORT;
  // Leading zeros allowed (decimal), but bounded so a run of zeros is not a number.
  if (!/^[0-9]{1,10}$/.test(text)) return fail("invalid_port", `database server ${JSON.stringify(input)}: port must be 1-65535`);
  const port = Number(text);
  if (port < 1 || port > 65535) return fail("invalid_port", `database server ${JSON.stringify(input)}: port must be 1-65535`);
  return port;
}

/** `[ipv6]` content to its canonical text (without brackets), or null. */
function canonicalIpv6(text: string): string | null {
  if (!IPV6_TEXT.test(text) || !text.includes(":")) return null;
  let hostname: string;
  try {
    hostname = new URL(`http://[${text}]/`).hostname;
  } catch {
    return null;
  }
  return hostname.slice(1, -1);
}

function ok(host: string, port: number, kind: "ipv4" | "ipv6" | "name"): DbServerResult {
  return { ok: true, server: `${kind === "ipv6" ? `[${host}]` : host}:${port}`, host, port, kind };
}

/** The canonical `host:port` of a database server, or why the spelling is refused. */
export function canonicalDbServer(input: string): DbServerResult {
  const text = input.trim();
  if (text.length === 0) return fail("empty", "database server is empty");
  if (text.length > 300) return fail("invalid_host", "database server is too long");

  if (text.startsWith("[")) {
    const close = text.indexOf("]");
    if (close === -1) return fail("invalid_ipv6", `database server ${JSON.stringify(input)}: unclosed [`);
    const rest = text.slice(close + 1);
    if (rest !== "" && !rest.startsWith(":")) {
      return fail("invalid_ipv6", `database server ${JSON.stringify(input)}: expected [ipv6]:port`);
    }
    const port = parsePort(rest === "" ? undefined : rest.slice(1), input);
    if (typeof port !== "number") return port;
    const v6 = canonicalIpv6(text.slice(1, close));
    if (v6 === null) {
      return fail("invalid_ipv6", `database server ${JSON.stringify(input)}: not an IPv6 address (zone ids are refused)`);
    }
    const mapped = MAPPED.exec(v6);
    if (mapped) {
      const hi = Number.parseInt(mapped[1] as string, 16);
      const lo = Number.parseInt(mapped[2] as string, 16);
      return ok(`${hi >> 8}.${hi & 0xff}.${lo >> 8}.${lo & 0xff}`, port, "ipv4");
    }
    return ok(v6, port, "ipv6");
  }

  const colons = text.split(":").length - 1;
  if (colons > 1) {
    return fail("unbracketed_ipv6", `database server ${JSON.stringify(input)}: write an IPv6 address in brackets, [addr]:port`);
  }
  const colon = text.indexOf(":");
  const host = colon === -1 ? text : text.slice(0, colon);
  const port = parsePort(colon === -1 ? undefined : text.slice(colon + 1), input);
  if (typeof port !== "number") return port;
  if (host.length === 0) return fail("invalid_host", `database server ${JSON.stringify(input)}: no host`);

  if (IPV4.test(host)) return ok(host, port, "ipv4");
  if (IPV4_LOOKALIKE.test(host)) {
    return fail(
      "ambiguous_ipv4",
      `database server ${JSON.stringify(input)}: ambiguous IPv4 address (leading zeros, hex, integer or short forms are read as octal or differently by resolvers); write four decimal octets without leading zeros, such as 10.0.0.1`,
    );
  }
  const named = normalizeHostname(host, { allowUnicode: true });
  if (!named.ok) {
    return fail("invalid_host", `database server ${JSON.stringify(input)}: not a valid host name (${named.code})`);
  }
  return ok(named.hostname, port, "name");
}
