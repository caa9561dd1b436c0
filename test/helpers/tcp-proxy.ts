/**
 * A TCP relay on port 0 in front of a real service (Redis, the key service), which
 * a test can cut and restore: "Redis is down" for one router without stopping the
 * Redis server other test files share.
 */
import { connect, createServer, type Server, type Socket } from "node:net";
import type { AddressInfo } from "node:net";

export class TcpProxy {
  #server: Server | null = null;
  #sockets = new Set<Socket>();
  port = 0;
  readonly #targetHost: string;
  readonly #targetPort: number;

  constructor(targetHost: string, targetPort: number) {
    this.#targetHost = targetHost;
    this.#targetPort = targetPort;
  }

  async start(port = this.port): Promise<this> {
    const server = createServer((client) => {
      const upstream = connect(this.#targetPort, this.#targetHost);
      this.#sockets.add(client);
      this.#sockets.add(upstream);
      client.pipe(upstream).pipe(client);
      const end = () => {
        client.destroy();
        upstream.destroy();
        this.#sockets.delete(client);
        this.#sockets.delete(upstream);
      };
      client.on("error", end);
      upstream.on("error", end);
      client.on("close", end);
      upstream.on("close", end);
    });
    await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", () => resolve()));
    this.#server = server;
    this.port = (server.address() as AddressInfo).port;
    return this;
  }

  /** Cut every connection and stop listening (the service "goes down"). */
  async stop(): Promise<void> {
    for (const s of this.#sockets) s.destroy();
    this.#sockets.clear();
    const server = this.#server;
    this.#server = null;
    if (server) await new Promise<void>((r) => server.close(() => r()));
  }
}
