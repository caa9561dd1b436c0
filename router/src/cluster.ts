/**
 * Multi-process mode (`ROUTER_WORKERS` > 1): one primary process and N worker
 * processes (node:cluster). Every worker is a whole router (`startRouter`) on the
 * shared public port; the primary hands each new connection to the next worker. The
 * workers share what must be shared through Redis, as separate routers do: caches and
 * invalidations, leased rate limits and quotas, usage, the audit stream. What stays
 * per process is what is per router anyway: the concurrency limit (a tenant may have
 * up to N × `concurrency` requests in flight on the machine, as with N routers) and
 * the in-memory tiers.
 *
 * The primary serves no request. It:
 * - gives every worker the same secrets (a secret generated because it was unset is
 *   generated once, here, so that every worker signs and verifies alike);
 * - serves the ops port for all of them: `/metrics` is the workers' metrics summed
 *   (each worker's registry read over IPC; gauges are summed too, so
 *   `portcullis_limiter_degraded` counts degraded workers), `/readyz` is ready while
 *   not draining and every live worker answers ready, `/healthz` while a worker lives;
 * - replaces a worker that dies (crash, OOM kill) after a short pause, and stops
 *   everything (exit 1) when workers keep dying;
 * - on SIGTERM turns unready, has every worker drain (finish in-flight requests, flush
 *   audit and usage) and exits 0 once they have; SIGINT closes them at once.
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

/** How long the primary waits for a worker's answer on the ops port. */
const ASK_TIMEOUT_MS = 2_000;
/** Pause before a dead worker is replaced. */
const RESPAWN_DELAY_MS = 500;
/** More deaths than workers × this within `CRASH_WINDOW_MS`: the primary gives up (exit 1). */
const CRASHES_PER_WORKER = 3;
const CRASH_WINDOW_MS = 30_000;

/** The settings every worker gets: the environment, plus the secrets as the primary holds them. */
function workerEnv(config: Readonly<RouterConfig>): Record<string, string> {
  return {
    CONTEXT_SIGNING_SECRET: config.contextSigningSecret,
    SESSION_SECRET: config.sessionSecret,
    KEY_SERVICE_TOKEN: config.keyServiceToken,
  };
}

export interface RunningPrimary {
  port: number;
  opsPort: number;
  workers: number;
  /** Resolves with the exit code the process should end with. */
  stopped: Promise<number>;
}

