/**
 * Public-listener exposure: the router's ops endpoints (`/healthz`, `/readyz`,
 * `/metrics`), the admin API and the key service live on other listeners; the
 * public one serves tenants only, whatever the Host, target form or path encoding
 * (cf. Envoy admin-interface and Traefik `api.insecure` dashboard exposures).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SECRETS, startTestStack, type TestStack } from "../helpers/stack.ts";
import { type Attack, exchange, expectRefused, type Guarded, type GuardedTenant, guardedTenant, req } from "./lib.ts";

const A = "acme.localhost";

/** The cases, once the listeners' ports are known. */
function exposures(ops: number, admin: number): Attack[] {
  const bearer = `Authorization: Bearer ${SECRETS.ADMIN_TOKEN}`;
  return [
    {
      name: "/metrics with an IP-literal Host",
      source: "Envoy admin-interface exposure (admin reachable through a listener); contract 'Processes'",
      bytes: req("GET /metrics HTTP/1.1", "Host: 127.0.0.1"),
      status: 400,
      reason: "invalid_host",
    },
    {
      name: "/metrics on the platform domain itself",
      source: "contract rule 1 (no default tenant); Prometheus endpoint exposure",
      bytes: req("GET /metrics HTTP/1.1", "Host: localhost"),
      status: 404,
      reason: "unknown_host",
    },
    {
      name: "/readyz with the ops port in the Host",
      source: "Traefik api.insecure / dashboard exposure advisories",
      bytes: req("GET /readyz HTTP/1.1", `Host: localhost:${ops}`),
      status: 404,
      reason: "unknown_host",
    },
    {
      name: "/healthz on the API hostname",
      source: "contract rule 2 (the API hostname serves key holders only)",
      bytes: req("GET /healthz HTTP/1.1", "Host: api.localhost"),
      status: 401,
      reason: "key_missing",
    },
    {
      name: "percent-encoded /metrics",
      source: "RFC 3986 §2.4 (decoding-based ACL bypass; Envoy CVE-2019-9901 class)",
      bytes: req("GET /%6d%65trics HTTP/1.1", "Host: localhost"),
      status: 404,
      reason: "unknown_host",
    },
    {
      name: "absolute-form target aimed at the ops listener",
      source: "RFC 9112 §3.2.2; SSRF through a forward-proxy-capable edge",
      bytes: req(`GET http://127.0.0.1:${ops}/metrics HTTP/1.1`, `Host: ${A}`),
      status: 400,
      reason: "absolute_form_mismatch",
    },
    {
      name: "admin API with the admin token on the public listener",
      source: "contract 'Processes' (admin API on its own port); Traefik/Envoy admin exposure",
      bytes: req("GET /v1/tenants HTTP/1.1", "Host: localhost", bearer),
      status: 404,
      reason: "unknown_host",
    },
    {
      name: "admin API via a Host naming the admin port",
      source: "PortSwigger 'Routing-based SSRF' (Host header aimed at an internal service)",
      bytes: req("DELETE /v1/tenants/acme HTTP/1.1", `Host: 127.0.0.1:${admin}`, bearer),
      status: 400,
      reason: "invalid_host",
    },
    {
      name: "admin token presented as an API key",
      source: "contract rule 2 (only a key service-verified key selects a tenant); credential confusion",
      bytes: req("GET /v1/tenants HTTP/1.1", "Host: api.localhost", bearer),
      status: 401,
    },
    {
      name: "key-service verify endpoint on the public listener",
      source: "contract 'Processes' (key service reached by the router only)",
      bytes: req(
        "POST /v1/keys/verify HTTP/1.1",
        "Host: localhost",
        `Authorization: Bearer ${SECRETS.KEY_SERVICE_TOKEN}`,
        "Content-Length: 2",
        "",
        "{}",
      ).slice(0, -4),
      status: 404,
      reason: "unknown_host",
    },
  ];
}

describe("public-listener exposure of ops, metrics and admin paths", () => {
  let stack: TestStack;
  let acme: GuardedTenant;
  let g: Guarded;
  let attacks: Attack[];

  beforeAll(async () => {
    stack = await startTestStack();
    acme = await guardedTenant(stack, "acme");
    g = { stack, sentinels: [acme.sentinel] };
    attacks = exposures(stack.router.opsPort, stack.adminPort);
  });
  afterAll(async () => {
    await stack?.close();
    await acme?.sentinel.close();
  });

  it("the ops listener does serve them (control: the assertions below can fail)", async () => {
    const ex = await exchange(stack.router.opsPort, req("GET /metrics HTTP/1.1", "Host: 127.0.0.1", "Connection: close"));
    expect(ex.responses[0]?.status).toBe(200);
    expect(ex.raw).toContain("portcullis_");
  });

  it("on a tenant's Host, /metrics is the tenant's own path, answered by its app (control)", async () => {
    const ex = await exchange(stack.port, req("GET /metrics HTTP/1.1", `Host: ${A}`, "Connection: close"));
    expect(ex.responses.map((r) => r.status)).toEqual([200]);
    expect(JSON.parse(ex.responses[0]!.body).app).toBe("acme-app");
    expect(ex.raw).not.toContain("portcullis_");
  });

  // Titles come from the same table (ports are filled in once the stack runs).
  exposures(0, 0).forEach((named, i) => {
    it(`${named.name} — ${named.source}`, async () => {
      const attack = attacks[i]!;
      const { exchange: ex } = await expectRefused(g, attack);
      expect(ex.raw, attack.name).not.toContain("portcullis_");
      expect(ex.raw).not.toMatch(/"(ready|ok|tenants)"/);
    });
  });
});
