/**
 * Key extraction (property-based, as a parser) and the batched last-use reporter.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { generateApiKey } from "@portcullis/shared";
import { extractKey, KeyUsageReporter, keyInQuery } from "./index.ts";

const key = fc.constant(null).map(() => generateApiKey().key);
const token = fc.stringMatching(/^[A-Za-z0-9._~+/-]{1,40}$/);

describe("extractKey", () => {
  it("finds a key in the query string, raw or with its underscore percent-encoded, wherever it sits", () => {
    fc.assert(
      fc.property(key, fc.stringMatching(/^[a-z]{0,8}$/), fc.boolean(), fc.boolean(), (k, name, encoded, upper) => {
        const value = encoded ? k.replace("_", upper ? "%5F" : "%5f") : k;
        const url = `/p?x=1&${name}=${value}`;
        expect(keyInQuery(url)).toBe(true);
        expect(extractKey([], url, false)).toEqual({ kind: "error", code: "key_in_query" });
        // In the path, not the query: not this rule's business.
        expect(keyInQuery(`/p/${k}`)).toBe(false);
      }),
    );
  });

  it("treats two different keys, or one key header repeated, as ambiguous; one key in both headers as one key", () => {
    fc.assert(
      fc.property(key, key, fc.boolean(), (a, b, api) => {
        expect(extractKey(["Authorization", `Bearer ${a}`, "X-API-Key", b], "/", api)).toEqual({
          kind: "error",
          code: "ambiguous_credentials",
        });
        expect(extractKey(["x-api-key", a, "X-Api-Key", a], "/", api).kind).toBe("error");
        expect(extractKey(["authorization", `Bearer ${a}`, "x-api-key", a], "/", api)).toEqual({
          kind: "key",
          key: a,
          fromAuthorization: true,
        });
        expect(extractKey(["X-API-KEY", ` ${b} `], "/", api)).toEqual({ kind: "key", key: b, fromAuthorization: false });
      }),
    );
  });

  it("leaves an app's own bearer token alone on a tenant hostname, and takes it as a (bad) key on the API hostname", () => {
    fc.assert(
      fc.property(token, (t) => {
        fc.pre(!t.startsWith("pck_"));
        expect(extractKey(["Authorization", `Bearer ${t}`], "/", false)).toEqual({ kind: "none" });
        expect(extractKey(["Authorization", `Bearer ${t}`], "/", true)).toEqual({ kind: "key", key: t, fromAuthorization: true });
      }),
    );
  });
});

describe("extractKey: keys where the router does not take them", () => {
  const b64 = (v: string) => Buffer.from(v, "latin1").toString("base64");
  const word = fc.stringMatching(/^[A-Za-z0-9]{0,12}$/);
  const headerName = fc.stringMatching(/^[A-Za-z][A-Za-z0-9_-]{0,20}$/).filter((n) => {
    const l = n.toLowerCase();
    return l !== "authorization" && l !== "x-api-key";
  });
  /** Ways an app may read a key that are not `Authorization: Bearer` or `X-API-Key`. */
  const carriers: fc.Arbitrary<(k: string) => string[]>[] = [
    fc.tuple(fc.constantFrom("Token", "ApiKey", "Key", "Bearer"), word).map(([scheme, junk]) => (k: string) => [
      "Authorization",
      scheme === "Bearer" ? `Bearer ${k} ${junk}x` : `${scheme} ${k}`,
    ]),
    fc
      .tuple(word, word, fc.boolean(), fc.constantFrom("Basic", "basic", "BASIC"))
      .map(([user, pass, asUser, scheme]) => (k: string) => [
        "Authorization",
        `${scheme} ${b64(asUser ? `${user}${k}:${pass}` : `${user}:${pass}${k}`)}`,
      ]),
    headerName.map((name) => (k: string) => [name, k]),
    fc.tuple(word, word).map(([name, other]) => (k: string) => ["Cookie", `${other}=1; ${name}x=${k}`]),
    fc.constant((k: string) => ["Cookie", `api_key=${k.replace("_", "%5F")}`]),
  ];

  it("finds a well-formed key in any other scheme, after a token, in Basic credentials, another header or a cookie", () => {
    fc.assert(
      fc.property(key, fc.oneof(...carriers), fc.boolean(), (k, carrier, api) => {
        expect(extractKey(["Host", "a.example", ...carrier(k)], "/", api)).toEqual({ kind: "misplaced", key: k });
        // Also placed correctly: still misplaced (its copy would be forwarded); another key: ambiguous.
        expect(extractKey(["X-API-Key", k, ...carrier(k)], "/", api)).toEqual({ kind: "misplaced", key: k });
        const other = generateApiKey().key;
        expect(extractKey(["X-API-Key", other, ...carrier(k)], "/", api)).toEqual({
          kind: "error",
          code: "ambiguous_credentials",
        });
      }),
    );
  });

  it("leaves look-alikes alone: `pck_` values that fail the checksum are no key", () => {
    fc.assert(
      fc.property(key, fc.oneof(...carriers), (k, carrier) => {
        const typo = `${k.slice(0, -1)}${k.at(-1) === "A" ? "B" : "A"}`;
        expect(extractKey(["Host", "a.example", ...carrier(typo)], "/", false)).toEqual({ kind: "none" });
      }),
    );
  });
});

describe("KeyUsageReporter", () => {
  it("sends each key id once per batch, keeps a failed batch for the next one, and sends the rest on close", async () => {
    const sent: string[][] = [];
    let fail = true;
    const reporter = new KeyUsageReporter({
      intervalMs: 3_600_000,
      report: async (ids) => {
        if (fail) throw new Error("key service down");
        sent.push(ids);
      },
    });
    for (let i = 0; i < 100; i++) reporter.record(i % 2 ? "key_a" : "key_b");
    expect(reporter.pending).toBe(2);
    await reporter.flush();
    expect(sent).toEqual([]);
    expect(reporter.pending).toBe(2);
    fail = false;
    await reporter.flush();
    expect(sent.map((b) => [...b].sort())).toEqual([["key_a", "key_b"]]);
    reporter.record("key_c");
    await reporter.close();
    expect(sent.at(-1)).toEqual(["key_c"]);
  });

  it("splits a large report into calls the key service reads whole", async () => {
    const sent: string[][] = [];
    const reporter = new KeyUsageReporter({ intervalMs: 3_600_000, batchSize: 3, report: async (ids) => void sent.push(ids) });
    for (let i = 0; i < 8; i++) reporter.record(`key_${i}`);
    await reporter.close();
    expect(sent.map((b) => b.length)).toEqual([3, 3, 2]);
    expect(new Set(sent.flat()).size).toBe(8);
  });

  it("holds a bounded number of ids", async () => {
    const reporter = new KeyUsageReporter({ intervalMs: 3_600_000, maxPending: 10, report: async () => {} });
    for (let i = 0; i < 1_000; i++) reporter.record(`key_${i}`);
    expect(reporter.pending).toBe(10);
    await reporter.close();
  });
});
