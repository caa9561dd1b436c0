/**
 * Properties of the one hostname normalizer (docs/hostnames.md), fast-check with
 * ≥ 1,000 generated cases each: idempotent; whatever it accepts is an LDH name;
 * never an IP literal or a wildcard; case, one trailing dot and a port never change
 * the result; a Unicode name and its punycode form normalize to the same A-labels.
 */
import { domainToASCII } from "node:url";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { hostnameToUnicode, normalizeHostname } from "./index.ts";

const RUNS = { numRuns: 2_000 };
const LABEL = "[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?";
const LDH = new RegExp(`^${LABEL}(?:\\.${LABEL})*$`);
const ALL = { allowPort: true, allowUnicode: true } as const;

/** Hostname-shaped ASCII, deliberately including the characters attackers use. */
const hostish = fc
  .array(fc.constantFrom(..."abcxyzAZ0189-._*:[]@/\\%", "xn--", "..", ":80", " ", "\t", "\u0000"), { maxLength: 24 })
  .map((parts) => parts.join(""));

/** Unicode labels from several scripts (IDN), plus ASCII. */
const uLabel = fc
  .array(fc.constantFrom(..."abcmnoéüößçñкирилцаπλσ中文字日本ÅΩ"), { minLength: 1, maxLength: 10 })
  .map((c) => c.join(""));
const unicodeName = fc
  .tuple(fc.array(uLabel, { minLength: 1, maxLength: 3 }), fc.constantFrom("com", "example", "localhost"))
  .map(([labels, tld]) => [...labels, tld].join("."));

/** Any input an attacker or operator could hand the normalizer. */
const anyInput = fc.oneof(
  fc.domain(),
  hostish,
  fc.string({ maxLength: 40 }),
  fc.string({ unit: "grapheme", maxLength: 30 }),
  unicodeName,
);

const randomCase = (s: string, flips: boolean[]) =>
  [...s].map((ch, i) => (flips[i % Math.max(1, flips.length)] ? ch.toUpperCase() : ch)).join("");

describe("normalizeHostname properties", () => {
  it("is idempotent: a normalized name normalizes to itself", () => {
    fc.assert(
      fc.property(anyInput, (input) => {
        const once = normalizeHostname(input, ALL);
        if (!once.ok) return;
        const twice = normalizeHostname(once.hostname);
        expect(twice).toEqual({ ok: true, hostname: once.hostname, port: null });
      }),
      RUNS,
    );
  });

  it("accepts only LDH names of at most 253 characters, no label over 63, never a numeric last label", () => {
    fc.assert(
      fc.property(anyInput, (input) => {
        const r = normalizeHostname(input, ALL);
        if (!r.ok) return;
        expect(r.hostname).toMatch(LDH);
        expect(r.hostname.length).toBeLessThanOrEqual(253);
        expect(r.hostname.split(".").at(-1)).not.toMatch(/^(?:[0-9]+|0x[0-9a-f]*)$/);
      }),
      RUNS,
    );
  });

  it("never accepts an IPv4 literal in any spelling, with or without a port", () => {
    const octet = fc.integer({ min: 0, max: 255 });
    const ipv4 = fc.oneof(
      fc.ipV4(),
      fc.ipV4Extended(),
      fc.integer({ min: 0, max: 0xffffffff }).map(String),
      fc.integer({ min: 0, max: 0xffffffff }).map((n) => `0x${n.toString(16)}`),
      fc.tuple(octet, octet, octet, octet).map((o) => o.map((n) => `0${n.toString(8)}`).join(".")),
    );
    fc.assert(
      fc.property(ipv4, fc.option(fc.integer({ min: 1, max: 65535 })), fc.boolean(), (ip, port, dot) => {
        const input = `${ip}${dot ? "." : ""}${port === null ? "" : `:${port}`}`;
        const r = normalizeHostname(input, ALL);
        expect(r.ok, input).toBe(false);
      }),
      RUNS,
    );
  });

  it("never accepts an IPv6 literal, bracketed or bare", () => {
    fc.assert(
      fc.property(fc.ipV6(), fc.option(fc.integer({ min: 1, max: 65535 })), fc.boolean(), (ip, port, brackets) => {
        const input = brackets ? `[${ip}]${port === null ? "" : `:${port}`}` : ip;
        expect(normalizeHostname(input, ALL).ok, input).toBe(false);
      }),
      RUNS,
    );
  });

  it("never accepts a wildcard anywhere in the name", () => {
    fc.assert(
      fc.property(fc.domain(), fc.nat(), fc.constantFrom("*", "*.", ".*"), (domain, at, star) => {
        const i = at % (domain.length + 1);
        const input = domain.slice(0, i) + star + domain.slice(i);
        expect(normalizeHostname(input, ALL).ok, input).toBe(false);
      }),
      RUNS,
    );
  });

  it("is invariant under case, one trailing dot and a port", () => {
    fc.assert(
      fc.property(
        fc.domain(),
        fc.array(fc.boolean(), { minLength: 1, maxLength: 16 }),
        fc.boolean(),
        fc.option(fc.integer({ min: 1, max: 65535 })),
        (domain, flips, dot, port) => {
          const base = normalizeHostname(domain);
          const variant = `${randomCase(domain, flips)}${dot ? "." : ""}${port === null ? "" : `:${port}`}`;
          const r = normalizeHostname(variant, { allowPort: true });
          expect(r.ok, variant).toBe(base.ok);
          if (r.ok && base.ok) {
            expect(r.hostname).toBe(base.hostname);
            expect(r.port).toBe(port);
          }
        },
      ),
      RUNS,
    );
  });

  it("normalizes a Unicode name and its punycode (A-label) form to the same name", () => {
    fc.assert(
      fc.property(unicodeName, fc.array(fc.boolean(), { minLength: 1, maxLength: 8 }), (name, flips) => {
        const fromUnicode = normalizeHostname(name, ALL);
        const ascii = domainToASCII(name);
        if (ascii === "") {
          expect(fromUnicode.ok).toBe(false);
          return;
        }
        const fromPunycode = normalizeHostname(randomCase(ascii, flips), ALL);
        expect(fromUnicode).toEqual(fromPunycode);
        if (!fromUnicode.ok) return;
        // On the wire (ASCII only) the A-label form is accepted and the same…
        expect(normalizeHostname(fromUnicode.hostname)).toEqual(fromUnicode);
        // …the raw Unicode form is not (only A-labels on the wire)…
        if (/[^\x00-\x7f]/.test(name)) expect(normalizeHostname(name, { allowPort: true }).ok).toBe(false);
        // …and the display form comes back to the same A-labels.
        expect(normalizeHostname(hostnameToUnicode(fromUnicode.hostname), ALL)).toEqual(fromUnicode);
      }),
      RUNS,
    );
  });
});
