/**
 * Fails the test during which a process-level unhandled rejection happened, naming it
 * (vitest fails the whole run on one too, but without saying which test caused it).
 * Call once at the top of a test file.
 */
import { afterAll, afterEach, beforeAll, expect } from "vitest";

export function failOnUnhandledRejections(): void {
  const rejections: unknown[] = [];
  const onRejection = (reason: unknown) => rejections.push(reason);
  beforeAll(() => {
    process.on("unhandledRejection", onRejection);
  });
  afterAll(() => {
    process.off("unhandledRejection", onRejection);
  });
  afterEach(() => {
    expect(rejections, "unhandled rejections").toEqual([]);
  });
}
