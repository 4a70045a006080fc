// DATABASE_PREPARE=true, straight to Postgres (the default without a transaction pooler): the
// hand-written statements (sign-in, order list, order by id) must be server-side
// prepared once per connection like the builders' queries, and answer exactly as unnamed
// statements do. Drizzle's db.execute sends every statement unnamed, so without src/db/prepared.ts'
// runStatement they were parsed and planned again on every call. The suite's other runs go
// through PgBouncer 1.18 with DATABASE_PREPARE=false, where nothing is prepared; this file needs
// the direct URL .ci/run sets.
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { sql } from "drizzle-orm";
import { createPostgresDatabase, type DatabaseHandle, queryRows } from "../../src/db/client";
import { AUTH_LOGIN_DECIDE, AUTH_LOGIN_READ } from "../../src/db/functions";
import { callerFor, createTestDeps, insertProducts, signUp } from "../support/app";
import { getTestDatabase, TEST_DATABASE_URL, withDatabaseName } from "../support/db";

const DIRECT = process.env.TEST_DIRECT_DATABASE_URL || undefined;
if (!DIRECT) console.error("prepared-statements tests skipped: TEST_DIRECT_DATABASE_URL is not set (.ci/run sets it)");
setDefaultTimeout(60_000);

describe.if(DIRECT !== undefined && TEST_DATABASE_URL !== undefined)("DATABASE_PREPARE=true on real Postgres", () => {
  let direct: DatabaseHandle;
  beforeAll(async () => {
    // This process's migrated test database, reached without the pooler. One connection, so
    // pg_prepared_statements (per session) sees everything this test sent.
    const { url } = await getTestDatabase();
    const name = new URL(url!).pathname.slice(1);
    direct = await createPostgresDatabase({ url: withDatabaseName(DIRECT!, name), poolMax: 1, prepare: true });
  });
  afterAll(() => direct?.close());

  const preparedLike = async (prefix: string) =>
    (
      await queryRows<{ n: number }>(
        direct.db,
        sql`select count(*)::int as n from pg_prepared_statements where statement like ${`${prefix}%`}`,
      )
    )[0].n;

  test("happy: sign-ins, order lists, order lookups and cancels answer as usual, each statement prepared once", async () => {
    const deps = createTestDeps(direct);
    const account = await signUp(deps);
    const [product] = await insertProducts(direct.db, [{ price: "3.25", stock: 100 }]);
    const caller = callerFor(deps, { token: account.accessToken });
    const placed = [];
    for (let round = 0; round < 2; round++) {
      for (let i = 0; i < 3; i++) await callerFor(deps).auth.login({ email: account.user.email, password: account.password });
      for (let i = 0; i < 3; i++) placed.push(await caller.orders.create({ items: [{ productId: product.id, quantity: 2 }] }));
      const page = await caller.orders.list({ limit: 2 });
      expect(page.items.map((o) => o.id)).toEqual(
        [...placed]
          .reverse()
          .slice(0, 2)
          .map((o) => o.id),
      );
      const next = await caller.orders.list({ limit: 2, cursor: page.nextCursor! });
      expect(next.items.map((o) => o.id)).toEqual(
        [...placed]
          .reverse()
          .slice(2, 4)
          .map((o) => o.id),
      );
      const one = await caller.orders.byId({ id: placed[0].id });
      expect(one).toMatchObject({ id: placed[0].id, total: "6.50", items: [{ productId: product.id, quantity: 2 }] });
      const cancelled = await caller.orders.cancel({ id: placed[placed.length - 1].id });
      expect(cancelled.status).toBe("cancelled");
      // Each shape once, however often it ran: the count does not grow in the second round.
      // The sign-in's two statements go as their bodies (src/db/functions.ts), not as the calls
      // of migration 0009's functions that a pooled connection gets.
      expect(await preparedLike(AUTH_LOGIN_READ.statement)).toBe(1); // the read of the account and its counters
      expect(await preparedLike(AUTH_LOGIN_DECIDE.statement)).toBe(1); // its session, audit event and forgiving, decided
      expect(await preparedLike("select * from auth_login")).toBe(0);
      expect(await preparedLike('with "page" as')).toBe(2); // the list, without and with a cursor
      expect(await preparedLike("select json_build_object")).toBe(1); // orders.byId
      // The cancel runs in a transaction with its audit event; statements inside transactions
      // go unnamed (only the order's own transaction prepares, src/db/prepared.ts sendQuery).
    }
    const [{ stock }] = await queryRows<{ stock: number }>(direct.db, sql`select stock from products where id = ${product.id}::uuid`);
    expect(Number(stock)).toBe(100 - 6 * 2 + 2 * 2);
  });

  test("errors: a missing order is NOT_FOUND through a prepared statement too", async () => {
    const deps = createTestDeps(direct);
    const account = await signUp(deps);
    const caller = callerFor(deps, { token: account.accessToken });
    await expect(caller.orders.byId({ id: "00000000-0000-7000-8000-000000000000" })).rejects.toMatchObject({ code: "NOT_FOUND" });
  });
});
