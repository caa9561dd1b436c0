/**
 * A router as its own OS process (`node router/src/main.ts`, Node 24 from
 * node_modules/.bin), pointed at a TestStack's key service, Redis and key prefix:
 * for tests of what must hold across router instances that share only Redis.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { TEST_REDIS_URL } from "./env.ts";
import type { TestStack } from "./stack.ts";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const NODE = `${ROOT}node_modules/.bin/node`;

export interface RouterProcess {
  port: number;
  opsPort: number;
  child: ChildProcess;
  /** SIGTERM (drain) and wait for the exit code. */
  stop(): Promise<number | null>;
  /** SIGKILL: a crash. */
  kill(): Promise<void>;
}

/** `env` adds to or replaces the defaults below; an empty value removes a setting. */
export async function spawnRouter(stack: TestStack, env: Record<string, string> = {}): Promise<RouterProcess> {
  const settings: Record<string, string> = {
    PATH: process.env.PATH ?? "",
    ...stack.env,
    ROUTER_PORT: "0",
    ROUTER_OPS_PORT: "0",
    ROUTER_HOST: "127.0.0.1",
    REDIS_URL: TEST_REDIS_URL,
    REDIS_PREFIX: stack.prefix,
    KEY_SERVICE_URL: `http://127.0.0.1:${stack.keyServicePort}`,
    LOG_LEVEL: "silent",
    ...env,
  };
  for (const name of Object.keys(settings)) if (settings[name] === "") delete settings[name];
  const child = spawn(NODE, [`${ROOT}router/src/main.ts`], { cwd: ROOT, env: settings, stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  const ports = await new Promise<{ port: number; opsPort: number }>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`router process did not start:\n${output}`)), 20_000);
    const onData = (chunk: Buffer) => {
      output += chunk.toString("utf8");
      const m = /router listening on :(\d+) \(ops :(\d+)\)/.exec(output);
      if (m) {
        clearTimeout(timer);
        resolve({ port: Number(m[1]), opsPort: Number(m[2]) });
      }
    };
    child.stdout?.on("data", onData);
    child.stderr?.on("data", onData);
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`router process exited (${code}):\n${output}`));
    });
  });
  return {
    ...ports,
    child,
    async stop() {
      if (child.exitCode !== null) return child.exitCode;
      child.kill("SIGTERM");
      return exited;
    },
    async kill() {
      if (child.exitCode !== null) return;
      child.kill("SIGKILL");
      await exited;
    },
  };
}
