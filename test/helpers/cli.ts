/** Run the `portcullis` CLI as operators do: a separate process, exit code and output collected. */
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";

export const REPO_ROOT = fileURLToPath(new URL("../..", import.meta.url));
const BIN = fileURLToPath(new URL("../../control-plane/bin/portcullis.mjs", import.meta.url));

export interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
  lines: string[];
}

/** `env` replaces the environment (plus PATH and HOME), so nothing leaks in from the test runner. */
export function runCli(args: string[], env: Record<string, string>, options: { viaNpx?: boolean } = {}): Promise<CliRun> {
  const command = options.viaNpx ? "npx" : process.execPath;
  const argv = options.viaNpx ? ["--no-install", "portcullis", ...args] : [BIN, ...args];
  return new Promise((resolve, reject) => {
    const child = spawn(command, argv, {
      cwd: REPO_ROOT,
      env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "/tmp", ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (c: Buffer) => (stdout += c.toString("utf8")));
    child.stderr.on("data", (c: Buffer) => (stderr += c.toString("utf8")));
    const timer = setTimeout(() => child.kill("SIGKILL"), 60_000);
    child.on("error", reject);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, lines: stdout.split("\n").filter(Boolean) });
    });
  });
}
