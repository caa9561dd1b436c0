/** Peer: fastify with @fastify/reply-from (undici underneath), routing on Host. */
import replyFrom from "@fastify/reply-from";
import Fastify from "fastify";
import { hostOf, routes, settings } from "./common.ts";

const s = settings<{ hosts: number; domain: string; upstream: string }>();
const table = routes(s.hosts, s.domain, s.upstream);
const app = Fastify({ logger: false });
await app.register(replyFrom, { undici: { connections: 128, pipelining: 1, keepAliveTimeout: 30_000 } });
app.all("/*", (req, reply) => {
  const origin = table.get(hostOf(req.headers.host));
  if (origin === undefined) return reply.code(404).send();
  return reply.from(`${origin}${req.url}`);
});
await app.listen({ port: 0, host: "127.0.0.1" });
const address = app.server.address();
process.send?.({ type: "ready", port: typeof address === "object" && address ? address.port : 0 });
