/**
 * The steady traffic of `npm run faults`, in a process of its own so that the
 * harness's work (admin calls, SQL, fault injection, the demo upstreams) does not
 * stall its timers: an open-loop generator at a fixed rate, alternating between the
 * routers, spread over lanes (a tenant by Host, or an API key on the API hostname),
 * every answer checked (check.ts) and sent to the harness in batches over IPC.
 *
 * Settings: one JSON argument (LoadSettings). Commands on IPC: `{type: "delay", ms,
 * every}` asks the upstream to wait `ms` on every `every`-th request; `{type: "stop"}`
 * stops sending, waits for what is in flight, sends the last samples and exits.
 */
import { Pool } from "undici";
import { classify, type Expected, type Sample } from "./check.ts";

export interface Lane {
  name: string;
  host: string;
  authorization?: string;
  expected: Expected;
  weight: number;
}

export interface LoadSettings {
  routers: number[];
  lanes: Lane[];
  rate: number;
  timeoutMs: number;
}

const s = JSON.parse(process.argv[2] ?? "{}") as LoadSettings;
const pools = s.routers.map(
  (port) =>
    new Pool(`http://127.0.0.1:${port}`, {
      connections: 256,
      pipelining: 1,
      keepAliveTimeout: 4_000,
      headersTimeout: s.timeoutMs,
      bodyTimeout: s.timeoutMs,
      connect: { timeout: 5_000 },
    }),
);
// The lanes interleaved by weight, so that no lane's requests come in bursts.
const order: Lane[] = [];
const rounds = Math.max(...s.lanes.map((l) => l.weight));
for (let r = 0; r < rounds; r++) for (const lane of s.lanes) if (r < lane.weight) order.push(lane);

let batch: Sample[] = [];
let seq = 0;
/** Send time of each request in flight, in the order they were sent. */
const pending = new Map<number, number>();
let delayMs = 0;
let delayEvery = 0;
let stopping = false;

function send(): void {
  const n = seq++;
  const router = n % pools.length;
  const lane = order[Math.floor(n / pools.length) % order.length] as Lane;
  const delay = delayEvery > 0 && n % delayEvery === 0 ? delayMs : 0;
  const headers: Record<string, string> = { host: lane.host, "x-faults-seq": String(n) };
  if (lane.authorization) headers.authorization = lane.authorization;
  const t = Date.now();
  const started = performance.now();
  pending.set(n, t);
  const done = (rest: Omit<Sample, "seq" | "lane" | "router" | "t" | "ms" | "delay">) => {
    pending.delete(n);
    batch.push({ seq: n, lane: lane.name, router, t, ms: performance.now() - started, delay, ...rest });
  };
  (pools[router] as Pool)
    .request({
      method: "GET",
      path: `/faults/${lane.name.replace(/[^A-Za-z0-9-]/g, "-")}${delay ? `?delay=${delay}` : ""}`,
      headers,
    })
    .then(async (res) => {
      const body = await res.body.text();
      done({ status: res.statusCode, ...classify(lane.expected, res.statusCode, body, res.headers) });
    })
    .catch((error: { code?: string; message?: string }) => {
      done({ status: 0, cls: "error", code: error.code ?? error.message ?? "error", rid: "", app: "" });
    });
}

const start = performance.now();
const tick = setInterval(() => {
  if (stopping) return;
  const due = Math.floor(((performance.now() - start) * s.rate) / 1000);
  while (seq < due) send();
}, 2);

/** The samples so far, and when the oldest request still unanswered was sent (null: none). */
const report = (last: boolean, then?: () => void) => {
  const oldest = pending.values().next();
  const message = { type: "samples", samples: batch, oldest: oldest.done ? null : oldest.value, last };
  if (then) process.send?.(message, undefined, undefined, () => then());
  else process.send?.(message);
  batch = [];
};
const flush = setInterval(() => report(false), 200);

process.on("message", (m: { type: string; ms?: number; every?: number }) => {
  if (m.type === "delay") {
    delayMs = m.ms ?? 0;
    delayEvery = m.every ?? 0;
  } else if (m.type === "stop") {
    stopping = true;
    clearInterval(tick);
    const wait = setInterval(() => {
      if (pending.size > 0) return;
      clearInterval(wait);
      clearInterval(flush);
      report(true, () => {
        void Promise.all(pools.map((p) => p.destroy())).finally(() => process.exit(0));
      });
    }, 20);
  }
});
process.on("disconnect", () => process.exit(0));
process.send?.({ type: "ready" });