export async function runPrimary(config: Readonly<RouterConfig>, log: Logger): Promise<RunningPrimary> {
  const live = new Set<Worker>();
  /** Workers that said they were stopping on their own: their exit is not a crash. */
  const leaving = new WeakSet<Worker>();
  const deaths: number[] = [];
  let stopping: "drain" | "close" | null = null;
  let exitCode = 0;
  let nextId = 1;
  const pending = new Map<number, (answer: Answer) => void>();
  let resolveStopped: (code: number) => void = () => {};
  const stopped = new Promise<number>((r) => {
    resolveStopped = r;
  });

  const ask = (worker: Worker, type: Question["type"]) =>
    new Promise<Answer | null>((resolve) => {
      const id = nextId++;
      const timer = setTimeout(() => {
        pending.delete(id);
        resolve(null);
      }, ASK_TIMEOUT_MS);
      pending.set(id, (answer) => {
        clearTimeout(timer);
        pending.delete(id);
        resolve(answer);
      });
      try {
        worker.send({ type, id } satisfies Question);
      } catch {
        clearTimeout(timer);
        pending.delete(id);
        resolve(null);
      }
    });

  let opsServer: Server | null = null;
  const finish = async (code: number) => {
    if (opsServer !== null) {
      opsServer.closeAllConnections();
      await new Promise<void>((r) => opsServer?.close(() => r()));
    }
    resolveStopped(code);
  };

  const stop = (how: "drain" | "close", code = 0) => {
    if (stopping !== null) return;
    stopping = how;
    if (live.size === 0) {
      void finish(code);
      return;
    }
    exitCode = code;
    for (const worker of live) worker.process.kill(how === "drain" ? "SIGTERM" : "SIGINT");
  };

  const fork = (): Promise<number> => {
    const worker = cluster.fork(workerEnv(config));
    live.add(worker);
    worker.on("message", (m: Answer | Leaving) => {
      if (m.type === "leaving") leaving.add(worker);
      else if (m.type === "answer") pending.get(m.id)?.(m);
    });
    worker.on("exit", (code, signal) => {
      live.delete(worker);
      if (stopping !== null || leaving.has(worker)) {
        if (live.size === 0) void finish(stopping === null ? 0 : exitCode);
        return;
      }
      log.error({ pid: worker.process.pid, code, signal }, "router worker died; starting another");
      const now = Date.now();
      deaths.push(now);
      while (deaths.length > 0 && (deaths[0] as number) < now - CRASH_WINDOW_MS) deaths.shift();
      if (deaths.length > config.workers * CRASHES_PER_WORKER) {
        log.fatal({ deaths: deaths.length }, "router workers keep dying; stopping");
        stop("drain", 1);
        return;
      }
      setTimeout(() => {
        if (stopping === null) void fork().catch((error) => log.error({ err: error }, "router worker did not start"));
      }, RESPAWN_DELAY_MS).unref();
    });
    return new Promise<number>((resolve, reject) => {
      worker.once("listening", (address: { port: number }) => resolve(address.port));
      worker.once("exit", (code) => reject(new Error(`router worker exited before listening (${code})`)));
    });
  };

  // Every worker accepts from the one shared listening socket (the kernel's queue), not
  // from connections the primary hands over: a connection handed to a worker in the
  // moment it dies would hang, while one still queued is taken by another worker.
  cluster.schedulingPolicy = cluster.SCHED_NONE;
  const ports = await Promise.all(Array.from({ length: config.workers }, () => fork()));
  const port = ports[0] as number;

  const ops = new Hono();
  ops.get("/healthz", (c) => (live.size > 0 ? c.json({ ok: true, workers: live.size }) : c.json({ ok: false }, 503)));
  ops.get("/readyz", async (c) => {
    if (stopping !== null || live.size === 0) return c.json({ ready: false }, 503);
    const answers = await Promise.all([...live].map((w) => ask(w, "ready")));
    const ready = answers.every((a) => a?.ready === true);
    return ready ? c.json({ ready: true, workers: answers.length }) : c.json({ ready: false }, 503);
  });
  ops.get("/metrics", async (c) => {
    const answers = await Promise.all([...live].map((w) => ask(w, "metrics")));
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

  // `on`, not `once`: a second signal (a supervisor repeating itself) must not take the
  // default action and kill the primary mid-drain. `stop` acts once.
  process.on("SIGTERM", () => stop("drain"));
  process.on("SIGINT", () => stop("close"));
  return { port, opsPort, workers: config.workers, stopped };
}

/** A worker: a whole router without its own ops port, answering its primary. */
export async function runWorker(config: Readonly<RouterConfig>, log: Logger): Promise<void> {
  const router = await startRouter(config, { ops: false, log });
  process.on("message", (raw) => {
    const m = raw as Question;
    if (m.type === "ready") process.send?.({ type: "answer", id: m.id, ready: router.ready() } satisfies Answer);
    else if (m.type === "metrics")
      void router.scrape().then(
        (metrics) => process.send?.({ type: "answer", id: m.id, metrics } satisfies Answer),
        (error) => log.error({ err: error }, "metrics for the primary failed"),
      );
  });
  let leaving = false;
  const leave = (how: "drain" | "close", announce: boolean) => {
    if (leaving) return;
    leaving = true;
    if (announce && process.connected) process.send?.({ type: "leaving" } satisfies Leaving);
    void (how === "drain" ? router.drain() : router.close()).then(() => process.exit(0));
  };
  // A signal may come from the primary or straight from a supervisor that signals the
  // whole process group: either way the worker drains, and says so.
  // `on`, not `once`: a worker signalled with its process group gets SIGTERM from the
  // supervisor and again from its primary; the second must not kill it mid-drain.
  process.on("SIGTERM", () => leave("drain", true));
  process.on("SIGINT", () => leave("close", true));
  // The primary is gone: nothing would replace or stop this worker.
  process.once("disconnect", () => leave("drain", false));
}
