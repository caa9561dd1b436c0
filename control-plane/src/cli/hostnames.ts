/**
 * `portcullis hostnames list|add|verify|delete`: a tenant's hostnames over the admin
 * API; `add` prints the DNS TXT record that `verify` then checks.
 */
import type { Api } from "./api.ts";
import { EXIT, type Flags, type Io, positional, printer, refusal, table, Usage } from "./io.ts";

export async function hostnamesCommand(args: string[], flags: Flags, api: Api, io: Io): Promise<number> {
  const [sub, ...rest] = args;
  const print = printer(flags, io);
  switch (sub) {
    case "list": {
      const [t] = positional(rest, 1, "hostnames list <tenant>");
      const answer = await api.getTenant({ params: { tenant: t! } });
      if (!answer.ok) return refusal(io, answer);
      if (flags.json) io.out(JSON.stringify({ hostnames: answer.body.hostnames }, null, 2));
      else
        for (const line of table([
          ["HOSTNAME", "KIND", "STATUS"],
          ...answer.body.hostnames.map((h) => [h.hostname, h.kind, h.status]),
        ]))
          io.out(line);
      return EXIT.ok;
    }
    case "add": {
      const [t, hostname] = positional(rest, 2, "hostnames add <tenant> <hostname>");
      return print(await api.addHostname({ params: { tenant: t! }, body: { hostname: hostname! } }), (b) => [
        `added ${b.hostname} to ${t} (${b.status}); it routes once verified`,
        "publish this DNS record, then run `portcullis hostnames verify`:",
        `  ${b.verification.name}  TXT  "${b.verification.value}"`,
      ]);
    }
    case "verify": {
      const [t, hostname] = positional(rest, 2, "hostnames verify <tenant> <hostname>");
      const answer = await api.verifyHostname({ params: { tenant: t!, hostname: hostname! } });
      return print(answer, (b) => [`${b.hostname} is ${b.status}`]);
    }
    case "delete": {
      const [t, hostname] = positional(rest, 2, "hostnames delete <tenant> <hostname>");
      const answer = await api.deleteHostname({ params: { tenant: t!, hostname: hostname! } });
      return print(answer, () => [`deleted ${hostname} from ${t}`]);
    }
    default:
      throw new Usage(`unknown command: hostnames ${sub ?? ""}`);
  }
}
