/**
 * Background jobs that keep their tenant: `enqueueForTenant` seals the verified
 * tenant into the job (in the caller's transaction, so a job exists exactly when the
 * rows it is about were committed), `runForTenant` opens the envelope and runs the
 * handler inside `withTenant`, and `jobWorker` takes jobs from a Postgres table with
 * `FOR UPDATE SKIP LOCKED`: concurrent workers never take the same job, and none
 * waits on another's lock. Delivery is at least once: a worker that dies mid-job
 * leaves it to be taken again when its lease ends, so handlers should be idempotent.
 *
 * The queue table has no `tenant_id` column and no RLS on purpose: a worker reads
 * every tenant's jobs, and trusts a job's tenant only through its signature.
 */
import { type SQL, sql } from "drizzle-orm";
import type { ContextKeys } from "../context/index.ts";
import type { JobRefusal } from "../errors.ts";
import type { TenantDatabases } from "../db/registry.ts";
import { queryOf, quoteIdent } from "../db/rls.ts";
import { type AnyPgDatabase, type TransactionOf, withTenant } from "../db/with-tenant.ts";
import type { Tenant } from "../tenant.ts";
import { type JobKeyOptions, openJob, sealJob } from "./envelope.ts";

export const DEFAULT_JOB_TABLE = "portcullis_jobs";

/** The statements creating the queue table (idempotent): run them in a migration. */
export function jobTableStatements(table = DEFAULT_JOB_TABLE): string[] {
  const t = quoteIdent(table);
  return [
    `CREATE TABLE IF NOT EXISTS ${t} (
      id bigserial PRIMARY KEY,
      queue text NOT NULL DEFAULT 'default',
      type text NOT NULL,
      envelope jsonb NOT NULL,
      status text NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'running', 'done', 'failed', 'refused')),
      attempts integer NOT NULL DEFAULT 0,
      run_at timestamptz NOT NULL DEFAULT now(),
      locked_until timestamptz,
      last_error text,
      created_at timestamptz NOT NULL DEFAULT now(),
      finished_at timestamptz
    )`,
    `CREATE INDEX IF NOT EXISTS ${quoteIdent(`${table}_ready`)} ON ${t} (queue, run_at, id) WHERE status IN ('queued', 'running')`,
  ];
}

/** Create the queue table. */
export async function createJobTable(db: Pick<AnyPgDatabase, "execute">, table = DEFAULT_JOB_TABLE): Promise<void> {
  const query = queryOf(db);
  for (const statement of jobTableStatements(table)) await query(statement);
}

type Executor = Pick<AnyPgDatabase, "execute">;

async function rows(db: Executor, query: SQL): Promise<Record<string, unknown>[]> {
  const result = (await db.execute(query)) as unknown;
  return (Array.isArray(result) ? result : (result as { rows: Record<string, unknown>[] }).rows) as Record<string, unknown>[];
}

export interface EnqueueOptions extends JobKeyOptions {
  queue?: string;
  table?: string;
  /** Not before (default now). */
  runAt?: Date;
  /** Envelope lifetime (default 24 h, counted from now; must reach past runAt). */
  ttlMs?: number;
  now?: number;
}

/** Queue a job for a verified tenant; answers the job's id. Pass the transaction of `withTenant` to commit them together. */
export async function enqueueForTenant(
  db: Executor,
  tenant: Tenant,
  job: { type: string; payload?: unknown },
  options: EnqueueOptions,
): Promise<string> {
  const envelope = sealJob(tenant, job.type, job.payload, options);
  const table = sql.raw(quoteIdent(options.table ?? DEFAULT_JOB_TABLE));
  const runAt = options.runAt ?? new Date(envelope.iat);
  const [row] = await rows(
    db,
    sql`insert into ${table} (queue, type, envelope, run_at)
        values (${options.queue ?? "default"}, ${job.type}, ${JSON.stringify(envelope)}::jsonb, ${runAt.toISOString()}::timestamptz)
        returning id::text as id`,
  );
  return String(row?.id);
}

export type JobHandler<D extends AnyPgDatabase> = (tx: TransactionOf<D>, payload: unknown, tenant: Tenant) => Promise<void>;

export type RunOutcome<T> = { ok: true; value: T; tenant: Tenant; type: string } | { ok: false; code: JobRefusal };

/** Where a job's statements run: one database, or the registry picking the tenant's. */
export type JobScope<D extends AnyPgDatabase> = D | TenantDatabases<D>;

function isRegistry<D extends AnyPgDatabase>(scope: JobScope<D>): scope is TenantDatabases<D> {
  return typeof (scope as { withTenant?: unknown }).withTenant === "function";
}

/**
 * Open a job's envelope and run `fn` inside `withTenant` for the tenant it names, or
 * refuse (missing, malformed, forged, altered or expired envelope) without running it.
 */
