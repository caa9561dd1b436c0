/**
 * Ports that refuse connections for the whole run. A port that was bound and then
 * released ("closed port") is not safe in a parallel suite: the kernel hands it to
 * the next listener on port 0 — another test file's upstream, say — and the traffic
 * meant to be refused reaches that server instead. Ports below 1024 are never handed
 * out for port 0 and nothing in the suite listens on them; each one is checked
 * before use, and each call gets a port of its own (health is tracked per origin).
 */
import { connect } from "node:net";

let next = 700;

function refuses(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, "127.0.0.1");
    socket.once("connect", () => {
      socket.destroy();
      resolve(false);
    });
    socket.once("error", (error: NodeJS.ErrnoException) => resolve(error.code === "ECONNREFUSED"));
  });
}

/** A loopback port nothing listens on, and nothing in the run will. */
export async function refusedPort(): Promise<number> {
  while (next < 1024) {
    const port = next++;
    if (await refuses(port)) return port;
  }
  throw new Error("no refusing port left below 1024");
}

/** `http://127.0.0.1:<refused port>`: an origin that refuses every connection. */
export async function refusedUrl(): Promise<string> {
  return `http://127.0.0.1:${await refusedPort()}`;
}
