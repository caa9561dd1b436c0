/**
 * Properties of the database-server canonicaliser, fast-check with
 * 2,000 generated cases each: idempotent; every spelling of one address (IPv6 full or
 * compressed, any case and leading zeros, mixed IPv4 tail, IPv4-mapped, host-name
 * case, trailing dot, IDN or punycode, port omitted or zero-padded) maps to one value;
 * different addresses never map to one value; octal-looking IPv4 is always refused.
 */
import { domainToASCII } from "node:url";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { canonicalDbServer } from "./index.ts";

const RUNS = { numRuns: 2_000 };

const group = fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 0xffff }));
/** Eight 16-bit groups, biased towards zeros so compression cases are common. */
const ipv6Groups = fc.array(group, { minLength: 8, maxLength: 8 });
const port = fc.integer({ min: 1, max: 65535 });

const hex = (n: number, pad: number, upper: boolean) => {
  const h = n.toString(16).padStart(pad, "0");
  return upper ? h.toUpperCase() : h;
};

/** One spelling of `groups`: each group zero-padded or not, any case, any zero run compressed, maybe an IPv4 tail. */
const ipv6Spelling = (groups: number[]) =>
  fc
    .record({
      pads: fc.array(fc.integer({ min: 1, max: 4 }), { minLength: 8, maxLength: 8 }),
      upper: fc.boolean(),
      compress: fc.nat(),
      v4tail: fc.boolean(),
    })
    .map(({ pads, upper, compress, v4tail }) => {
      const parts = groups.map((g, i) => hex(g, pads[i] as number, upper));
      let tail: string[] = [];
      let head = parts;
      if (v4tail) {
        const [hi, lo] = [groups[6] as number, groups[7] as number];
        tail = [`${hi >> 8}.${hi & 0xff}.${lo >> 8}.${lo & 0xff}`];
        head = parts.slice(0, 6);
      }
      // Compress one run of zero groups (any run, not only the longest: all are valid input).
      const runs: [number, number][] = [];
      for (let i = 0; i < head.length; i++) {
        if (groups[i] !== 0) continue;
        let j = i;
        while (j < head.length && groups[j] === 0) j++;
        runs.push([i, j]);
        i = j;
      }
      if (runs.length > 0 && compress % 3 !== 0) {
        const [a, b] = runs[compress % runs.length] as [number, number];
        const left = head.slice(0, a).join(":");
        const right = [...head.slice(b), ...tail].join(":");
        return `${left}::${right}`;
      }
      return [...head, ...tail].join(":");
    });

const withPort = (host: string, p: number) =>
  fc.constantFrom(`${host}:${p}`, `${host}:0${p}`, `${host}:${String(p).padStart(6, "0")}`, ...(p === 5432 ? [host] : []));

const ok = (input: string) => {
  const r = canonicalDbServer(input);
  if (!r.ok) throw new Error(`refused ${JSON.stringify(input)}: ${r.detail}`);
  return r.server;
};

