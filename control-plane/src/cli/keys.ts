/**
 * `portcullis keys list|create|revoke`: a tenant's API keys over the admin API; a
 * created key is printed once, as the API shows it once.
 */
import type { Api } from "./api.ts";
import { type Flags, type Io, positional, printer, table, Usage } from "./io.ts";

export async function keysCommand(args: string[], flags: Flags, api: Api, io: Io): Promise<number> {
  const [sub, ...rest] = args;
  const print = printer(flags, io);
  switch (sub) {
    case "list": {
      const [t] = positional(rest, 1, "keys list <tenant>");
      return print(await api.listKeys({ params: { tenant: t! } }), (b) =>
        b.keys.length === 0
          ? [`no keys for ${t}`]
          : table([
              ["ID", "PREFIX", "NAME", "STATUS", "CREATED", "EXPIRES", "LAST USED"],
              ...b.keys.map((k: any) => [
                k.id,
                k.prefix,
                k.name ?? "-",
                k.status,
                k.createdAt,
                k.expiresAt ?? "-",
                k.lastUsedAt ?? "-",
              ]),
            ]),
      );
    }
    case "create": {
      const [t] = positional(rest, 1, "keys create <tenant> [--name NAME] [--expires-at ISO-8601]");
      const answer = await api.createKey({
        params: { tenant: t! },
        body: {
          ...(flags.name ? { name: flags.name } : {}),
          ...(flags["expires-at"] ? { expiresAt: flags["expires-at"] } : {}),
        },
      });
      return print(answer, (b) => [`created key ${b.id} for ${t}; it is shown once:`, `  ${b.key}`]);
    }
    case "revoke": {
      const [t, id] = positional(rest, 2, "keys revoke <tenant> <keyId>");
      return print(await api.revokeKey({ params: { tenant: t!, keyId: id! } }), () => [`revoked key ${id}`]);
    }
    default:
      throw new Usage(`unknown command: keys ${sub ?? ""}`);
  }
}
