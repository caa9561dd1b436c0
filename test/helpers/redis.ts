/** A Redis key prefix per test file, and clean-up of everything under it. */
import { randomBytes } from "node:crypto";
import { Cluster, Redis } from "ioredis";
import { MemoryStore, RedisStore, type Store, type StreamStore } from "@portcullis/shared";
import { TEST_REDIS_CLUSTER_NODES, TEST_REDIS_URL, testRedisConnection } from "./env.ts";

export function testPrefix(): string {
  return `pc:test:${randomBytes(5).toString("hex")}:`;
}

export async function createTestStore(prefix = testPrefix()): Promise<RedisStore & { prefix: string }> {
  const store = new RedisStore({ ...testRedisConnection(), prefix });
  await store.ready();
  return Object.assign(store, { prefix });
}

/** A plain client of the test Redis (a cluster client on a cluster), for looking at keys directly. */
export function testRedisClient(): Redis | Cluster {
  return TEST_REDIS_CLUSTER_NODES
    ? new Cluster(TEST_REDIS_CLUSTER_NODES.split(",").map((node) => `redis://${node.trim()}`))
    : new Redis(TEST_REDIS_URL);
}

export async function deleteKeys(prefix: string): Promise<void> {
  // On a cluster, every node's own keys, one key per DEL (keys of one SCAN page may
  // lie in different slots).
  const urls = TEST_REDIS_CLUSTER_NODES
    ? TEST_REDIS_CLUSTER_NODES.split(",").map((node) => `redis://${node.trim()}`)
    : [TEST_REDIS_URL];
  for (const url of urls) {
    const redis = new Redis(url);
    let cursor = "0";
    do {
      const [next, keys] = await redis.scan(cursor, "MATCH", `${prefix}*`, "COUNT", 1000);
      if (keys.length > 0) {
        if (TEST_REDIS_CLUSTER_NODES) await Promise.all(keys.map((k) => redis.del(k)));
        else await redis.del(...keys);
      }
      cursor = next;
    } while (cursor !== "0");
    redis.disconnect();
  }
}

/** Remove every key under the prefix, as a `FLUSHALL` would, without touching other files' keys. */
export const flushPrefix = deleteKeys;

/**
 * The two store implementations, made fresh per test, for suites that hold both to one
 * contract: Redis over a real socket (own key prefix) and the in-process store.
 * `closeAll` closes every store made and deletes its Redis keys.
 */
export function storeFactories() {
  const made: { store: Store; prefix?: string }[] = [];
  const factories = {
    redis: async (): Promise<Store & StreamStore> => {
      const s = await createTestStore();
      made.push({ store: s, prefix: s.prefix });
      return s;
    },
    memory: async (): Promise<Store & StreamStore> => {
      const s = new MemoryStore();
      made.push({ store: s });
      return s;
    },
  };
  return {
    factories,
    track: (store: Store, prefix?: string) => made.push(prefix ? { store, prefix } : { store }),
    async closeAll() {
      for (const m of made) {
        await m.store.close();
        if (m.prefix) await deleteKeys(m.prefix);
      }
    },
  };
}
