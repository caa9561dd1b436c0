/** `npm start -w @portcullis/control-plane`: the admin API on its own. Migrations are a separate step (`npm run migrate`). */
import { serve } from "@hono/node-server";
import { createControlPlane, loadControlPlaneConfig, reportUnhandledRejections } from "./index.ts";

const config = loadControlPlaneConfig(process.env);
if (config.generatedSecrets.includes("ADMIN_TOKEN"))
  console.log(`ADMIN_TOKEN (generated for this process): ${config.adminToken}`);
const cp = await createControlPlane(config);
// None is expected (every background job handles its failures); one that slips through is
// logged and counted as the bug it is, and does not take the process down.
reportUnhandledRejections(cp.log, cp.metrics.unhandledRejections);
const server = serve({ fetch: cp.admin.fetch, port: config.adminPort, hostname: config.adminHost }, (info) =>
  console.log(`control plane admin API on :${info.port}`),
);
const ops = serve({ fetch: cp.ops.fetch, port: config.opsPort, hostname: config.opsHost }, (info) =>
  console.log(`control plane ops (/metrics) on :${info.port}`),
);
const stop = () => {
  ops.close();
  server.close(() =>
    cp
      .close()
      .catch((error: unknown) => cp.log.error({ err: error }, "shutdown did not complete cleanly"))
      .finally(() => process.exit(0)),
  );
};
process.once("SIGTERM", stop);
process.once("SIGINT", stop);
