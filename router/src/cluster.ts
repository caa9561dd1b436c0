/**
 * Multi-process mode (`ROUTER_WORKERS` > 1): one primary process and N worker
 * processes (node:cluster). Every worker is a whole router (`startRouter`) on the
 * shared public port, accepting from its one listening socket. The workers share what
 * must be shared through Redis, as separate routers do: caches and invalidations,
 * leased rate limits and quotas, usage, the audit stream. What stays per process is
 * what is per router anyway: the concurrency limit (a tenant may have up to
 * N × `concurrency` requests in flight on the machine, as with N routers), the
 * in-memory tiers, the tenants that get a metric label of their own, and the alert
 * rate limit.
 *
 * The primary serves no request. It:
 * - gives every worker the same secrets (a secret generated because it was unset is
 *   generated once, here, so that every worker signs and verifies alike);
 * - serves the ops port for all of them: `/metrics` is every worker's metrics, each
 *   series labelled with the worker's slot (`worker="1"` … `"N"`, taken over by the
 *   worker that replaces one), so a worker that dies looks to Prometheus like a
 *   restarted target, never like a counter going down; `/readyz` is ready while not
 *   stopping and every listening worker answers ready; `/healthz` while a worker lives;
 * - replaces a worker that exits while the primary is not stopping (a crash, an OOM
 *   kill, a worker signalled on its own) after a short pause, and stops everything
 *   (exit 1) when workers keep crashing;
 * - on SIGTERM turns unready, has every worker drain (finish in-flight requests, flush
 *   audit and usage) and exits once they have: 0, or 1 if a worker failed meanwhile.
 *   SIGINT closes them at once (also after a SIGTERM).
 * A worker whose primary goes away drains and exits: no orphan keeps serving.
 */
import cluster, { type Worker } from "node:cluster";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { getRequestListener } from "@hono/node-server";
import { Hono } from "hono";
import type { Logger } from "pino";
import { AggregatorRegistry, type MetricObjectWithValues, type MetricValue } from "prom-client";
import type { RouterConfig } from "./config.ts";
import { startRouter } from "./server.ts";

type Metrics = MetricObjectWithValues<MetricValue<string>>[];

/** Primary → worker questions, answered with the same `id`. */
type Question = { type: "ready" | "metrics"; id: number };
type Answer = { type: "answer"; id: number; ready?: boolean; metrics?: Metrics };
/** Worker → primary: it received a stop signal itself and is leaving (not a crash). */
type Leaving = { type: "leaving" };

/** The worker's slot, from its primary: its metrics' `worker` label. */
const SLOT_ENV = "PORTCULLIS_WORKER_SLOT";
/** How long the primary waits for a worker's answer on the ops port (under a 1 s probe timeout). */
const ASK_TIMEOUT_MS = 800;
/** Pause before a worker that exited is replaced. */
const RESPAWN_DELAY_MS = 500;
/** More crashes than workers × this within `CRASH_WINDOW_MS`: the primary gives up (exit 1). */
const CRASHES_PER_WORKER = 3;
const CRASH_WINDOW_MS = 30_000;

export interface RunningPrimary {
  port: number;
  opsPort: number;
  workers: number;
  /** Resolves with the exit code the process should end with. */
  stopped: Promise<number>;
}

