/**
 * The security suite's tools: an attacker's socket (raw bytes in, every response and
 * whether the server closed the connection out), a sentinel upstream that counts
 * every byte any client of it ever sends (so "no upstream was contacted" means not
 * one byte, not merely "no complete request"), and the one refusal assertion every
 * attack case makes: the status, zero upstream bytes, and exactly one audit event
 * found by the answer's request id.
 */
import { createServer, type Server } from "node:http";
import { type AddressInfo, connect } from "node:net";
import { expect } from "vitest";
import type { TestStack } from "../helpers/stack.ts";

export interface ParsedResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
}

export interface Exchange {
  raw: string;
  responses: ParsedResponse[];
  /** The server ended or reset the connection (not merely went quiet). */
  closed: boolean;
}

/** Split a raw byte stream into HTTP/1.1 responses (Content-Length framed or to the end). */
export function parseResponses(raw: string): ParsedResponse[] {
  const out: ParsedResponse[] = [];
  let rest = raw;
  while (rest.startsWith("HTTP/1.")) {
    const end = rest.indexOf("\r\n\r\n");
    if (end === -1) break;
    const lines = rest.slice(0, end).split("\r\n");
    const status = Number((lines[0] as string).split(" ")[1]);
    const headers: Record<string, string> = {};
    for (const line of lines.slice(1)) {
      const colon = line.indexOf(":");
      headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
    }
    const length = headers["content-length"] === undefined ? rest.length - end - 4 : Number(headers["content-length"]);
    out.push({ status, headers, body: rest.slice(end + 4, end + 4 + length) });
    rest = rest.slice(end + 4 + length);
  }
  return out;
}

export interface ExchangeOptions {
  /** Milliseconds of silence after the last byte received, after which the exchange is over. */
  quietMs?: number;
  timeoutMs?: number;
  /** Further writes, each after a pause (slow clients). */
  drip?: { chunks: (string | Buffer)[]; everyMs: number };
  /** Write nothing at all. */
  silent?: boolean;
}

/** Send bytes as an attacker would and collect what comes back. */
export function exchange(port: number, bytes: string | Buffer, options: ExchangeOptions = {}): Promise<Exchange> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, "127.0.0.1");
    const chunks: Buffer[] = [];
    let closed = false;
    let quiet: NodeJS.Timeout | undefined;
    let drip: NodeJS.Timeout | undefined;
    const done = () => {
      clearTimeout(quiet);
      clearTimeout(overall);
      clearInterval(drip);
      socket.destroy();
      const raw = Buffer.concat(chunks).toString("latin1");
      resolve({ raw, responses: parseResponses(raw), closed });
    };
    const overall = setTimeout(done, options.timeoutMs ?? 5_000);
    const armQuiet = () => {
      clearTimeout(quiet);
      quiet = setTimeout(done, options.quietMs ?? 400);
    };
    socket.on("data", (c: Buffer) => {
      chunks.push(c);
      if (!options.drip && !options.silent) armQuiet();
    });
    socket.on("end", () => {
      closed = true;
      done();
    });
    socket.on("close", () => {
      closed = true;
      done();
    });
    socket.on("error", (e) => {
      closed = true;
      if (chunks.length > 0) done();
      else reject(e);
    });
    socket.on("connect", () => {
      if (!options.silent) socket.write(bytes);
      if (options.drip) {
        const queue = [...options.drip.chunks];
        drip = setInterval(() => {
          const next = queue.shift();
          if (next === undefined) clearInterval(drip);
          else if (!socket.destroyed) socket.write(next);
        }, options.drip.everyMs);
      }
      // The quiet period starts at the first byte received: a cold first lookup on a
      // loaded machine may take a while to answer, and that is not silence.
    });
  });
}

/** An upstream that counts every byte it receives, on every connection. */
export interface Sentinel {
  url: string;
  bytes: number;
  requests: { method: string; url: string; headers: Record<string, string | string[] | undefined>; rawHeaders: string[] }[];
  close(): Promise<void>;
}

