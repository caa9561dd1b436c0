/**
 * Periodic re-verification of verified custom domains. A customer who churns often
 * leaves their DNS pointing at the platform; if the name kept routing to their old
 * tenant, whoever registers the lapsed domain next (or the old tenant, with a
 * customer's traffic) would inherit it. So each verified custom domain must keep
 * its `_portcullis-verify` record: once the proof has been missing for longer than
 * the grace period, the domain moves to `failed`, stops routing, is recorded in
 * `admin_changes`, and an alert is posted.
 *
 * A missing proof is anything but the expected value: NXDOMAIN, no TXT, a wrong
 * value, and also resolution errors (a lame delegation is what an expired domain
 * often looks like) — fail closed; the grace period absorbs transient outages.
 * The same job releases claims nobody proved: a custom hostname still pending, or
 * failed and not verified again, for longer than `unverifiedTtlMs` is deleted (and
 * recorded), so a claim without proof cannot squat a name another tenant may own.
 *
 * `recheckDomains(now)` is the whole job, callable directly; `start` only schedules it.
 */
import { and, eq, lt, or } from "drizzle-orm";
import { newId } from "@portcullis/shared";
import type { Logger } from "pino";
import type { AlertSender } from "../alerts/index.ts";
import { type Db, nextVersion } from "../db/client.ts";
import { databaseUnavailable } from "../db/errors.ts";
import { adminChanges, hostnames, tenants } from "../db/schema/index.ts";
import type { Publisher } from "../publish/index.ts";
import { type TxtLookup, verificationName, verificationValue } from "./verify.ts";

export const RECHECK_ACTOR = "system:domain-recheck";

export interface RecheckReport {
  checked: number;
  /** Proof present. */
  confirmed: string[];
  /** Proof missing, still within the grace period. */
  missing: string[];
  /** Moved to `failed` by this run. */
  failed: string[];
  /** Unverified claims (pending or failed) released by this run. */
  released: string[];
}

export interface RecheckDeps {
  db: Db;
  publisher: Publisher;
  txtLookup: TxtLookup;
  alerts: AlertSender;
  graceMs: number;
  /** 0 keeps unverified claims forever. */
  unverifiedTtlMs?: number;
  log: Logger;
  /** Lookups in flight at once. */
  concurrency?: number;
  /** With several control planes: the timer runs the job only while this process holds the lease. */
  lease?: { readonly held: boolean };
}

type Proof = { present: true } | { present: false; reason: string };

export class DomainRechecker {
  readonly #deps: RecheckDeps;
  #timer: NodeJS.Timeout | null = null;
  #running: Promise<RecheckReport> | null = null;

  constructor(deps: RecheckDeps) {
    this.#deps = deps;
  }