export async function runPrimary(config: Readonly<RouterConfig>, log: Logger): Promise<RunningPrimary> {
  // Every worker accepts from the one shared listening socket (the kernel's queue), not
  // from connections the primary hands over: a connection handed to a worker in the
  // moment it dies would hang, while one still queued is taken by another worker.
  // Fixed at the first fork.
  cluster.schedulingPolicy = cluster.SCHED_NONE;

  const live = new Map<Worker, number>();
  const listening = new Set<Worker>();
  /** Workers that said they were stopping on their own: their exit is not a crash. */
  const leaving = new WeakSet<Worker>();
  const crashes: number[] = [];
  let started = false;
  let stopping: "drain" | "close" | null = null;
  let failed = false;
  let nextId = 1;
  const pending = new Map<number, (answer: Answer | null) => void>();
  let resolveStopped: (code: number) => void = () => {};
  const stopped = new Promise<number>((r) => {
    resolveStopped = r;
  });

  const ask = (worker: Worker, type: Question["type"]) =>
    new Promise<Answer | null>((resolve) => {
      if (!worker.isConnected()) {
        resolve(null);
        return;
      }
      const id = nextId++;
      const settle = (answer: Answer | null) => {
        clearTimeout(timer);
        pending.delete(id);
        resolve(answer);
      };
      const timer = setTimeout(() => settle(null), ASK_TIMEOUT_MS);
      pending.set(id, settle);
      // A channel closing under us reports through the callback (and the worker's
      // `error` event), never as a throw.
      worker.send({ type, id } satisfies Question, (error: Error | null) => {
        if (error) settle(null);
      });
    });

  let opsServer: Server | null = null;
  let finished = false;
  const finish = async () => {
    if (finished) return;
    finished = true;
    if (opsServer !== null) {
      const server = opsServer;
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    }
    resolveStopped(failed ? 1 : 0);
  };

  const stop = (how: "drain" | "close") => {
    // SIGINT after SIGTERM: stop waiting for the drain.
    if (stopping === how || stopping === "close") return;
    stopping = how;
    if (live.size === 0) {
      void finish();
      return;
    }
    for (const worker of live.keys()) worker.process.kill(how === "drain" ? "SIGTERM" : "SIGINT");
  };
  // `on`, not `once`, and before the first fork: a signal during start-up, or a second
  // one from a supervisor repeating itself, must not take the default action and
  // leave the workers without their primary.
  process.on("SIGTERM", () => stop("drain"));
  process.on("SIGINT", () => stop("close"));

  const fork = (slot: number): Promise<number> => {
    const worker = cluster.fork({
      CONTEXT_SIGNING_SECRET: config.contextSigningSecret,
      SESSION_SECRET: config.sessionSecret,
      KEY_SERVICE_TOKEN: config.keyServiceToken,
      [SLOT_ENV]: String(slot),
    });
    live.set(worker, slot);
    worker.on("error", (error) => log.warn({ err: error, pid: worker.process.pid }, "router worker channel error"));
    worker.on("listening", () => listening.add(worker));
    worker.on("message", (m: Answer | Leaving) => {
      if (m.type === "leaving") leaving.add(worker);
      else if (m.type === "answer") pending.get(m.id)?.(m);
    });
    worker.on("exit", (code, signal) => {
      live.delete(worker);
      const served = listening.delete(worker);
      // A worker still loading when the stop came may be ended by the signal itself,
      // before its handlers exist: it never accepted a connection, so nothing was cut.
      const clean = (code === 0 && signal === null) || (stopping !== null && !served && signal === "SIGTERM");
      if (stopping !== null) {
        if (!clean) {
          failed = true;
          log.error({ pid: worker.process.pid, code, signal }, "router worker failed while stopping");
        }
        if (live.size === 0) void finish();
        return;
      }
      if (!started) return; // start-up failed: runPrimary rejects, nothing is replaced
      if (leaving.has(worker) && clean) log.info({ pid: worker.process.pid, slot }, "router worker stopped; starting another");
      else {
        log.error({ pid: worker.process.pid, code, signal, slot }, "router worker died; starting another");
        const now = Date.now();
        crashes.push(now);
        while (crashes.length > 0 && (crashes[0] as number) < now - CRASH_WINDOW_MS) crashes.shift();
        if (crashes.length > config.workers * CRASHES_PER_WORKER) {
          log.fatal({ crashes: crashes.length }, "router workers keep dying; stopping");
          failed = true;
          stop("drain");
          return;
        }
      }
      setTimeout(() => {
        if (stopping === null) void fork(slot).catch((error) => log.error({ err: error, slot }, "router worker did not start"));
      }, RESPAWN_DELAY_MS);
    });
    return new Promise<number>((resolve, reject) => {
      worker.once("listening", (address: { port: number }) => resolve(address.port));
      worker.once("exit", (code) => reject(new Error(`router worker exited before listening (${code})`)));
    });
  };

  const ports = await Promise.all(Array.from({ length: config.workers }, (_, i) => fork(i + 1)));
  started = true;
  const port = ports[0] as number;

  const ops = new Hono();
  ops.get("/healthz", (c) => (live.size > 0 ? c.json({ ok: true, workers: live.size }) : c.json({ ok: false }, 503)));
  ops.get("/readyz", async (c) => {
    // A worker still starting is not asked (it is not serving yet); one listening must answer ready.
    const serving = [...listening];
    if (stopping !== null || serving.length === 0) return c.json({ ready: false }, 503);
    const answers = await Promise.all(serving.map((w) => ask(w, "ready")));
    const ready = answers.every((a) => a?.ready === true);
    return ready ? c.json({ ready: true, workers: answers.length }) : c.json({ ready: false }, 503);
  });
  ops.get("/metrics", async (c) => {
    // Each worker's series carry its `worker` label: one that does not answer in time
    // is missing from this scrape, which Prometheus reads as a missing series, not as a
    // counter reset.
    const answers = await Promise.all([...live.keys()].map((w) => ask(w, "metrics")));
    const all = answers.flatMap((a) => (a?.metrics ? [a.metrics] : []));
    if (all.length === 0) return c.json({ error: { code: "unavailable", message: "No router worker answered." } }, 503);
    const registry = AggregatorRegistry.aggregate(all);
    return c.body(await registry.metrics(), 200, { "content-type": registry.contentType });
  });
  ops.notFound((c) => c.json({ error: { code: "not_found", message: "Not found.", requestId: "" } }, 404));
  const server = createServer(getRequestListener(ops.fetch));
  opsServer = server;
  const opsPort = await new Promise<number>((resolve, reject) => {
    server.once("error", reject);
    server.listen(config.opsPort, config.opsHost, () => resolve((server.address() as AddressInfo).port));
  });
  // Stopped while starting: the workers are already stopping.
  if (stopping !== null && live.size === 0) void finish();
  return { port, opsPort, workers: config.workers, stopped };
}

