/**
 * Pub/sub for the Redis store. Subscriptions use connections of their own (a
 * subscribed connection takes no other command); when one reconnects or moves to
 * another node, messages may have been missed, so `onReset` tells the subscriber to
 * drop what it cached.
 */
import { type Cluster, Redis } from "ioredis";
import { connect, credentials, disconnect, type RedisConnection } from "./redis-connection.ts";

/** The subscribed connections of one store, closed with it. */
export class RedisSubscriptions {
  readonly #connection: RedisConnection;
  /** The store's command client: on a cluster, it knows the nodes to subscribe on. */
  readonly #cluster: Cluster | null;
  readonly #subscribers = new Set<Redis>();

  constructor(connection: RedisConnection, client: Redis, sharded: boolean) {
    this.#connection = connection;
    this.#cluster = sharded ? (client as unknown as Cluster) : null;
  }

  /** Subscribes to `name` (the prefixed channel); resolves to an unsubscribe. */
  async subscribe(name: string, onMessage: (message: string) => void, onReset: () => void) {
    if (this.#cluster) return this.#subscribeCluster(this.#cluster, name, onMessage, onReset);
    const sub = connect(this.#connection, {
      connectTimeout: 1_000,
      retryStrategy: (attempt) => Math.min(attempt * 100, 1_000),
    });
    sub.on("error", () => {});
    this.#subscribers.add(sub);
    let readyOnce = false;
    let subscribed = false;
    let subscribing = false;
    const attempt = async () => {
      subscribing = true;
      try {
        await sub.subscribe(name);
        subscribed = true;
      } finally {
        subscribing = false;
      }
    };
    sub.on("ready", () => {
      // ioredis re-subscribes on reconnect; anything published meanwhile is lost.
      if (readyOnce) onReset();
      readyOnce = true;
      // ioredis renews only a subscription that once succeeded: one that failed
      // (Redis down at start) is made here, else the subscriber never hears an event.
      if (!subscribed && !subscribing) attempt().then(onReset, () => {});
    });
    sub.on("message", (ch: string, message: string) => {
      if (ch === name) onMessage(message);
    });
    await attempt();
    return async () => {
      this.#subscribers.delete(sub);
      disconnect(sub);
    };
  }

  /**
   * A subscription on a cluster. A message published on any node reaches every node
   * (classic pub/sub travels the cluster bus), so one connection to any one node hears
   * them all. That node may leave: the subscription then moves to the next node named
   * in the settings or found in the cluster, and `onReset` says that what was published
   * meanwhile may be lost, as after a reconnection to one Redis. (ioredis' own cluster
   * subscriber moves silently, so it is not used.)
   */
  async #subscribeCluster(cluster: Cluster, name: string, onMessage: (message: string) => void, onReset: () => void) {
    const configured = this.#connection.clusterNodes ?? [];
    let current: Redis | null = null;
    let stopped = false;
    let subscribedOnce = false;
    let turn = 0;
    let firstSettled: (() => void) | null = null;
    const first = new Promise<void>((resolve) => {
      firstSettled = resolve;
    });
    const candidates = () => {
      // The nodes the cluster client knows now, then the configured ones.
      const known = cluster.nodes?.("all").map((n) => ({ host: n.options.host ?? "", port: n.options.port ?? 0 })) ?? [];
      const seen = new Set<string>();
      return [...known, ...configured].filter((n) => {
        const id = `${n.host}:${n.port}`;
        if (n.port === 0 || seen.has(id)) return false;
        seen.add(id);
        return true;
      });
    };
    const open = () => {
      if (stopped) return;
      const nodes = candidates();
      const node = nodes[turn++ % Math.max(1, nodes.length)];
      if (node === undefined) {
        setTimeout(open, 500).unref();
        return;
      }
      const sub = new Redis({
        host: node.host,
        port: node.port,
        connectTimeout: 1_000,
        ...credentials(this.#connection.url),
        // A node that does not come back within a few tries is left for the next one.
        retryStrategy: (attempt) => (attempt > 3 ? null : attempt * 100),
      });
      current = sub;
      this.#subscribers.add(sub);
      sub.on("error", () => {});
      sub.on("message", (ch: string, message: string) => {
        if (ch === name && sub === current) onMessage(message);
      });
      sub.on("ready", () => {
        // Also after ioredis reconnected this node (it re-subscribes by itself).
        sub.subscribe(name).then(
          () => {
            if (subscribedOnce) onReset();
            subscribedOnce = true;
            firstSettled?.();
          },
          () => sub.disconnect(),
        );
      });
      sub.once("end", () => {
        this.#subscribers.delete(sub);
        if (stopped || sub !== current) return;
        // Every node tried once without a subscription: the caller goes on, this keeps trying.
        if (!subscribedOnce && turn >= Math.max(1, candidates().length)) firstSettled?.();
        setTimeout(open, 100).unref();
      });
    };
    open();
    await first;
    return async () => {
      stopped = true;
      if (current) {
        this.#subscribers.delete(current);
        disconnect(current);
      }
    };
  }

  close(): void {
    for (const sub of this.#subscribers) disconnect(sub);
    this.#subscribers.clear();
  }
}
