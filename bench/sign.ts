/**
 * `npm run bench:sign`: what signing the tenant context costs per forwarded request,
 * with one tenant key and during a rotation's overlap (two keys), on this machine.
 * A loop over the router's own signer, after a warm-up; the median of five runs.
 */
import { type ContextKeyState, contextSigner } from "@portcullis/shared";

const sign = contextSigner("bench-master-secret-0123456789abcdef");
const values = {
  "x-tenant-id": "ten_01jabcdefghijk",
  "x-tenant-slug": "acme",
  "x-tenant-db": "pg-acme.internal:5432/acme",
  "x-tenant-auth": "hostname",
  "x-tenant-features": "apiAccess,customDomains",
  "x-request-id": "req_01jabcdefghijklmnop",
  "x-forwarded-for": "127.0.0.1",
  "x-forwarded-host": "acme.localhost",
  "x-forwarded-proto": "http",
};
const request = { method: "GET", host: "acme.localhost", target: "/api/v1/orders?page=2&limit=50" };
const cases: [string, ContextKeyState][] = [
  ["one key", { version: 1, previous: null }],
  ["rotation overlap (two keys)", { version: 2, previous: { version: 1, until: Number.MAX_SAFE_INTEGER } }],
];
const N = 200_000;
for (const [name, state] of cases) {
  for (let i = 0; i < 50_000; i++) sign(values["x-tenant-id"], state, values, request, Date.now());
  const runs: number[] = [];
  for (let r = 0; r < 5; r++) {
    const started = process.hrtime.bigint();
    for (let i = 0; i < N; i++) sign(values["x-tenant-id"], state, values, request, 1_700_000_000_000 + i);
    runs.push(Number(process.hrtime.bigint() - started) / N / 1_000);
  }
  runs.sort((a, b) => a - b);
  console.log(`${name}: ${(runs[2] as number).toFixed(2)} µs per signature (median of 5 runs of ${N})`);
}
