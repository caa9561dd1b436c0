/**
 * `portcullis tenants list|get|create|suspend|resume|delete`: the tenant commands,
 * over the admin API's /v1/tenants; `list` walks every page of it.
 */
import type { Api } from "./api.ts";
import { type ApiAnswer, type Flags, type Io, positional, printer, table, Usage } from "./io.ts";

function describeTenant(t: any): string[] {
  return [
    `tenant   ${t.slug} (${t.id})`,
    `name     ${t.name}`,
    `status   ${t.status}`,
    `plan     ${t.plan}`,
    `database ${t.database ? `${t.database.server}/${t.database.database}` : "(none: traffic is refused until bound)"}`,
    `upstreams ${t.upstreams.length > 0 ? t.upstreams.join(", ") : "(none)"}`,
    "hostnames",
    ...t.hostnames.map((h: any) => `  ${h.hostname}  ${h.kind}  ${h.status}`),
  ];
}

export async function tenantsCommand(args: string[], flags: Flags, api: Api, io: Io): Promise<number> {
  const [sub, ...rest] = args;
  const print = printer(flags, io);
  /** Every page of the list, as one answer (the first refusal as it is). */
  const allTenants = async (): Promise<ApiAnswer> => {
    const all: unknown[] = [];
    let after: string | undefined;
    for (;;) {
      const page = await api.listTenants({ query: { after } });
      if (!page.ok) return page;
      all.push(...page.body.tenants);
      if (typeof page.body.next !== "string") return { status: page.status, body: { tenants: all } };
      after = page.body.next;
    }
  };
  switch (sub) {
    case "list": {
      positional(rest, 0, "no arguments");
      return print(await allTenants(), (b) =>
        b.tenants.length === 0
          ? ["no tenants"]
          : table([
              ["SLUG", "STATUS", "PLAN", "DATABASE", "HOSTNAMES", "ID"],
              ...b.tenants.map((t: any) => [
                t.slug,
                t.status,
                t.plan,
                t.database ? t.database.server : "-",
                t.hostnames.map((h: any) => (h.status === "verified" ? h.hostname : `${h.hostname} (${h.status})`)).join(", "),
                t.id,
              ]),
            ]),
      );
    }
    case "get": {
      const [t] = positional(rest, 1, "tenants get <tenant>");
      return print(await api.getTenant({ params: { tenant: t! } }), describeTenant);
    }
    case "create": {
      const [slug] = positional(rest, 1, "tenants create <slug> --name NAME [--plan PLAN]");
      if (!flags.name) throw new Usage("tenants create needs --name");
      const answer = await api.createTenant({
        body: { slug: slug!, name: flags.name, ...(flags.plan ? { plan: flags.plan } : {}) },
      });
      return print(answer, (b) => [
        `created tenant ${b.slug} (${b.id}) at ${b.hostnames[0]?.hostname ?? "?"}`,
        "next: bind its database (PUT /v1/tenants/:tenant/database) and set its upstreams, or use `portcullis apply`",
      ]);
    }
    case "suspend":
    case "resume": {
      const [t] = positional(rest, 1, `tenants ${sub} <tenant>`);
      const answer = await api.patchTenant({
        params: { tenant: t! },
        body: { status: sub === "suspend" ? "suspended" : "active" },
      });
      return print(answer, (b) => [`tenant ${b.slug} is ${b.status}`]);
    }
    case "delete": {
      const [t] = positional(rest, 1, "tenants delete <tenant>");
      const answer = await api.deleteTenant({ params: { tenant: t! } });
      return print(answer, () => [`deleted tenant ${t}: its hostnames, keys and sessions no longer work`]);
    }
    default:
      throw new Usage(`unknown command: tenants ${sub ?? ""}`);
  }
}
