/**
 * The on-demand TLS ask endpoint (`GET /v1/tls/ask`, unauthenticated,
 * called by Caddy) must not turn a flood of random names into a flood of database
 * queries. Per source address, names that need a database query are bounded by a
 * token bucket (TLS_ASK_RATE_PER_SECOND, TLS_ASK_BURST); over it the answer is 429
 * with Retry-After and no query. Cached answers (positive and negative) cost nothing
 * and are never limited; a write invalidates them at once, even for a source that is
 * over its limit. Real sockets (several source addresses on loopback), real Postgres.
 */
import { request } from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startDnsServer, type TestDnsServer } from "../helpers/dns-server.ts";
import { startTestStack, type TestStack } from "../helpers/stack.ts";

const BURST = 8;
const RATE = 0.5;

/** One ask, sent from `source` (any 127.0.0.0/8 address works on loopback). */
function ask(port: number, domain: string, source = "127.0.0.1") {
  return new Promise<{ status: number; retryAfter: string | undefined; body: any }>((resolve, reject) => {
    const req = request(
      { host: "127.0.0.1", port, localAddress: source, path: `/v1/tls/ask?domain=${encodeURIComponent(domain)}`, agent: false },
      (res) => {
        let text = "";
        res.on("data", (c: Buffer) => (text += c.toString("utf8")));
        res.on("end", () =>
          resolve({
            status: res.statusCode ?? 0,
            retryAfter: res.headers["retry-after"] as string | undefined,
            body: JSON.parse(text),
          }),
        );
      },
    );
    req.on("error", reject);
    req.end();
  });
}

describe("TLS ask: bounded database work per source", () => {
  let dns: TestDnsServer;
  let stack: TestStack;
  const queries = () => stack.cp.tlsAsk.stats.queries;

  beforeAll(async () => {
    dns = await startDnsServer();
    stack = await startTestStack({
      backend: "real",
      env: {
        DNS_SERVERS: dns.address,
        DOMAIN_RECHECK_INTERVAL_MS: "0",
        TLS_ASK_RATE_PER_SECOND: String(RATE),
        TLS_ASK_BURST: String(BURST),
      },
    });
    await stack.tenant("floodco");
    // Cached before the flood (positive answers live 60 s): a known name Caddy asks for.
    expect((await ask(stack.adminPort, "floodco.localhost")).status).toBe(200);
  });
  afterAll(async () => {
    await stack?.close();
    await dns?.close();
  });

  it("answers a flood of distinct unknown names with at most burst + rate × elapsed queries, the rest 429 without a query", async () => {
    const N = 60;
    const before = queries();
    const started = performance.now();
    const answers = [];
    for (let i = 0; i < N; i++) answers.push(await ask(stack.adminPort, `random-${i}.flood.test`));
    const elapsedS = (performance.now() - started) / 1000;

    const answered = answers.filter((a) => a.status === 404);
    const limited = answers.filter((a) => a.status === 429);
    expect(answered.length + limited.length).toBe(N);
    // The bound holds however slow the machine: refill is computed from the time taken.
    const bound = BURST + Math.ceil(elapsedS * RATE) + 1;
    expect(answered.length).toBeLessThanOrEqual(bound);
    expect(limited.length).toBeGreaterThanOrEqual(N - bound);
    for (const a of limited) {
      expect(a.body).toMatchObject({ allowed: false, code: "rate_limited" });
      expect(Number(a.retryAfter)).toBeGreaterThanOrEqual(1);
    }
    // Exactly one query per answered name; none for a refusal.
    expect(queries() - before).toBe(answered.length);
  });

  it("answers repeated asks for one name from the cache, also when the source is over its limit", async () => {
    // 127.0.0.1 is over its limit after the flood; cached names are still answered.
    const before = queries();
    for (let i = 0; i < 20; i++) {
      const res = await ask(stack.adminPort, i % 2 ? "floodco.localhost" : "FLOODCO.localhost.");
      expect(res.status).toBe(200);
    }
    expect(queries() - before).toBe(0);

    // A negative answer is cached too: from a fresh source, one query for ten asks.
    const other = "127.0.0.2";
    const first = await ask(stack.adminPort, "nobody.flood.test", other);
    expect(first.status).toBe(404);
    const after = queries();
    for (let i = 0; i < 10; i++) expect((await ask(stack.adminPort, "NOBODY.flood.test.", other)).status).toBe(404);
    expect(queries() - after).toBe(0);
  });

  it("keeps one bucket per source: another address is not limited by the first one's flood", async () => {
    const fresh = "127.0.0.3";
    expect((await ask(stack.adminPort, "someone-else.flood.test", fresh)).status).toBe(404);
    expect((await ask(stack.adminPort, "yet-another.flood.test")).status).toBe(429);
  });

  it("answers a name verified after a negative answer positively at once, even to a source over its limit", async () => {
    const name = "late.flood-tls.test";
    const claimed = (await stack.admin("POST", "/v1/tenants/floodco/hostnames", { hostname: name })).json();
    dns.setTxt(claimed.verification.name, [claimed.verification.value]);
    const pending = await ask(stack.adminPort, name, "127.0.0.4");
    expect(pending.status).toBe(404);
    expect(pending.body.code).toBe("not_verified");
    // Exhaust 127.0.0.4 too, so nothing but the invalidation can answer the next ask.
    for (let i = 0; i < BURST + 4; i++) await ask(stack.adminPort, `exhaust-${i}.flood.test`, "127.0.0.4");
    expect((await ask(stack.adminPort, "one-more.flood.test", "127.0.0.4")).status).toBe(429);

    expect((await stack.admin("POST", `/v1/tenants/floodco/hostnames/${name}/verify`)).status).toBe(200);
    const verified = await ask(stack.adminPort, name, "127.0.0.4");
    expect(verified.status).toBe(200);
    expect(verified.body).toMatchObject({ allowed: true, hostname: name });

    expect((await stack.admin("DELETE", `/v1/tenants/floodco/hostnames/${name}`)).status).toBe(204);
    expect((await ask(stack.adminPort, name, "127.0.0.4")).status).toBe(404);
  });
});
