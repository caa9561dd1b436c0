/** The benchmark's app: node:http, keep-alive, a fixed 100-byte body for every request. */
import { createServer } from "node:http";
import { ready } from "./common.ts";

const BODY = Buffer.from(`${"x".repeat(99)}\n`);
const server = createServer({ keepAliveTimeout: 60_000 }, (req, res) => {
  const finish = () => {
    res.writeHead(200, { "content-type": "text/plain", "content-length": BODY.length });
    res.end(BODY);
  };
  if (req.readableEnded) finish();
  else {
    req.resume();
    req.on("end", finish);
  }
});
server.listen(0, "127.0.0.1", () => ready(server));
