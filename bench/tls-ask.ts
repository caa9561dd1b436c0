/**
 * `npm run bench:tls-ask`: how fast the on-demand TLS permission endpoint answers on
 * a warm cache — the in-process lookup alone, and the whole HTTP exchange on the admin
 * listener (sequential, one keep-alive connection), against real Postgres.
 */
import { performance } from "node:perf_hooks";
import { request } from "undici";
import { startTestStack } from "../test/helpers/stack.ts";

const stack = await startTestStack({ backend: "real" });
try {
  const hosts: string[] = [];
  for (let i = 0; i < 20; i++) hosts.push((await stack.tenant(`tls${i}`, { bind: true })).host);
  const tls = stack.cp.tlsAsk;
  for (const h of hosts) await tls.ask(h); // warm

  const N = 200_000;
  let t = performance.now();
  for (let i = 0; i < N; i++) {
    const a = tls.ask(hosts[i % hosts.length] as string);
    if (a instanceof Promise) throw new Error("warm answer was not synchronous");
  }
  const perLookupUs = ((performance.now() - t) * 1000) / N;

  const samples: number[] = [];
  for (let i = 0; i < 2_000; i++) {
    const url = `http://127.0.0.1:${stack.adminPort}/v1/tls/ask?domain=${hosts[i % hosts.length]}`;
    t = performance.now();
    const res = await request(url);
    await res.body.dump();
    samples.push(performance.now() - t);
    if (res.statusCode !== 200) throw new Error(`ask answered ${res.statusCode}`);
  }
  samples.sort((a, b) => a - b);
  const q = (p: number) => (samples[Math.floor(p * (samples.length - 1))] as number).toFixed(3);
  console.log(
    `tls ask, warm: in-process lookup ${perLookupUs.toFixed(3)} µs; HTTP p50 ${q(0.5)} ms, p99 ${q(0.99)} ms (n=${samples.length})`,
  );
} finally {
  await stack.close();
}
