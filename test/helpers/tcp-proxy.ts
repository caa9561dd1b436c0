/**
 * A TCP relay on port 0 in front of a real service (Redis, the key service, Postgres,
 * an upstream), which a test can cut and restore: "Redis is down" for one router
 * without stopping the Redis server other test files share.
 *
 * Two ways to fail: `stop()` cuts every connection and resets every new one at once
 * (the service is down: nothing connects), `blackhole()` keeps every connection open
 * and accepts new ones but moves no byte either way (a partition or a hung host:
 * nothing is refused, nothing answers). `heal()` ends a black hole: held bytes flow
 * again, as they would once a partition heals.
 *
 * A stopped relay keeps its port, so `start()` brings the service back where clients
 * expect it: released, the port could be taken by any other test's listener or
 * outgoing connection in the meantime (EADDRINUSE). The listener does not keep the
 * process alive.
 */
import { connect, createServer, type Server, type Socket } from "node:net";
import type { AddressInfo } from "node:net";

interface Pair {
  client: Socket;
  upstream: Socket | null;
}

export class TcpProxy {
  #server: Server | null = null;
  #sockets = new Set<Socket>();
  #pairs = new Set<Pair>();
  #blackholed = false;
  #down = false;
  port = 0;
  readonly #targetHost: string;
  readonly #targetPort: number;

  constructor(targetHost: string, targetPort: number) {
    this.#targetHost = targetHost;
    this.#targetPort = targetPort;
  }

  get blackholed(): boolean {
    return this.#blackholed;
  }

  get listening(): boolean {
    return this.#server !== null && !this.#down;
  }

  async start(port = this.port): Promise<this> {
    if (this.#server !== null && (port === 0 || port === this.port)) {
      this.#down = false;
      return this;
    }
    const server = createServer((client) => {
      if (this.#down) {
        client.on("error", () => {});
        client.resetAndDestroy();
        return;
      }
      const pair: Pair = { client, upstream: null };
      this.#sockets.add(client);
      this.#pairs.add(pair);
      const end = () => {
        client.destroy();
        pair.upstream?.destroy();
        this.#sockets.delete(client);
        if (pair.upstream) this.#sockets.delete(pair.upstream);
        this.#pairs.delete(pair);
      };
      client.on("error", end);
      client.on("close", end);
      if (this.#blackholed) {
        // Accepted, never relayed until heal(): the bytes wait in the socket buffers.
        client.pause();
        return;
      }
      this.#connectUpstream(pair, end);
    });
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, "127.0.0.1", () => {
        server.off("error", reject);
        resolve();
      });
    });
    server.unref();
    this.#server = server;
    this.#down = false;
    this.port = (server.address() as AddressInfo).port;
    return this;
  }

  #connectUpstream(pair: Pair, end: () => void): void {
    const upstream = connect(this.#targetPort, this.#targetHost);
    pair.upstream = upstream;
    this.#sockets.add(upstream);
    pair.client.pipe(upstream).pipe(pair.client);
    upstream.on("error", end);
    upstream.on("close", end);
  }

  /** Nothing is relayed either way from now on; connections stay open, new ones are accepted and held. */
  blackhole(): void {
    if (this.#blackholed) return;
    this.#blackholed = true;
    for (const { client, upstream } of this.#pairs) {
      if (upstream === null) continue;
      client.unpipe(upstream);
      upstream.unpipe(client);
      client.pause();
      upstream.pause();
    }
  }

  /** Ends a black hole: connections held open relay again, with what they held. */
  heal(): void {
    if (!this.#blackholed) return;
    this.#blackholed = false;
    for (const pair of [...this.#pairs]) {
      if (pair.upstream === null) {
        const end = () => {
          pair.client.destroy();
          pair.upstream?.destroy();
          this.#sockets.delete(pair.client);
          if (pair.upstream) this.#sockets.delete(pair.upstream);
          this.#pairs.delete(pair);
        };
        this.#connectUpstream(pair, end);
      } else pair.client.pipe(pair.upstream).pipe(pair.client);
    }
  }

  /** Cut every connection and reset every new one (the service "goes down"); the port is kept. */
  async stop(): Promise<void> {
    this.#blackholed = false;
    this.#down = true;
    for (const s of this.#sockets) s.destroy();
    this.#sockets.clear();
    this.#pairs.clear();
  }

  /** Stop and release the port. */
  async close(): Promise<void> {
    await this.stop();
    const server = this.#server;
    this.#server = null;
    if (server) await new Promise<void>((r) => server.close(() => r()));
  }
}