export async function runForTenant<D extends AnyPgDatabase, T>(
  scope: JobScope<D>,
  envelope: unknown,
  fn: (tx: TransactionOf<D>, payload: unknown, tenant: Tenant, type: string) => Promise<T>,
  options: { keys: ContextKeys; now?: number; role?: string },
): Promise<RunOutcome<T>> {
  const opened = openJob(envelope, options);
  if (!opened.ok) return opened;
  const { tenant, payload, type } = opened;
  const run = (tx: TransactionOf<D>) => fn(tx, payload, tenant, type);
  const value = isRegistry(scope)
    ? await scope.withTenant(tenant, run)
    : await withTenant(scope, tenant, run, options.role === undefined ? {} : { role: options.role });
  return { ok: true, value, tenant, type };
}

export interface JobWorkerOptions<D extends AnyPgDatabase> {
  /** The database holding the queue table. */
  db: D;
  /** Where jobs run (default: `db`). */
  scope?: JobScope<D>;
  keys: ContextKeys;
  handlers: Record<string, JobHandler<D>>;
  queue?: string;
  table?: string;
  /** How long a taken job is this worker's before another may take it (default 60 s). */
  leaseMs?: number;
  /** Attempts before a failing job is marked failed (default 5). */
  maxAttempts?: number;
  /** `withTenant`'s role, when `scope` is a database. */
  role?: string;
}

export type JobResult =
  | { ran: false }
  | { ran: true; id: string; status: "done" | "retry" | "failed" | "refused"; error?: string; tenantId?: string };

export function jobWorker<D extends AnyPgDatabase>(options: JobWorkerOptions<D>) {
  const table = sql.raw(quoteIdent(options.table ?? DEFAULT_JOB_TABLE));
  const queue = options.queue ?? "default";
  const leaseSeconds = (options.leaseMs ?? 60_000) / 1000;
  const maxAttempts = options.maxAttempts ?? 5;
  const scope = (options.scope ?? options.db) as JobScope<D>;
  const finish = (id: string, status: string, error: string | null) =>
    options.db.execute(sql`update ${table} set status = ${status}, last_error = ${error}, locked_until = null,
                           finished_at = now() where id = ${id}::bigint`);

  /** Take the next ready job, if any, and run it. */
  async function runNext(): Promise<JobResult> {
    const [job] = await rows(
      options.db,
      sql`update ${table} set status = 'running', attempts = attempts + 1,
                 locked_until = now() + make_interval(secs => ${leaseSeconds})
           where id = (select id from ${table}
                        where queue = ${queue}
                          and ((status = 'queued' and run_at <= now()) or (status = 'running' and locked_until < now()))
                        order by run_at, id
                        limit 1
                        for update skip locked)
       returning id::text as id, type, envelope, attempts`,
    );
    if (job === undefined) return { ran: false };
    const id = String(job.id);
    const envelope = typeof job.envelope === "string" ? JSON.parse(job.envelope) : job.envelope;
    try {
      const outcome = await runForTenant(
        scope,
        envelope,
        async (tx, payload, tenant, type) => {
          // The signed type decides the handler: the row's own column is only for humans.
          const handler = options.handlers[type];
          if (handler === undefined) throw new Error(`no handler for job type ${JSON.stringify(type)}`);
          await handler(tx, payload, tenant);
        },
        { keys: options.keys, ...(options.role === undefined ? {} : { role: options.role }) },
      );
      if (!outcome.ok) {
        await finish(id, "refused", outcome.code);
        return { ran: true, id, status: "refused", error: outcome.code };
      }
      await finish(id, "done", null);
      return { ran: true, id, status: "done", tenantId: outcome.tenant.id };
    } catch (error) {
      const message = String((error as Error)?.message ?? error).slice(0, 500);
      if (Number(job.attempts) >= maxAttempts) {
        await finish(id, "failed", message);
        return { ran: true, id, status: "failed", error: message };
      }
      // Back off 2^attempts seconds before the next try.
      await options.db.execute(sql`update ${table} set status = 'queued', last_error = ${message}, locked_until = null,
                                   run_at = now() + make_interval(secs => ${2 ** Number(job.attempts)}) where id = ${id}::bigint`);
      return { ran: true, id, status: "retry", error: message };
    }
  }

  /** Run jobs until none is ready; answers how many ran. */
  async function drain(): Promise<number> {
    let n = 0;
    while ((await runNext()).ran) n++;
    return n;
  }

  /** Poll every `intervalMs` (default 1 s) until stopped. */
  function start(intervalMs = 1_000): { stop(): Promise<void> } {
    let stopped = false;
    let timer: NodeJS.Timeout | undefined;
    let running: Promise<unknown> = Promise.resolve();
    const tick = () => {
      running = drain()
        .catch(() => 0)
        .finally(() => {
          if (!stopped) timer = setTimeout(tick, intervalMs);
        });
    };
    tick();
    return {
      async stop() {
        stopped = true;
        clearTimeout(timer);
        await running;
      },
    };
  }

  return { runNext, drain, start };
}
