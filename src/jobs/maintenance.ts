import { sql } from "drizzle-orm";
import { type DatabaseHandle, queryRows } from "../db/client";
import type { JobDeps } from "../deps";
import { describeError } from "../lib/logger";
import type { JobReport } from "./types";

/** The design's tables, in its creation order. */
export const MAINTAINED_TABLES = ["users", "products", "orders", "order_items", "sessions"] as const;

/** The design's threshold for partitioning `orders` by date. */
export const ORDERS_PARTITION_THRESHOLD = 10_000_000;

/**
 * VACUUM refuses to run inside a transaction block, so it goes to the raw client as a single
 * simple-protocol statement: on PgBouncer in transaction mode that is its own one-statement
 * transaction on whichever server connection is free, which is exactly what VACUUM needs.
 */
async function runOutsideTransaction(handle: DatabaseHandle, statement: string): Promise<void> {
  if (handle.pglite) {
    await handle.pglite.exec(statement);
  } else if (handle.sql) {
    await handle.sql.unsafe(statement).simple();
  } else {
    await handle.db.execute(sql.raw(statement));
  }
}

export async function runMaintenance(deps: JobDeps, opts: { ordersThreshold?: number } = {}): Promise<JobReport> {
  const threshold = opts.ordersThreshold ?? ORDERS_PARTITION_THRESHOLD;
  const vacuumed: string[] = [];
  const failures: { table: string; error: string }[] = [];
  for (const table of MAINTAINED_TABLES) {
    try {
      await runOutsideTransaction(deps.handle, `vacuum analyze ${table}`);
      vacuumed.push(table);
    } catch (error) {
      // One table failing (statement timeout on a huge table, a lock) must not skip the others.
      const { error: message } = describeError(error);
      failures.push({ table, error: String(message) });
      deps.logger.error("vacuum analyze failed", { table, error: message });
    }
  }

  const sizes = await queryRows<{ table: string; bytes: string | number }>(
    deps.db,
    sql`select c.relname as "table", pg_total_relation_size(c.oid) as bytes
          from pg_class c join pg_namespace n on n.oid = c.relnamespace
         where n.nspname = 'public' and c.relkind in ('r', 'p')
           and c.relname in (${sql.join(
             MAINTAINED_TABLES.map((t) => sql`${t}`),
             sql`, `,
           )})
         order by c.relname`,
  );
  const [{ n }] = await queryRows<{ n: string | number }>(deps.db, sql`select count(*) as n from orders`);
  const ordersRows = Number(n);

  const report: JobReport = {
    job: "maintenance",
    ok: failures.length === 0,
    vacuumed,
    failures,
    tableBytes: Object.fromEntries(sizes.map((s) => [s.table, Number(s.bytes)])),
    ordersRows,
    ordersPartitionThreshold: threshold,
  };
  if (ordersRows > threshold) {
    report.warning = `orders has ${ordersRows} rows, past the partitioning threshold of ${threshold}: see docs/operations.md, "Partitioning orders past 10 million rows"`;
    deps.logger.warn("orders passed the partitioning threshold", { ordersRows, threshold });
  }
  return report;
}
