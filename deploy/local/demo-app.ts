/**
 * The demo tenant app, built on @portcullis/sdk the way a tenant's team would build
 * theirs: `verify` refuses any request whose signed tenant context does not verify
 * with this app's own context key (401), and every query runs in `withTenant` on the
 * database of the tenant's binding, where row-level security scopes it.
 *
 *   GET  /orders, /v1/orders      the tenant's orders
 *   GET  /orders/:id              one order; 404 when it is not the tenant's
 *   POST /orders {item, quantity} 201; queues an `order.confirm` job in the same transaction
 *   anything else                 the verified tenant context (as the echo app showed it)
 *
 * A job worker per open database confirms placed orders, inside `withTenant` for the
 * tenant sealed into the job.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { getRequestListener } from "@hono/node-server";
import {
  type ContextKeys,
  type DatabaseBinding,
  enqueueForTenant,
  jobWorker,
  type OpenedDatabase,
  type TenantDatabases,
  type TenantEnv,
  tenantDatabases,
  verify,
} from "@portcullis/sdk";
import { asc, eq } from "drizzle-orm";
import { Hono } from "hono";
import { type DemoDb, orderId, orders } from "./demo-db.ts";

export interface DemoAppOptions {
  name: string;
  /** This app's context key(s), or a key function. */
  keys: ContextKeys;
  /** With a key function: the key version job envelopes are sealed with (default 1). */
  signingVersion?: number;
  /** Opens the database of a binding (`pgliteDatabases` / `postgresDatabases` of demo-db.ts). */
  open: (binding: DatabaseBinding) => Promise<OpenedDatabase<DemoDb>>;
  /** The unprivileged role every transaction runs as. */
  role: string;
  /** How often each database's job worker polls (default 500 ms). */
  jobIntervalMs?: number;
}

const notFound = (requestId: string | null) => ({
  error: { code: "not_found", message: "No such order.", ...(requestId ? { requestId } : {}) },
});

export function demoApp(options: DemoAppOptions, databases: TenantDatabases<DemoDb>) {
  const jobKeys = {
    keys: options.keys,
    ...(typeof options.keys === "function" ? { signingVersion: options.signingVersion ?? 1 } : {}),
  };
  const app = new Hono<TenantEnv>();
  app.use("*", verify({ keys: options.keys }));

  const list = async (c: { var: TenantEnv["Variables"] }) => {
    const tenant = c.var.tenant;
    // No WHERE tenant_id here on purpose: row-level security is what scopes the query.
    const rows = await databases.withTenant(tenant, (tx) => tx.select().from(orders).orderBy(asc(orders.createdAt)));
    return { tenant: tenant.slug, orders: rows };
  };
  app.get("/orders", async (c) => c.json(await list(c)));
  app.get("/v1/orders", async (c) => c.json(await list(c)));

  app.get("/orders/:id", async (c) => {
    const tenant = c.var.tenant;
    const [row] = await databases.withTenant(tenant, (tx) =>
      tx
        .select()
        .from(orders)
        .where(eq(orders.id, c.req.param("id"))),
    );
    // Another tenant's order is not "forbidden": as far as this tenant knows, it does not exist.
    return row === undefined ? c.json(notFound(tenant.requestId), 404) : c.json(row);
  });

  app.post("/orders", async (c) => {
    const tenant = c.var.tenant;
    const body = (await c.req.json().catch(() => null)) as { item?: unknown; quantity?: unknown } | null;
    const item = typeof body?.item === "string" ? body.item.trim() : "";
    const quantity = body?.quantity;
    if (
      item === "" ||
      item.length > 200 ||
      !Number.isInteger(quantity) ||
      (quantity as number) < 1 ||
      (quantity as number) > 1000
    )
      return c.json(
        { error: { code: "invalid_order", message: "Send {item: a non-empty string, quantity: an integer from 1 to 1000}." } },
        400,
      );
    const row = await databases.withTenant(tenant, async (tx) => {
      const [created] = await tx
        .insert(orders)
        .values({ id: orderId(), tenantId: tenant.id, item, quantity: quantity as number })
        .returning();
      await enqueueForTenant(tx, tenant, { type: "order.confirm", payload: { orderId: created?.id } }, jobKeys);
      return created;
    });
    return c.json(row, 201);
  });

  app.all("*", (c) => {
    const context: Record<string, string> = {};
    c.req.raw.headers.forEach((value, name) => {
      if (name.startsWith("x-tenant-") || name.startsWith("x-forwarded-") || name === "x-user-id" || name === "x-request-id")
        context[name] = value;
    });
    // Only a verified request gets here: signatureValid is always true (the rest were refused with 401).
    return c.json({
      app: options.name,
      method: c.req.method,
      path: new URL(c.req.url).pathname + new URL(c.req.url).search,
      signatureValid: true,
      tenant: c.var.tenant,
      context,
    });
  });
  return app;
}

export interface DemoApp {
  port: number;
  url: string;
  databases: TenantDatabases<DemoDb>;
  close(): Promise<void>;
}

/** The demo app on a port of its own (0: any), with a job worker on each database it opens. */
export async function startDemoApp(options: DemoAppOptions & { port?: number; host?: string }): Promise<DemoApp> {
  const workerKeys = options.keys;
  const databases = tenantDatabases<DemoDb>({
    role: options.role,
    max: 8,
    async open(binding) {
      const opened = await options.open(binding);
      const worker = jobWorker<DemoDb>({
        db: opened.db,
        keys: workerKeys,
        role: options.role,
        handlers: {
          "order.confirm": async (tx, payload) => {
            const id = (payload as { orderId?: unknown } | null)?.orderId;
            // Inside withTenant: an order id of another tenant matches no row.
            if (typeof id === "string") await tx.update(orders).set({ status: "confirmed" }).where(eq(orders.id, id));
          },
        },
      }).start(options.jobIntervalMs ?? 500);
      return {
        db: opened.db,
        close: async () => {
          await worker.stop();
          await opened.close();
        },
      };
    },
  });
  const app = demoApp(options, databases);
  const server: Server = createServer(getRequestListener(app.fetch));
  await new Promise<void>((resolve) => server.listen(options.port ?? 0, options.host ?? "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    databases,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await databases.close();
    },
  };
}
