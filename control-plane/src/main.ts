/** `npm start -w @portcullis/control-plane`: the admin API on its own. Migrations are a separate step (`npm run migrate`). */
import { serve } from "@hono/node-server";
import { createControlPlane, loadControlPlaneConfig } from "./index.ts";

const config = loadControlPlaneConfig(process.env);
if (config.generatedSecrets.includes("ADMIN_TOKEN"))
  console.log(`ADMIN_TOKEN (generated for this process): ${config.adminToken}`);
const cp = await createControlPlane(config);
const server = serve({ fetch: cp.admin.fetch, port: config.adminPort, hostname: config.adminHost }, (info) =>
  console.log(`control plane admin API on :${info.port}`),
);
const ops = serve({ fetch: cp.ops.fetch, port: config.opsPort, hostname: config.opsHost }, (info) =>
  console.log(`control plane ops (/metrics) on :${info.port}`),
);
const stop = () => {
  ops.close();
  server.close(() => void cp.close().then(() => process.exit(0)));
};
process.once("SIGTERM", stop);
process.once("SIGINT", stop);
