/**
 * Job leases on a real Postgres: one holder at a time, handed over at once when the
 * holder stops, taken over when it dies (stops renewing) once the row expires, and
 * never believed held by a holder past its own lapse.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { JobLease } from "@portcullis/control-plane";
import { createTestDatabase, type TestDatabase } from "../helpers/postgres.ts";
import { eventually } from "../helpers/stack.ts";

describe("JobLease (real Postgres)", () => {
  let testDb: TestDatabase;
  const leases: JobLease[] = [];

  beforeAll(async () => {
    testDb = await createTestDatabase();
  });
  afterAll(async () => {
    for (const l of leases) await l.stop();
    await testDb?.drop();
  });

  function lease(name: string, holder: string, ttlMs = 1_500) {
    const l = new JobLease({ db: testDb.database.db, name, holder, ttlMs, renewMs: 300, marginMs: 300 });
    leases.push(l);
    return l;
  }

  it("has one holder at a time; the holder renews; a stopped holder hands over at once", async () => {
    const a = lease("job-1", "a");
    const b = lease("job-1", "b");
    expect(await a.renew()).toBe(true);
    expect(await b.renew()).toBe(false);
    expect(a.held).toBe(true);
    expect(b.held).toBe(false);
    const fence = a.fence;
    // Renewing keeps the holding (and its fence).
    expect(await a.renew()).toBe(true);
    expect(a.fence).toBe(fence);
    expect(await b.renew()).toBe(false);

    await a.stop();
    expect(a.held).toBe(false);
    expect(await b.renew()).toBe(true);
    // A new holder, a greater fence.
    expect(b.fence).toBeGreaterThan(fence);
    expect(await a.renew()).toBe(false);
  });

  it("a holder that dies (stops renewing) is taken over once its row expires, and counts itself out first", async () => {
    const dead = lease("job-2", "dead");
    const heir = lease("job-2", "heir");
    expect(await dead.renew()).toBe(true);
    expect(await heir.renew()).toBe(false);
    heir.start();
    // The dead holder never renews again: by its own clock it stops holding at
    // ttl − margin, before the row expires for the heir at ttl. Never both at once.
    let both = 0;
    await eventually(
      () => {
        if (dead.held && heir.held) both++;
        return heir.held;
      },
      5_000,
      5,
    );
    expect(both).toBe(0);
    expect(dead.held).toBe(false);
    expect(await dead.renew()).toBe(false);
  });

  it("leases of different jobs are independent", async () => {
    const x = lease("job-3", "same");
    const y = lease("job-4", "other");
    expect(await x.renew()).toBe(true);
    expect(await y.renew()).toBe(true);
  });
});