describe("canonicalDbServer", () => {
  it("is idempotent on everything it accepts", () => {
    const anyInput = fc.oneof(
      fc.string({ maxLength: 40 }),
      fc
        .array(fc.constantFrom(..."0123456789abcdefABCDEF:.[]%x-", "::", "ffff", ":5432"), { maxLength: 20 })
        .map((a) => a.join("")),
      fc.tuple(ipv6Groups, port).chain(([g, p]) => ipv6Spelling(g).chain((s) => withPort(`[${s}]`, p))),
      fc.domain(),
    );
    fc.assert(
      fc.property(anyInput, (input) => {
        const first = canonicalDbServer(input);
        if (!first.ok) return;
        const again = canonicalDbServer(first.server);
        expect(again).toEqual(first);
        expect(first.server).toBe(first.server.toLowerCase());
      }),
      RUNS,
    );
  });

  it("maps every spelling of one IPv6 address and port to one value", () => {
    fc.assert(
      fc.property(
        ipv6Groups
          .chain((g) => fc.tuple(fc.constant(g), port))
          .chain(([g, p]) =>
            fc.tuple(
              ipv6Spelling(g).chain((s) => withPort(`[${s}]`, p)),
              ipv6Spelling(g).chain((s) => withPort(`[${s}]`, p)),
            ),
          ),
        ([a, b]) => {
          expect(ok(a)).toBe(ok(b));
        },
      ),
      RUNS,
    );
  });

  it("never maps two different addresses to one value (the canonical text is the address)", () => {
    fc.assert(
      fc.property(ipv6Groups, ipv6Groups, port, (g1, g2, p) => {
        fc.pre(g1.join() !== g2.join());
        const a = ok(`[${g1.map((g) => g.toString(16)).join(":")}]:${p}`);
        const b = ok(`[${g2.map((g) => g.toString(16)).join(":")}]:${p}`);
        expect(a).not.toBe(b);
      }),
      RUNS,
    );
  });

  it("writes IPv6 in RFC 5952 form: lower case, no leading zeros, longest zero run (of two or more) as ::", () => {
    fc.assert(
      fc.property(ipv6Groups, (g) => {
        const r = canonicalDbServer(`[${g.map((x) => x.toString(16)).join(":")}]`);
        expect(r.ok).toBe(true);
        if (!r.ok || r.kind !== "ipv6") return;
        expect(r.server).toMatch(/^\[[0-9a-f:]+\]:5432$/);
        expect(r.host).not.toMatch(/(^|:)0[0-9a-f]/);
        expect(r.host.split("::").length).toBeLessThanOrEqual(2);
        // A single zero group is never compressed (RFC 5952 §4.2.2).
        if (!g.some((x, i) => x === 0 && g[i + 1] === 0)) expect(r.host).not.toContain("::");
      }),
      RUNS,
    );
  });

  it("maps an IPv4-mapped IPv6 address, in any spelling, to the IPv4 server", () => {
    const octet = fc.integer({ min: 0, max: 255 });
    fc.assert(
      fc.property(fc.tuple(octet, octet, octet, octet), port, fc.nat(), (o, p, pick) => {
        const v4 = o.join(".");
        const groups = [0, 0, 0, 0, 0, 0xffff, (o[0] << 8) | o[1], (o[2] << 8) | o[3]];
        const spellings = fc.sample(ipv6Spelling(groups), { numRuns: 3, seed: pick });
        for (const s of spellings) expect(ok(`[${s}]:${p}`)).toBe(`${v4}:${p}`);
        expect(ok(`${v4}:${p}`)).toBe(`${v4}:${p}`);
      }),
      { numRuns: 500 },
    );
  });

  it("maps host-name spellings (case, trailing dot, IDN or punycode, port omitted) to one value", () => {
    const uLabel = fc.array(fc.constantFrom(..."abcmnoéüößçкирилπλσ中文"), { minLength: 1, maxLength: 8 }).map((c) => c.join(""));
    const flips = fc.array(fc.boolean(), { minLength: 1, maxLength: 20 });
    fc.assert(
      fc.property(fc.array(uLabel, { minLength: 1, maxLength: 3 }), flips, fc.boolean(), (labels, f, dot) => {
        const name = [...labels, "internal"].join(".");
        const ascii = domainToASCII(name);
        fc.pre(ascii !== "" && !/(^|\.)[^.]{2}--/.test(ascii.replace(/(^|\.)xn--/g, "$1")));
        // Only characters whose upper case folds back (not ß, whose upper case is SS).
        const cased = [...name]
          .map((ch, i) => (f[i % f.length] && ch.toUpperCase().toLowerCase() === ch ? ch.toUpperCase() : ch))
          .join("");
        const a = canonicalDbServer(`${cased}${dot ? "." : ""}`);
        const b = canonicalDbServer(`${ascii}:05432`);
        expect(a.ok).toBe(b.ok);
        if (a.ok && b.ok) expect(a.server).toBe(b.server);
      }),
      RUNS,
    );
  });

  it("refuses every IPv4 spelling with a leading zero, hex part, or fewer than four parts", () => {
    const octet = fc.integer({ min: 0, max: 255 });
    const odd = fc.oneof(
      octet.map((n) => `0${n}`),
      octet.map((n) => `0x${n.toString(16)}`),
    );
    fc.assert(
      fc.property(fc.array(octet, { minLength: 4, maxLength: 4 }), odd, fc.nat({ max: 3 }), fc.boolean(), (o, bad, at, withP) => {
        const parts = o.map(String);
        parts[at] = bad;
        const r = canonicalDbServer(`${parts.join(".")}${withP ? ":5432" : ""}`);
        expect(r).toMatchObject({ ok: false, code: "ambiguous_ipv4" });
      }),
      RUNS,
    );
    for (const s of ["10.1", "10.0.1", "167772161", "0xa000001", "10.0.0.1."]) {
      expect(canonicalDbServer(s), s).toMatchObject({ ok: false, code: "ambiguous_ipv4" });
    }
  });

  it("answers the examples of the issue", () => {
    for (const s of ["[::1]:5432", "[0:0:0:0:0:0:0:1]:5432", "[::1]", "[0::1]:5432", "[0000:0000::0001]:005432"]) {
      expect(ok(s), s).toBe("[::1]:5432");
    }
    expect(ok("[::ffff:10.0.0.1]")).toBe("10.0.0.1:5432");
    expect(ok("PG.Bücher.Example.:6432")).toBe("pg.xn--bcher-kva.example:6432");
    expect(ok("1:0:0:1:0:0:1:1".replace(/^/, "[").replace(/$/, "]"))).toBe("[1::1:0:0:1:1]:5432");
    for (const s of ["::1", "::1:5432", "[::1%eth0]:5432", "[::1]:0", "[::1]:65536", "[::1]x", "[1:2:3]", "", "a_b:5432"]) {
      expect(canonicalDbServer(s).ok, s).toBe(false);
    }
  });
});
