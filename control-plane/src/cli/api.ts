/**
 * The CLI's client of the admin API: the typed client (admin/client.ts) with the
 * CLI's settings. Without ADMIN_TOKEN every call is a usage error (exit 2); a
 * control plane that cannot be reached is `Unreachable` (exit 3).
 */
import { type AdminClient, AdminUnreachable, createAdminClient } from "../admin/client.ts";
import type { CliConfig } from "../config.ts";
import { Usage } from "./io.ts";

export type Api = AdminClient;
export { AdminUnreachable as Unreachable };

export function client(config: CliConfig): Api {
  const token = config.adminToken;
  const api = createAdminClient({ baseUrl: config.adminUrl, token: token ?? "" });
  if (token) return api;
  // Checked when a call is made, not before: `apply` reports an invalid file without one.
  const refuse = () => Promise.reject(new Usage("ADMIN_TOKEN is not set"));
  return Object.fromEntries(Object.keys(api).map((name) => [name, refuse])) as unknown as Api;
}
