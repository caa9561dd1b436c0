/**
 * What every benchmark process shares: its settings come as one JSON argument, it
 * reports `{type: "ready", port}` on the IPC channel once listening, and it exits
 * when the orchestrator goes away (so no process outlives a run).
 */
import type { IncomingMessage, Server, ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

export function settings<T>(): T {
  return JSON.parse(process.argv[2] ?? "{}") as T;
}

export function ready(server: Server, extra: Record<string, unknown> = {}): void {
  const port = (server.address() as AddressInfo).port;
  process.send?.({ type: "ready", port, ...extra });
}

process.on("disconnect", () => process.exit(0));
// A normal exit, so `--cpu-prof` can write its profile.
process.on("SIGTERM", () => process.exit(0));

/** Host → upstream origin for `count` hostnames `t0000.<domain>` … (the peers' routing table). */
export function routes(count: number, domain: string, origin: string): Map<string, string> {
  const map = new Map<string, string>();
  for (let i = 0; i < count; i++) map.set(hostAt(i, domain), origin);
  return map;
}

export function hostAt(i: number, domain: string, prefix = "t"): string {
  return `${prefix}${String(i).padStart(4, "0")}.${domain}`;
}

/** Host header without its port, lower-cased (what every peer routes on). */
export function hostOf(value: string | undefined): string {
  if (value === undefined) return "";
  const colon = value.indexOf(":");
  return (colon === -1 ? value : value.slice(0, colon)).toLowerCase();
}

/** The upstream a bare forwarder sends this request to; answers 404 itself when there is none. */
export function originFor(table: Map<string, string>, req: IncomingMessage, res: ServerResponse): string | undefined {
  const origin = table.get(hostOf(req.headers.host));
  if (origin === undefined) res.writeHead(404).end();
  return origin;
}

/** Hop-by-hop headers, which the bare forwarders drop. */
export const HOP = new Set(["connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"]);

/** The client's headers without the hop-by-hop ones, as a flat name/value list. */
export function forwardedHeaders(raw: string[]): string[] {
  const headers: string[] = [];
  for (let i = 0; i < raw.length; i += 2)
    if (!HOP.has((raw[i] as string).toLowerCase())) headers.push(raw[i] as string, raw[i + 1] as string);
  return headers;
}
