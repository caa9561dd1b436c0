/** `npm run start:key-service -w @portcullis/control-plane`: the key service on its own. */
import { serve } from "@hono/node-server";
import { createControlPlane, loadControlPlaneConfig, reportUnhandledRejections } from "../index.ts";

const config = loadControlPlaneConfig(process.env);
if (config.generatedSecrets.includes("KEY_SERVICE_TOKEN")) {
  console.error("KEY_SERVICE_TOKEN must be set so routers can reach the key service");
  process.exit(2);
}
// The periodic jobs and the audit consumer run with the admin API (control-plane main), not here.
const cp = await createControlPlane(config, { jobs: false, auditConsumer: false });
// None is expected (every background job handles its failures); one that slips through is
// logged and counted as the bug it is, and does not take the process down.
reportUnhandledRejections(cp.log, cp.keyServiceMetrics.unhandledRejections);
const server = serve({ fetch: cp.keyService.fetch, port: config.keyServicePort, hostname: config.keyServiceHost }, (info) =>
  console.log(`key service on :${info.port}`),
);
const ops = serve({ fetch: cp.keyServiceOps.fetch, port: config.keyServiceOpsPort, hostname: config.keyServiceOpsHost }, (info) =>
  console.log(`key service ops (/metrics) on :${info.port}`),
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
