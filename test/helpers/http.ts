/** Small HTTP helpers for tests: requests with an explicit Host, and raw bytes on a socket. */
import { connect } from "node:net";
import { request as undiciRequest } from "undici";

export interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  json: <T = any>() => T;
}

export async function send(
  port: number,
  host: string,
  path = "/",
  options: { method?: string; headers?: Record<string, string | string[]>; body?: string | Buffer } = {},
): Promise<Answer> {
  const res = await undiciRequest(`http://127.0.0.1:${port}${path}`, {
    method: (options.method ?? "GET") as "GET",
    headers: { host, ...(options.headers ?? {}) },
    body: options.body ?? null,
  });
  const text = await res.body.text();
  return {
    status: res.statusCode,
    headers: res.headers as Answer["headers"],
    text,
    json: () => JSON.parse(text),
  };
}

/** Send raw bytes and collect everything the server writes until it closes or goes quiet. */
export function raw(
  port: number,
  bytes: string | Buffer,
  options: { quietMs?: number; timeoutMs?: number } = {},
): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, "127.0.0.1");
    const chunks: Buffer[] = [];
    let quiet: NodeJS.Timeout | undefined;
    const done = () => {
      clearTimeout(quiet);
      clearTimeout(overall);
      socket.destroy();
      resolve(Buffer.concat(chunks).toString("latin1"));
    };
    const overall = setTimeout(done, options.timeoutMs ?? 3_000);
    socket.on("data", (c: Buffer) => {
      chunks.push(c);
      clearTimeout(quiet);
      quiet = setTimeout(done, options.quietMs ?? 300);
    });
    socket.on("end", done);
    socket.on("close", done);
    socket.on("error", (e) => (chunks.length > 0 ? done() : reject(e)));
    socket.write(bytes);
  });
}

/** Status codes of every HTTP response found in a raw byte stream. */
export function statuses(rawText: string): number[] {
  return [...rawText.matchAll(/HTTP\/1\.1 (\d{3})/g)].map((m) => Number(m[1]));
}
