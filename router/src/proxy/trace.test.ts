import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { nextTraceparent } from "./trace.ts";

const FORMAT = /^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$/;
const hex = (n: number) => fc.string({ unit: fc.constantFrom(..."0123456789abcdef"), minLength: n, maxLength: n });

describe("traceparent (W3C Trace Context)", () => {
  it("keeps the trace id and flags of a valid header and replaces the parent id", () => {
    fc.assert(
      fc.property(hex(32), hex(16), hex(2), (trace, parent, flags) => {
        fc.pre(!/^0+$/.test(trace) && !/^0+$/.test(parent));
        const incoming = `00-${trace}-${parent}-${flags}`;
        const out = nextTraceparent(incoming);
        expect(out).toMatch(FORMAT);
        expect(out.slice(3, 35)).toBe(trace);
        expect(out.slice(-2)).toBe(flags);
        expect(out.slice(36, 52)).not.toBe("0".repeat(16));
      }),
    );
  });

  it("answers a well-formed header with a new trace for anything else", () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 80 }), (junk) => {
        const out = nextTraceparent(junk);
        expect(out).toMatch(FORMAT);
        expect(out.slice(3, 35)).not.toBe("0".repeat(32));
      }),
    );
    for (const bad of [
      "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
      "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
      "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
      "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
      "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
      "",
    ]) {
      expect(nextTraceparent(bad).slice(3, 35), bad).not.toBe("4bf92f3577b34da6a3ce929d0e0e4736");
    }
    // A later version may carry more fields after a dash (§3.2.4).
    expect(nextTraceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-more").slice(3, 35)).toBe(
      "4bf92f3577b34da6a3ce929d0e0e4736",
    );
  });
});
