import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { confusableSkeleton, normalizeHostname } from "./index.ts";

const label = fc.stringMatching(/^[a-z0-9](?:[a-z0-9-]{0,20}[a-z0-9])?$/).filter((l) => l.slice(2, 4) !== "--");
const name = fc
  .tuple(fc.array(label, { minLength: 1, maxLength: 4 }), fc.stringMatching(/^[a-z]{2,10}$/))
  .map(([labels, tld]) => [...labels, tld].join("."));
const options = { allowUnicode: true, allowPort: true };

describe("hostname normalizer", () => {
  it("maps every spelling of a name (case, one trailing dot, a port) to the same hostname", () => {
    fc.assert(
      fc.property(name, fc.integer({ min: 1, max: 65535 }), fc.boolean(), fc.boolean(), (n, port, upper, dot) => {
        let spelled = upper ? n.toUpperCase() : n;
        if (dot) spelled += ".";
        const plain = normalizeHostname(n, options);
        const variant = normalizeHostname(`${spelled}:${port}`, options);
        expect(plain.ok && variant.ok).toBe(true);
        if (plain.ok && variant.ok) {
          expect(variant.hostname).toBe(plain.hostname);
          expect(variant.port).toBe(port);
        }
      }),
    );
  });

  it("maps the Unicode and the punycode form of an IDN to the same A-label", () => {
    const unicodeLabel = fc.stringMatching(/^[a-zäöüéèçñß]{1,12}$/).filter((l) => /[^a-z]/.test(l));
    fc.assert(
      fc.property(unicodeLabel, name, (u, rest) => {
        const fromUnicode = normalizeHostname(`${u}.${rest}`, options);
        if (!fromUnicode.ok) return; // some letters map away (ß): not this property's concern
        const fromPunycode = normalizeHostname(fromUnicode.hostname.toUpperCase(), options);
        expect(fromPunycode.ok && fromPunycode.hostname).toBe(fromUnicode.hostname);
      }),
    );
  });

  it("refuses undecodable punycode labels", () => {
    for (const n of ["xn--zz.example.com", "a.xn--0.example", "XN--ZZ.example.com:443"]) {
      expect(normalizeHostname(n, options), n).toEqual({ ok: false, code: "invalid_idn" });
    }
    expect(normalizeHostname("xn--.example.com", options).ok).toBe(false);
    expect(normalizeHostname("xn--bcher-kva.example", options)).toEqual({
      ok: true,
      hostname: "xn--bcher-kva.example",
      port: null,
    });
  });

  it("refuses wildcards and IP literals in every spelling", () => {
    for (const n of ["*.a.com", "*", "127.0.0.1", "0x7f.0.0.1", "2130706433", "[::1]:80", "::1"]) {
      expect(normalizeHostname(n, options).ok, n).toBe(false);
    }
  });

  it("gives Unicode homoglyphs the skeleton of the name they imitate", () => {
    const cyrillic = normalizeHostname("\u0440\u0430ypal.com", options);
    expect(cyrillic.ok && confusableSkeleton(cyrillic.hostname)).toBe("paypal.com");
  });
});
