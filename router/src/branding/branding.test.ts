import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { brandingJson } from "./json.ts";
import { brandedRefusalPage, escapeHtml, wantsHtml } from "./page.ts";
import { tenantRecord } from "../../../test/helpers/tenant-record.ts";

const tenant = tenantRecord;

describe("branding", () => {
  it("escapes every HTML-significant character", () => {
    fc.assert(
      fc.property(fc.string(), (s) => {
        const out = escapeHtml(s);
        expect(out).not.toMatch(/[<>"'`]/);
        // Every & starts an entity we wrote.
        expect(out.replace(/&#\d+;/g, "")).not.toContain("&");
      }),
    );
  });

  it("never lets tenant values open a tag or leave an attribute or the style block", () => {
    fc.assert(
      fc.property(fc.string(), fc.string(), fc.string(), (name, logo, colour) => {
        const page = brandedRefusalPage(
          tenant({}, { displayName: name, logoUrl: `https://x.example/${logo}`, primaryColor: colour }),
          "rate_limited",
          "req_1",
        );
        const tags = page.match(/<[a-z!/][^>]*>/gi) ?? [];
        const allowed = /^<\/?(!doctype html|html|head|meta|title|style|body|header|img|strong|main|h1|p|small)[\s>]/i;
        for (const tag of tags) expect(tag).toMatch(allowed);
        // The colour reaches CSS only when it is #rrggbb.
        if (!/^#[0-9a-fA-F]{6}$/.test(colour)) expect(page).toContain("background:#334155");
      }),
    );
  });

  it("answers HTML only to clients that ask for it", () => {
    expect(wantsHtml("text/html,application/xhtml+xml")).toBe(true);
    expect(wantsHtml("application/json")).toBe(false);
    expect(wantsHtml(undefined)).toBe(false);
  });

  it("serves only well-formed colours in the JSON", () => {
    expect(JSON.parse(brandingJson(tenant({}, { displayName: "A", primaryColor: "red;}" })))).toEqual({
      displayName: "A",
      logoUrl: null,
      primaryColor: null,
    });
  });
});