  async #proof(hostname: string, token: string): Promise<Proof> {
    const answer = await this.#deps.txtLookup(verificationName(hostname));
    if (!answer.ok) return { present: false, reason: answer.code === "not_found" ? "no TXT record" : "DNS lookup failed" };
    return answer.records.includes(verificationValue(token))
      ? { present: true }
      : { present: false, reason: "TXT record without the expected value" };
  }

  /** One pass over every verified custom domain. Runs never overlap. */
  recheckDomains(now: Date = new Date()): Promise<RecheckReport> {
    if (!this.#running) this.#running = this.#run(now).finally(() => (this.#running = null));
    return this.#running;
  }

  async #run(now: Date): Promise<RecheckReport> {
    const { db, graceMs } = this.#deps;
    const rows = await db
      .select({
        id: hostnames.id,
        hostname: hostnames.hostname,
        token: hostnames.verificationToken,
        missingSince: hostnames.missingSince,
        tenantId: hostnames.tenantId,
        slug: tenants.slug,
      })
      .from(hostnames)
      .innerJoin(tenants, eq(tenants.id, hostnames.tenantId))
      .where(and(eq(hostnames.kind, "custom"), eq(hostnames.status, "verified")));
    const report: RecheckReport = { checked: rows.length, confirmed: [], missing: [], failed: [], released: [] };
    const failures: { hostname: string; tenantId: string; tenantSlug: string; missingSince: string; reason: string }[] = [];

    let next = 0;
    const worker = async () => {
      while (next < rows.length) {
        const row = rows[next++]!;
        const proof = await this.#proof(row.hostname, row.token);
        if (proof.present) {
          await db.update(hostnames).set({ lastCheckedAt: now, missingSince: null }).where(eq(hostnames.id, row.id));
          report.confirmed.push(row.hostname);
          continue;
        }
        const since = row.missingSince ?? now;
        if (now.getTime() - since.getTime() < graceMs) {
          // First miss starts the grace period; later misses within it only record the check.
          await db
            .update(hostnames)
            .set({ lastCheckedAt: now, missingSince: since })
            .where(and(eq(hostnames.id, row.id), eq(hostnames.status, "verified")));
          report.missing.push(row.hostname);
          continue;
        }
        const moved = await db.transaction(async (tx) => {
          // Conditional on still being verified: of two concurrent runs only one moves it (and alerts).
          const updated = await tx
            .update(hostnames)
            .set({ status: "failed", lastCheckedAt: now, missingSince: since, version: await nextVersion(tx) })
            .where(and(eq(hostnames.id, row.id), eq(hostnames.status, "verified")))
            .returning({ id: hostnames.id });
          if (updated.length === 0) return false;
          await tx.insert(adminChanges).values({
            time: now,
            actor: RECHECK_ACTOR,
            requestId: newId("request"),
            action: "hostname.failed",
            tenantId: row.tenantId,
            target: row.hostname,
            before: { status: "verified" },
            after: { status: "failed", missingSince: since.toISOString(), reason: proof.reason },
          });
          return true;
        });
        if (!moved) continue;
        report.failed.push(row.hostname);
        failures.push({
          hostname: row.hostname,
          tenantId: row.tenantId,
          tenantSlug: row.slug,
          missingSince: since.toISOString(),
          reason: proof.reason,
        });
        await this.#deps.publisher.publish({ hosts: [row.hostname] });
      }
    };
    // Every worker runs to its end even when one fails (Postgres went away mid-run): a
    // run is over only when none is still writing, and the domains already failed by
    // this run are still alerted on below, since no later run will fail them again.
    const settled = await Promise.allSettled(Array.from({ length: Math.min(this.#deps.concurrency ?? 8, rows.length) }, worker));
    let error = settled.find((s): s is PromiseRejectedResult => s.status === "rejected")?.reason as unknown;
    if (error === undefined) {
      try {
        report.released = await this.#releaseUnverified(now);
      } catch (e) {
        error = e;
      }
    }

    if (failures.length > 0) {
      this.#deps.log.warn({ domains: failures }, "custom domains lost their verification record and stopped routing");
      const sent = await this.#deps.alerts({
        type: "custom_domains_failed",
        severity: "critical",
        text: `Portcullis: ${failures.length} custom domain(s) stopped routing, verification record missing past the grace period: ${failures
          .map((f) => `${f.hostname} (tenant ${f.tenantSlug})`)
          .join(", ")}`,
        time: now.toISOString(),
        graceMs,
        domains: failures,
      });
      if (!sent.ok && sent.code !== "not_configured") this.#deps.log.error({ detail: sent.detail }, "alert not delivered");
    }
    if (error !== undefined) throw error;
    return report;
  }

  async #releaseUnverified(now: Date): Promise<string[]> {
    const ttl = this.#deps.unverifiedTtlMs ?? 0;
    if (ttl <= 0) return [];
    const cutoff = new Date(now.getTime() - ttl);
    const released = await this.#deps.db.transaction(async (tx) => {
      // Pending: since the claim. Failed: since the run that failed it (its last check).
      const rows = await tx
        .delete(hostnames)
        .where(
          and(
            eq(hostnames.kind, "custom"),
            or(
              and(eq(hostnames.status, "pending"), lt(hostnames.createdAt, cutoff)),
              and(eq(hostnames.status, "failed"), lt(hostnames.lastCheckedAt, cutoff)),
            ),
          ),
        )
        .returning({ hostname: hostnames.hostname, tenantId: hostnames.tenantId, status: hostnames.status });
      for (const row of rows) {
        await tx.insert(adminChanges).values({
          time: now,
          actor: RECHECK_ACTOR,
          requestId: newId("request"),
          action: "hostname.released",
          tenantId: row.tenantId,
          target: row.hostname,
          before: { status: row.status },
          after: null,
        });
      }
      return rows.map((r) => r.hostname);
    });
    if (released.length > 0) {
      this.#deps.log.info({ hostnames: released }, "released custom hostnames never (re)verified");
      await this.#deps.publisher.publish({ hosts: released });
    }
    return released;
  }

  /** Schedule `recheckDomains` every `intervalMs` (the first run one interval from now). */
  start(intervalMs: number): void {
    if (intervalMs <= 0 || this.#timer) return;
    this.#timer = setInterval(() => {
      if (this.#deps.lease !== undefined && !this.#deps.lease.held) return;
      this.recheckDomains().catch((error) => {
        // Postgres down is an outage the next run retries, not a fault of the job.
        if (databaseUnavailable(error))
          this.#deps.log.warn({ err: error }, "domain re-verification skipped: database unavailable");
        else this.#deps.log.error({ err: error }, "domain re-verification failed");
      });
    }, intervalMs);
    this.#timer.unref();
  }

  async stop(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
    await this.#running?.catch(() => {});
  }
}
