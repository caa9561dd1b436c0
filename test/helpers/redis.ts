/** A Redis key prefix per test file, and clean-up of everything under it. */
import { randomBytes } from "node:crypto";
import { Redis } from "ioredis";
import { MemoryStore, RedisStore, type Store, type StreamStore } from "@portcullis/shared";
import { TEST_REDIS_URL } from "./env.ts";

export function testPrefix(): string {
  return `pc:test:${randomBytes(5).toString("hex")}:`;
}

export async function createTestStore(prefix = testPrefix()): Promise<RedisStore & { prefix: string }> {
  const store = new RedisStore({ url: TEST_REDIS_URL, prefix });
  await store.ready();
  return Object.assign(store, { prefix });
}

export async function deleteKeys(prefix: string): Promise<void> {
  const redis = new Redis(TEST_REDIS_URL);
  let cursor = "0";
  do {
    const [next, keys] = await redis.scan(cursor, "MATCH", `${prefix}*`, "COUNT", 1000);
    if (keys.length > 0) await redis.del(...keys);
    cursor = next;
  } while (cursor !== "0");
  redis.disconnect();
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
