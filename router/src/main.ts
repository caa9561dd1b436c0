/**
 * `npm start -w @portcullis/router`: the router on its own, configured from the
 * environment. With `ROUTER_WORKERS` above 1, this process is the primary of that many
 * router processes (cluster.ts).
 */
import cluster from "node:cluster";
import pino from "pino";
import { runPrimary, runWorker } from "./cluster.ts";
import { loadRouterConfig } from "./config.ts";
import { startRouter } from "./server.ts";

const config = loadRouterConfig(process.env);
if (cluster.isPrimary) {
  if (config.generatedSecrets.length > 0)
    console.warn(
      `router: generated ${config.generatedSecrets.join(", ")} for this process only; set them to share with other services`,
    );
  if (!config.redis)
    console.warn(
      "router: REDIS_URL (or REDIS_SENTINELS) is unset; the in-process store works only when every service shares this process",
    );
}

if (config.workers > 1 && cluster.isPrimary) {
  const log = pino({ level: config.logLevel, base: { service: "router", role: "primary" } });
  try {
    const primary = await runPrimary(config, log);
    console.log(`router listening on :${primary.port} (ops :${primary.opsPort}), ${primary.workers} worker processes`);
    process.exit(await primary.stopped);
  } catch (error) {
    log.fatal({ err: error }, "router workers did not start");
    for (const worker of Object.values(cluster.workers ?? {})) worker?.process.kill("SIGKILL");
    process.exit(1);
  }
} else if (cluster.isWorker) {
  await runWorker(config, pino({ level: config.logLevel, base: { service: "router", worker: cluster.worker?.id } }));
} else {
  const router = await startRouter(config);
  console.log(`router listening on :${router.port} (ops :${router.opsPort})`);
  process.once("SIGTERM", () => {
    void router.drain().then(() => process.exit(0));
  });
  process.once("SIGINT", () => {
    void router.close().then(() => process.exit(0));
  });
}
