import { beforeEach, describe, expect, test } from "bun:test";
import { sql } from "drizzle-orm";
import { seedAdmin } from "../../src/bootstrap";
import { queryRows } from "../../src/db/client";
import { CATALOG, DEV_CUSTOMERS, DEV_PASSWORD, seedCatalog, seedDevData } from "../../src/db/seed";
import { callerFor, createTestDeps } from "../support/app";
import { getTestDatabase, resetDatabase } from "../support/db";

const handle = await getTestDatabase();
beforeEach(() => resetDatabase(handle));

/** Every row of the seeded tables, as text, so "changes nothing" compares values, not just counts. */
async function snapshot(): Promise<string> {
  const rows = await queryRows<{ t: string }>(
    handle.db,
    sql`select concat_ws('|',
          (select string_agg(p::text, ',' order by p.id) from products p),
          (select string_agg(u.id || u.email || u.role || u.updated_at, ',' order by u.id) from users u),
          (select string_agg(o::text, ',' order by o.id) from orders o),
          (select string_agg(i::text, ',' order by i.id) from order_items i)) as t`,
  );
  return rows[0].t;
}

describe("seed", () => {
  test("the catalog loads once; a second run changes nothing", async () => {
    expect((await seedCatalog(handle.db)).inserted).toBe(CATALOG.length);
    const first = await snapshot();
    expect((await seedCatalog(handle.db)).inserted).toBe(0);
    expect(await snapshot()).toBe(first);
  });

  test("dev data (customers with orders) and the admin are idempotent too", async () => {
    const firstDev = await seedDevData(handle.db);
    expect(firstDev.users).toBe(DEV_CUSTOMERS.length);
    expect(firstDev.orders).toBeGreaterThan(0);
    await seedAdmin(handle.db, "owner@example.com", "owner password 1");
    const first = await snapshot();
    expect(await seedDevData(handle.db)).toEqual({ users: 0, orders: 0 });
    await seedAdmin(handle.db, "owner@example.com", "owner password 1");
    expect(await snapshot()).toBe(first);

    // The seeded accounts are usable: a customer signs in and sees their orders.
    const deps = createTestDeps(handle.db);
    const auth = await callerFor(deps).auth.login({ email: DEV_CUSTOMERS[0], password: DEV_PASSWORD });
    const page = await callerFor(deps, { token: auth.accessToken }).orders.list();
    expect(page.items.length).toBe(2);
    for (const order of page.items) expect(order.items.length).toBe(2);
    const admin = await callerFor(deps).auth.login({ email: "owner@example.com", password: "owner password 1" });
    expect(admin.user.role).toBe("admin");
  }, 60_000);
});
