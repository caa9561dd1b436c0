/**
 * Helpers for parsing settings from the environment. Each service parses its
 * environment once, at start, into a frozen object (see each config.ts).
 */
import { randomBytes } from "node:crypto";
import { z } from "zod";
import { normalizeHostname } from "./hostname/index.ts";
import { parseHostPorts, type RedisConnection } from "./cache/redis-connection.ts";

export const port = (fallback: number) => z.coerce.number().int().min(0).max(65535).default(fallback);

export const csv = z
  .string()
  .optional()
  .transform((v) =>
    (v ?? "")
      .split(",")
      .map((s) => s.trim())
      .filter(Boolean),
  );

/**
 * A list of `host:port,…` (REDIS_SENTINELS, REDIS_CLUSTER_NODES). Undefined when
 * unset or empty.
 */
export const hostPortList = z
  .string()
  .optional()
  .transform((v, ctx) => {
    if (v === undefined || v.trim() === "") return undefined;
    try {
      return parseHostPorts(v);
    } catch (error) {
      ctx.addIssue({ code: "custom", message: (error as Error).message });
      return z.NEVER;
    }
  });

/** The Redis settings of every service's environment schema. */
export const redisEnv = {
  REDIS_URL: z.string().url().optional(),
  REDIS_SENTINELS: hostPortList,
  REDIS_SENTINEL_NAME: z.string().min(1).default("mymaster"),
  REDIS_CLUSTER_NODES: hostPortList,
  REDIS_AUDIT_REPLICAS: z.coerce.number().int().min(0).max(16).default(0),
};

/**
 * The Redis settings every service reads, as a connection (null: none, the in-process
 * store). A cluster takes precedence, then sentinels, then the URL (whose password,
 * user and database number apply to the other two as well).
 */
export function redisConnection(e: {
  REDIS_URL?: string | undefined;
  REDIS_SENTINELS?: { host: string; port: number }[] | undefined;
  REDIS_SENTINEL_NAME: string;
  REDIS_CLUSTER_NODES?: { host: string; port: number }[] | undefined;
  REDIS_AUDIT_REPLICAS?: number | undefined;
}): RedisConnection | null {
  const streamReplicas = e.REDIS_AUDIT_REPLICAS ?? 0;
  const waits = streamReplicas > 0 ? { streamReplicas } : {};
  if (e.REDIS_CLUSTER_NODES !== undefined && e.REDIS_CLUSTER_NODES.length > 0) {
    if (streamReplicas > 0) throw new Error("invalid settings:\n  REDIS_AUDIT_REPLICAS: not with REDIS_CLUSTER_NODES");
    return { url: e.REDIS_URL, clusterNodes: e.REDIS_CLUSTER_NODES };
  }
  if (e.REDIS_SENTINELS !== undefined && e.REDIS_SENTINELS.length > 0)
    return { url: e.REDIS_URL, sentinels: e.REDIS_SENTINELS, sentinelName: e.REDIS_SENTINEL_NAME, ...waits };
  return e.REDIS_URL ? { url: e.REDIS_URL, ...waits } : null;
}

/**
 * A secret: required when NODE_ENV is production; otherwise generated for this
 * process (and reported in `generated`, so the caller can print it).
 */
export function secret(env: Record<string, string | undefined>, name: string, generated: string[]): string {
  const value = env[name];
  if (value && value.length > 0) {
    if (value.length < 16) throw new Error(`${name} must be at least 16 characters`);
    return value;
  }
  if (env.NODE_ENV === "production") throw new Error(`${name} is required when NODE_ENV=production`);
  generated.push(name);
  return randomBytes(24).toString("hex");
}

export function parseEnv<T extends z.ZodType>(schema: T, env: Record<string, string | undefined>): z.infer<T> {
  const result = schema.safeParse(env);
  if (!result.success) {
    const lines = result.error.issues.map((i) => `  ${i.path.join(".")}: ${i.message}`);
    throw new Error(`invalid settings:\n${lines.join("\n")}`);
  }
  return result.data;
}

/** A hostname setting (PLATFORM_DOMAIN, API_HOSTNAME), normalized like every hostname. */
export function hostSetting(name: string, value: string): string {
  const result = normalizeHostname(value);
  if (!result.ok) throw new Error(`${name} is not a valid hostname (${result.code})`);
  return result.hostname;
}
