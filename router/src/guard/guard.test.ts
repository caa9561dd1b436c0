/**
 * The guard's Host memo answers exactly what `normalizeHostname` answers, whatever the
 * order of values, repeats and memo overflows: a remembered value is never answered
 * for another, an invalid value is never remembered, and a full memo starts over.
 */
import type { IncomingMessage } from "node:http";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { normalizeHostname } from "@portcullis/shared";
import { HOST_MEMO, inspectRequest } from "./index.ts";

const LIMITS = { maxHeaderCount: 100 };

function request(host: string, url = "/"): IncomingMessage {
  return { rawHeaders: ["Host", host], method: "GET", url, httpVersionMinor: 1 } as unknown as IncomingMessage;
}

function expected(host: string) {
  const n = normalizeHostname(host, { allowPort: true });
  return n.ok ? { ok: true, hostname: n.hostname, path: "/" } : { ok: false, reason: "invalid_host", host };
}

// Valid names, their case and port variants, and values that are refused.
const label = fc.stringMatching(/^[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?$/);
const valid = fc
  .tuple(fc.array(label, { minLength: 1, maxLength: 3 }), fc.constantFrom("com", "test", "io"))
  .map(([labels, tld]) => [...labels, tld].join("."));
const variant = fc.oneof(
  valid,
  valid.map((h) => h.toUpperCase()),
  valid.map((h) => `${h}.`),
  fc.tuple(valid, fc.integer({ min: 0, max: 70_000 })).map(([h, p]) => `${h}:${p}`),
  fc.constantFrom("10.0.0.1", "[::1]", "a_b.com", "*.acme.com", "", "acme.com:", "xn--zz.com", "-a.com", "a..b"),
  fc.string({ maxLength: 20 }),
);

describe("guard: Host memo", () => {
  it("answers every value as normalizeHostname does, repeated and in any order", () => {
    fc.assert(
      fc.property(fc.array(variant, { minLength: 1, maxLength: 60 }), (hosts) => {
        // Each value twice: the second answer may come from the memo.
        for (const host of [...hosts, ...hosts]) expect(inspectRequest(request(host), LIMITS)).toEqual(expected(host));
      }),
      { numRuns: 1_000 },
    );
  });

  it("keeps answering correctly after the memo fills and starts over", () => {
    const hosts = Array.from({ length: HOST_MEMO + 500 }, (_, i) => `t${i}.bench.test`);
    for (const host of hosts) expect(inspectRequest(request(host), LIMITS)).toEqual(expected(host));
    // Values from before and after the memo started over, mixed with refused ones.
    for (const host of [hosts[0] as string, "T0.BENCH.TEST:8080", hosts[HOST_MEMO + 499] as string, "10.0.0.1", "t1.bench.test."])
      expect(inspectRequest(request(host), LIMITS)).toEqual(expected(host));
  });

  it("never remembers a refused value: asked again, it is refused again", () => {
    for (const host of ["127.0.0.1", "[::1]:80", "a_b.example", "acme.com:0", "acme.com:99999"]) {
      expect(inspectRequest(request(host), LIMITS)).toMatchObject({ ok: false, reason: "invalid_host" });
      expect(inspectRequest(request(host), LIMITS)).toMatchObject({ ok: false, reason: "invalid_host" });
    }
  });

  it("compares an absolute-form target with the remembered hostname", () => {
    expect(inspectRequest(request("Acme.Example:8080"), LIMITS)).toMatchObject({ ok: true, hostname: "acme.example" });
    expect(inspectRequest(request("Acme.Example:8080", "http://acme.example/x"), LIMITS)).toMatchObject({
      ok: true,
      hostname: "acme.example",
      path: "/x",
    });
    expect(inspectRequest(request("Acme.Example:8080", "http://other.example/x"), LIMITS)).toMatchObject({
      ok: false,
      reason: "absolute_form_mismatch",
    });
  });
});