/** A worker: a whole router without its own ops port, answering its primary. */
export async function runWorker(config: Readonly<RouterConfig>, log: Logger): Promise<void> {
  let leaving: "drain" | "close" | null = null;
  let router: Awaited<ReturnType<typeof startRouter>> | null = null;
  const leave = (how: "drain" | "close", announce: boolean) => {
    // A close after a drain (SIGINT after SIGTERM) cuts the drain short.
    if (leaving === how || leaving === "close") return;
    leaving = how;
    if (announce && process.connected) process.send?.({ type: "leaving" } satisfies Leaving);
    if (router === null) process.exit(0);
    void (how === "drain" ? router.drain() : router.close()).then(() => process.exit(0));
  };
  // Node's own handler exits a worker at once when its primary's channel closes,
  // cutting requests in flight and losing queued audit events and usage. Marked as an
  // intended disconnect, it leaves the worker to drain instead.
  process.prependOnceListener("disconnect", () => {
    if (cluster.worker) cluster.worker.exitedAfterDisconnect = true;
    leave("drain", false);
  });
  // `on`, not `once`: a worker signalled with its process group gets SIGTERM from the
  // supervisor and again from its primary; the second must not kill it mid-drain.
  process.on("SIGTERM", () => leave("drain", true));
  process.on("SIGINT", () => leave("close", true));

  const slot = process.env[SLOT_ENV] ?? "0";
  const running = await startRouter(config, { ops: false, log, metricLabels: { worker: slot } });
  router = running;
  process.on("message", (raw) => {
    const m = raw as Question;
    const reply = (answer: Answer) => {
      if (process.connected) process.send?.(answer, undefined, undefined, () => {});
    };
    if (m.type === "ready") reply({ type: "answer", id: m.id, ready: running.ready() });
    else if (m.type === "metrics")
      void running.scrape().then(
        (metrics) => reply({ type: "answer", id: m.id, metrics }),
        (error) => log.error({ err: error }, "metrics for the primary failed"),
      );
  });
}
