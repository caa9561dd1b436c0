/**
 * The client address: the socket's peer, unless that peer is a configured trusted
 * proxy, in which case the right-most X-Forwarded-For entry that is not itself a
 * trusted proxy (the standard rule; left-most entries are client-controlled).
 */
import type { IncomingMessage } from "node:http";
import { BlockList, isIP } from "node:net";

export type ClientIp = (req: IncomingMessage) => string;

export function clientIpResolver(trusted: string[]): ClientIp {
  if (trusted.length === 0) return (req) => req.socket.remoteAddress ?? "";
  const list = new BlockList();
  for (const entry of trusted) {
    const [addr, bits] = entry.split("/") as [string, string | undefined];
    const family = isIP(addr) === 6 ? "ipv6" : "ipv4";
    if (bits === undefined) list.addAddress(addr, family);
    else list.addSubnet(addr, Number(bits), family);
  }
  const isTrusted = (ip: string) => {
    const family = isIP(ip);
    if (family === 0) return false;
    if (family === 6 && ip.startsWith("::ffff:") && isIP(ip.slice(7)) === 4) return list.check(ip.slice(7), "ipv4");
    return list.check(ip, family === 6 ? "ipv6" : "ipv4");
  };
  return (req) => {
    const peer = req.socket.remoteAddress ?? "";
    if (!isTrusted(peer)) return peer;
    const xff = req.headers["x-forwarded-for"];
    if (typeof xff !== "string") return peer;
    const hops = xff.split(",").map((s) => s.trim());
    for (let i = hops.length - 1; i >= 0; i--) {
      const hop = hops[i] as string;
      if (isIP(hop) === 0) return peer;
      if (!isTrusted(hop)) return hop;
    }
    return peer;
  };
}
