/** `npm start -w @portcullis/router`: the router on its own, configured from the environment. */
import { loadRouterConfig } from "./config.ts";
import { startRouter } from "./server.ts";

const config = loadRouterConfig(process.env);
if (config.generatedSecrets.length > 0) {
  console.warn(
    `router: generated ${config.generatedSecrets.join(", ")} for this process only; set them to share with other services`,
  );
}
if (!config.redisUrl)
  console.warn("router: REDIS_URL is unset; the in-process store works only when every service shares this process");
const router = await startRouter(config);
console.log(`router listening on :${router.port} (ops :${router.opsPort})`);
process.once("SIGTERM", () => {
  void router.drain().then(() => process.exit(0));
});
process.once("SIGINT", () => {
  void router.close().then(() => process.exit(0));
});
