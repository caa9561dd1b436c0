/**
 * A Portcullis service as its own OS process (`node <script>`, Node 24 from
 * node_modules/.bin): started with the given settings, ready once its output names
 * its ports, stopped with SIGTERM (and its exit code) or killed (a crash).
 */
import { type ChildProcess, spawn } from "node:child_process";
import { fileURLToPath } from "node:url";

export const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const NODE = `${ROOT}node_modules/.bin/node`;

export interface ServiceProcess<P> {
  ports: P;
  child: ChildProcess;
  /** SIGTERM and wait for the exit code. */
  stop(): Promise<number | null>;
  /** SIGKILL: a crash. */
  kill(): Promise<void>;
}

/**
 * `ready` reads the ports from all the output so far, or answers null while they are
 * not all there. An empty setting is left out (a way to unset a default).
 */
export async function spawnService<P>(
  what: string,
  script: string,
  env: Record<string, string>,
  ready: (output: string) => P | null,
): Promise<ServiceProcess<P>> {
  const settings: Record<string, string> = { PATH: process.env.PATH ?? "", ...env };
  for (const name of Object.keys(settings)) if (settings[name] === "") delete settings[name];
  const child = spawn(NODE, [`${ROOT}${script}`], { cwd: ROOT, env: settings, stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  const ports = await new Promise<P>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what} process did not start:\n${output}`)), 20_000);
    const onData = (chunk: Buffer) => {
      output += chunk.toString("utf8");
      const found = ready(output);
      if (found !== null) {
        clearTimeout(timer);
        resolve(found);
      }
    };
    child.stdout?.on("data", onData);
    child.stderr?.on("data", onData);
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`${what} process exited (${code}):\n${output}`));
    });
  });
  return {
    ports,
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

/** The value of one metric series on an ops port (`name{labels}`), or null when absent. */
export async function readMetric(opsPort: number, series: string): Promise<number | null> {
  const res = await fetch(`http://127.0.0.1:${opsPort}/metrics`);
  const line = (await res.text()).split("\n").find((l) => l.startsWith(`${series} `));
  return line === undefined ? null : Number(line.slice(series.length + 1));
}