export async function startSentinel(name: string): Promise<Sentinel> {
  const state = { bytes: 0, requests: [] as Sentinel["requests"] };
  const server: Server = createServer((req, res) => {
    req.resume();
    req.on("end", () => {
      state.requests.push({ method: req.method ?? "", url: req.url ?? "", headers: req.headers, rawHeaders: req.rawHeaders });
      const body = JSON.stringify({ app: name, path: req.url });
      res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
      res.end(body);
    });
  });
  server.on("connection", (socket) => socket.on("data", (d: Buffer) => (state.bytes += d.length)));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    get bytes() {
      return state.bytes;
    },
    requests: state.requests,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

export interface GuardedTenant {
  id: string;
  slug: string;
  host: string;
  sentinel: Sentinel;
}

/** A routable tenant whose only upstream is a sentinel. */
export async function guardedTenant(stack: TestStack, slug: string, patch?: Record<string, unknown>): Promise<GuardedTenant> {
  const t = await stack.tenant(slug);
  const sentinel = await startSentinel(`${slug}-app`);
  const put = await stack.admin("PUT", `/v1/tenants/${slug}/upstreams`, { urls: [sentinel.url] });
  if (put.status !== 200) throw new Error(`upstreams ${slug}: ${put.status}`);
  if (patch) {
    const p = await stack.admin("PATCH", `/v1/tenants/${slug}`, patch);
    if (p.status !== 200) throw new Error(`patch ${slug}: ${p.status} ${p.text}`);
  }
  await stack.cp.publisher.flush();
  return { id: t.id, slug, host: t.host, sentinel };
}

export interface Attack {
  /** Short name of the attack. */
  name: string;
  /** The advisory (CVE id or title) or RFC section the case comes from. */
  source: string;
  bytes: string | Buffer;
  status: number;
  /** The audit reason expected, when the case pins one. */
  reason?: string;
  /** The connection must be closed after the refusal (framing errors). */
  close?: boolean;
  options?: ExchangeOptions;
}

export interface Guarded {
  stack: TestStack;
  sentinels: Sentinel[];
}

function upstreamBytes(g: Guarded): number {
  return g.sentinels.reduce((n, s) => n + s.bytes, 0) + g.stack.upstreamContacts;
}

async function flushAudit(stack: TestStack) {
  await Promise.all(stack.routers.map((r) => r.audit.flush()));
}

/**
 * Send an attack and assert the refusal: one response with the status, not one byte
 * at any upstream, exactly one audit event (found by the answer's x-request-id).
 */
export async function expectRefused(g: Guarded, attack: Attack, port = g.stack.port) {
  await flushAudit(g.stack);
  const before = upstreamBytes(g);
  const auditBefore = g.stack.audit.length;
  const ex = await exchange(port, attack.bytes, attack.options);
  expect(
    ex.responses.map((r) => r.status),
    ex.raw.slice(0, 300),
  ).toEqual([attack.status]);
  const response = ex.responses[0] as ParsedResponse;
  const requestId = response.headers["x-request-id"] as string;
  expect(requestId).toMatch(/^req_/);
  expect(JSON.parse(response.body).error.requestId).toBe(requestId);
  const events = await g.stack.auditFor(requestId);
  expect(events).toHaveLength(1);
  const event = events[0]!;
  expect(event.decision).toBe("refuse");
  expect(event.status).toBe(attack.status);
  if (attack.reason !== undefined) expect(event.reason).toBe(attack.reason);
  await flushAudit(g.stack);
  expect(g.stack.audit.length - auditBefore, "audit events written for this attack").toBe(1);
  if (attack.close) expect(ex.closed, "connection closed after the refusal").toBe(true);
  expect(upstreamBytes(g), "bytes that reached an upstream").toBe(before);
  return { exchange: ex, response, event };
}

/** CRLF-joined request lines ending with the blank line. */
export function req(...lines: string[]): string {
  return `${lines.join("\r\n")}\r\n\r\n`;
}
