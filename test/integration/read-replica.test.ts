// DATABASE_READ_URL against a real streaming replica (.ci/run starts one with pg_basebackup -R
// from its Postgres; .ci/pg.sh's pg_replica_up). The replica's WAL replay is paused where a test
// needs the two servers to disagree: then whatever a read returns says which server answered.
import { afterAll, beforeAll, describe, expect, spyOn, test } from "bun:test";
import { createServer } from "node:net";
import { eq, sql } from "drizzle-orm";
import { openDatabase } from "../../src/bootstrap";
import { createPostgresDatabase, type DatabaseHandle, queryRows } from "../../src/db/client";
import { products } from "../../src/db/schema";
import type { JobDeps } from "../../src/deps";
import { parseEnv } from "../../src/env";
import { createLogger } from "../../src/lib/logger";
import worker from "../../src/worker";
import { callerFor, callHttp, createTestDeps, errorCodeOf, signUp, signUpAdmin, TEST_JWT_SECRET } from "../support/app";
import { getTestDatabase, onPostgres, prepareStatements, withDatabaseName } from "../support/db";

/** Set by .ci/run: the replica server (its own port), and its folder for pg_replica_stop/start. */
const REPLICA_URL = process.env.TEST_REPLICA_URL || undefined;
const REPLICA_DIR = process.env.TEST_REPLICA_DIR || undefined;
const enabled = onPostgres && REPLICA_URL !== undefined && REPLICA_DIR !== undefined;

const PG_SH = `${import.meta.dir}/../../.ci/pg.sh`;

type Line = { level: string; msg: string; [k: string]: unknown };

/** .ci/pg.sh's pg_replica_stop / pg_replica_start on the CI replica. */
function replicaCtl(action: "stop" | "start"): void {
  const run = Bun.spawnSync(["bash", "-c", `source "$0" && pg_replica_${action} "$1"`, PG_SH, REPLICA_DIR!]);
  if (run.exitCode !== 0) throw new Error(`pg_replica_${action} failed: ${run.stderr.toString()}`);
}

let handle: DatabaseHandle;
let deps: JobDeps;
let replicaDirect: DatabaseHandle;
let primaryDirect: DatabaseHandle;
let replicaUrl: string;
const lines: Line[] = [];

/** Which server answers a read through readDb now, asked of that very connection. */
async function readServedBy(d: JobDeps = deps): Promise<"replica" | "primary"> {
  const [row] = await queryRows<{ r: boolean }>(d.readDb, sql`select pg_is_in_recovery() as r`);
  return row.r ? "replica" : "primary";
}

/**
 * Waits until the replica has replayed everything the primary has written so far. The insert
 * position, not pg_current_wal_lsn(): CI runs with synchronous_commit = off, so a commit can sit
 * in WAL buffers (up to wal_writer_delay) past the position already written.
 */
async function replicaCaughtUp(): Promise<void> {
  const [{ lsn }] = await queryRows<{ lsn: string }>(primaryDirect.db, sql`select pg_current_wal_insert_lsn()::text as lsn`);
  for (let i = 0; i < 200; i++) {
    const [row] = await queryRows<{ ok: boolean }>(replicaDirect.db, sql`select pg_last_wal_replay_lsn() >= ${lsn}::pg_lsn as ok`);
    if (row.ok) return;
    await Bun.sleep(50);
  }
  throw new Error("the replica did not catch up within 10 s");
}

const pauseReplay = () => replicaDirect.db.execute(sql`select pg_wal_replay_pause()`);
const resumeReplay = () => replicaDirect.db.execute(sql`select pg_wal_replay_resume()`);

/** Polls `probe` until it is true (or gives up after `ms`). */
async function eventually(probe: () => Promise<boolean>, ms: number): Promise<boolean> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if (await probe()) return true;
    await Bun.sleep(100);
  }
  return false;
}

// Said in the test list, not just absent: this file proves nothing without a replica.
if (!enabled) {
  test.skip("read replica: set TEST_REPLICA_URL and TEST_REPLICA_DIR beside TEST_DATABASE_URL (.ci/run starts a streaming replica)", () => {});
}

/** One Worker invocation (src/worker.ts) of a GET: its JSON body once the database has closed, and its log lines. */
async function workerGet(path: string, bindings: Record<string, unknown>) {
  const pending: Promise<unknown>[] = [];
  const logged: string[] = [];
  const logSpy = spyOn(console, "log").mockImplementation((line: unknown) => void logged.push(String(line)));
  try {
    const res = await worker.fetch(new Request(`http://worker${path}`), bindings, { waitUntil: (p) => void pending.push(p) });
    const body: unknown = await res.json();
    await Promise.all(pending);
    return { status: res.status, body, logged };
  } finally {
    logSpy.mockRestore();
  }
}

const byIdPath = (id: string) => `/trpc/products.byId?input=${encodeURIComponent(JSON.stringify({ id }))}`;

// No replica needed: a replica URL nobody listens on must cost the Worker's catalog reads nothing
// but a fallback, and only the first invocation pays the refused connection (the back-off is
// kept per isolate).
describe.if(onPostgres)("read replica on Workers: an unreachable replica", () => {
  test("catalog reads answer from the primary, with one warning over several invocations", async () => {
    const db = await getTestDatabase();
    const [product] = await db.db.insert(products).values({ name: "worker fallback", price: "4.00", stock: 2 }).returning();
    const logged: string[] = [];
    const bindings = {
      DATABASE_URL: db.url!,
      DATABASE_READ_URL: `postgres://postgres@127.0.0.1:1/nothing_listens_${Date.now()}`,
      JWT_SECRET: TEST_JWT_SECRET,
      DATABASE_PREPARE: String(prepareStatements),
    };
    for (let i = 0; i < 3; i++) {
      const res = await workerGet(byIdPath(product!.id), bindings);
      expect(res.status).toBe(200);
      expect(res.body).toMatchObject({ result: { data: { id: product!.id, stock: 2 } } });
      logged.push(...res.logged);
    }
    const warnings = logged.filter((l) => l.includes('"level":"warn"'));
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toContain("read replica unreachable");
    expect(warnings[0]).not.toContain("nothing_listens");
  });
});

// A replica host that accepts connections and never answers (gone behind a firewall that drops
// packets): each try waits out the 5 s connect timeout, so only one read at a time may pay it.
describe.if(onPostgres)("read replica that never answers", () => {
  test("the first read waits out the connect timeout; while the retry waits, the other reads go straight to the primary", async () => {
    const held = new Set<import("node:net").Socket>();
    const hole = createServer((socket) => void held.add(socket));
    await new Promise<void>((resolve) => hole.listen(0, "127.0.0.1", resolve));
    const port = (hole.address() as { port: number }).port;
    const db = await getTestDatabase();
    const [product] = await db.db.insert(products).values({ name: "black hole", price: "1.00", stock: 1 }).returning();
    const logged: Line[] = [];
    const guarded = await createPostgresDatabase({
      url: db.url!,
      poolMax: 4,
      prepare: prepareStatements,
      readUrl: `postgres://postgres@127.0.0.1:${port}/hole_${Date.now()}`,
    });
    const d = createTestDeps(guarded, { logger: createLogger("debug", (line) => logged.push(JSON.parse(line))) });
    const read = async () => {
      const started = performance.now();
      expect((await callerFor(d).products.byId({ id: product!.id })).stock).toBe(1);
      return performance.now() - started;
    };
    try {
      expect(await read()).toBeGreaterThan(4000);
      expect(logged.filter((l) => l.level === "warn")).toEqual([expect.objectContaining({ code: "CONNECT_TIMEOUT", retryInMs: 1000 })]);
      expect(await read()).toBeLessThan(1000);
      await Bun.sleep(1100);
      const retry = read();
      await Bun.sleep(50);
      const others: number[] = [];
      for (let i = 0; i < 5; i++) others.push(await read());
      expect(Math.max(...others)).toBeLessThan(1000);
      expect(await retry).toBeGreaterThan(4000);
      expect(logged.filter((l) => l.level === "warn")).toHaveLength(1);
    } finally {
      for (const s of held) s.destroy();
      hole.close();
      await guarded.close();
    }
  }, 30_000);
});

describe.if(enabled)("read replica", () => {
  beforeAll(async () => {
    const db = await getTestDatabase();
    const name = new URL(db.url!).pathname.slice(1);
    replicaUrl = withDatabaseName(REPLICA_URL!, name);
    primaryDirect = await createPostgresDatabase({
      url: withDatabaseName(process.env.TEST_DIRECT_DATABASE_URL || db.url!, name),
      poolMax: 1,
      prepare: false,
    });
    replicaDirect = await createPostgresDatabase({ url: replicaUrl, poolMax: 1, prepare: false });
    // The database and its migrations reach the replica by replay like everything else.
    expect(
      await eventually(
        async () =>
          await replicaDirect.db.execute(sql`select 1 from products limit 1`).then(
            () => true,
            () => false,
          ),
        15_000,
      ),
    ).toBe(true);
    // The way the Bun and Deno hosts open it: validated env, then bootstrap's openDatabase.
    const env = parseEnv({
      DATABASE_URL: db.url,
      DATABASE_READ_URL: replicaUrl,
      DATABASE_POOL_MAX: "5",
      DATABASE_PREPARE: String(prepareStatements),
      JWT_SECRET: TEST_JWT_SECRET,
    });
    handle = await openDatabase(env);
    deps = createTestDeps(handle, { logger: createLogger("debug", (line) => lines.push(JSON.parse(line))) });
  }, 30_000);

  afterAll(async () => {
    // Whatever a failed test left: replay running, the replica up for the next step of CI.
    replicaCtl("start");
    await resumeReplay().catch(() => {});
    await handle?.close();
    await replicaDirect?.close();
    await primaryDirect?.close();
  }, 30_000);

  describe("happy path", () => {
    test("readDb is the replica, db the primary; without DATABASE_READ_URL readDb is db itself", async () => {
      expect(await readServedBy()).toBe("replica");
      const [primary] = await queryRows<{ r: boolean }>(deps.db, sql`select pg_is_in_recovery() as r`);
      expect(primary.r).toBe(false);
      const plain = createTestDeps(handle.db);
      expect(plain.readDb).toBe(plain.db);
    });

    test("public catalog reads come from the replica; the writes before them went to the primary", async () => {
      const admin = await signUpAdmin(deps);
      await replicaCaughtUp();
      await pauseReplay();
      try {
        // A write through the replica would fail (read-only): this one lands on the primary.
        const created = await admin.caller.products.create({ name: "replica probe", price: "9.99", stock: 4 });
        const [onPrimary] = await primaryDirect.db.select().from(products).where(eq(products.id, created.id));
        expect(onPrimary?.stock).toBe(4);
        // Replay is paused: the replica has not seen it, so every anonymous read misses it.
        const anonymous = callerFor(deps);
        expect(await errorCodeOf(anonymous.products.byId({ id: created.id }))).toBe("NOT_FOUND");
        expect(await errorCodeOf(anonymous.inventory.get({ productId: created.id }))).toBe("NOT_FOUND");
        const page = await anonymous.products.list({ search: "replica probe" });
        expect(page.items.map((p) => p.id)).not.toContain(created.id);
        // Over HTTP too (GET takes the query fast path).
        expect((await callHttp(deps, "products.byId", "query", { id: created.id })).error?.code).toBe("NOT_FOUND");
        // Admin reads that precede writes stay on the primary.
        const low = await admin.caller.inventory.lowStock({ threshold: 4 });
        expect(low.items.map((i) => i.productId)).toContain(created.id);
      } finally {
        await resumeReplay();
      }
      await replicaCaughtUp();
      const found = await callerFor(deps).products.list({ search: "replica probe" });
      expect(found.items).toHaveLength(1);
    });

    test("a write followed by the author's own read is consistent; anonymous readers may lag", async () => {
      const admin = await signUpAdmin(deps);
      const customer = await signUp(deps);
      const product = await admin.caller.products.create({ name: "lagging price", price: "10.00", stock: 0 });
      await replicaCaughtUp();
      await pauseReplay();
      try {
        // The mutation answers from the primary, and so does the author's next catalog read.
        const updated = await admin.caller.products.update({ id: product.id, price: "12.50" });
        expect(updated.price).toBe("12.50");
        expect((await admin.caller.products.byId({ id: product.id })).price).toBe("12.50");
        expect((await callHttp(deps, "products.byId", "query", { id: product.id }, { token: admin.accessToken })).data).toMatchObject({
          price: "12.50",
        });
        expect((await callerFor(deps).products.byId({ id: product.id })).price).toBe("10.00");

        // Stock: set on the primary, while the replica still says 0. The order's stock check
        // reads the primary (a replica check would refuse it), and so does the buyer's next read.
        expect((await admin.caller.inventory.set({ productId: product.id, stock: 3 })).stock).toBe(3);
        expect((await callerFor(deps).inventory.get({ productId: product.id })).stock).toBe(0);
        const order = await customer.caller.orders.create({ items: [{ productId: product.id, quantity: 2 }] });
        expect(order.status).toBe("pending");
        expect((await customer.caller.orders.byId({ id: order.id })).id).toBe(order.id);
        expect((await customer.caller.inventory.get({ productId: product.id })).stock).toBe(1);
        expect(await errorCodeOf(customer.caller.orders.create({ items: [{ productId: product.id, quantity: 2 }] }))).toBe("CONFLICT");
      } finally {
        await resumeReplay();
      }
      await replicaCaughtUp();
      expect((await callerFor(deps).products.byId({ id: product.id })).price).toBe("12.50");
      expect((await callerFor(deps).inventory.get({ productId: product.id })).stock).toBe(1);
    });

    test("the replica stopping (pg_ctl stop) sends reads to the primary without an error; they return when it is back", async () => {
      const admin = await signUpAdmin(deps);
      const product = await admin.caller.products.create({ name: "while the replica is away", price: "3.00", stock: 7 });
      await replicaCaughtUp();
      expect(await readServedBy()).toBe("replica");
      const before = lines.length;

      // Four readers keep going while the replica is stopped under them.
      let reading = true;
      const errors: unknown[] = [];
      let reads = 0;
      const reader = async () => {
        while (reading) {
          try {
            const p = await callerFor(deps).products.byId({ id: product.id });
            expect(p.stock).toBe(7);
            reads++;
          } catch (error) {
            errors.push(error);
          }
        }
      };
      const readers = [reader(), reader(), reader(), reader()];
      await Bun.sleep(200);
      replicaCtl("stop");
      await Bun.sleep(1500);
      expect(await readServedBy()).toBe("primary");
      reading = false;
      await Promise.all(readers);
      expect(errors).toEqual([]);
      expect(reads).toBeGreaterThan(10);
      const warnings = lines.slice(before).filter((l) => l.level === "warn");
      expect(warnings).toHaveLength(1);
      expect(warnings[0].msg).toContain("read replica unreachable");
      expect(JSON.stringify(warnings)).not.toContain(replicaUrl);

      replicaCtl("start");
      // The next read after the back-off tries the replica again and stays there.
      expect(await eventually(async () => (await readServedBy()) === "replica", 40_000)).toBe(true);
      expect(lines.slice(before).some((l) => l.level === "info" && l.msg.includes("read replica is back"))).toBe(true);
      expect((await callerFor(deps).products.byId({ id: product.id })).stock).toBe(7);
    }, 90_000);

    test("DATABASE_READ_MAX_LAG_SECONDS: reads go to the primary while replay lags, and back once it caught up", async () => {
      const lagLines: Line[] = [];
      const guarded = await createPostgresDatabase({
        url: (await getTestDatabase()).url!,
        poolMax: 2,
        prepare: prepareStatements,
        readUrl: replicaUrl,
        readMaxLagSeconds: 1,
      });
      const guardedDeps = createTestDeps(guarded, { logger: createLogger("debug", (line) => lagLines.push(JSON.parse(line))) });
      try {
        const admin = await signUpAdmin(deps);
        const product = await admin.caller.products.create({ name: "lag guard", price: "1.00", stock: 1 });
        await replicaCaughtUp();
        expect(await readServedBy(guardedDeps)).toBe("replica");
        await pauseReplay();
        try {
          await admin.caller.products.update({ id: product.id, price: "2.00" });
          // The replica has received the change but not applied it; past a second of that, the
          // guard's next check moves anonymous reads to the primary.
          const fresh = await eventually(
            async () => (await callerFor(guardedDeps).products.byId({ id: product.id })).price === "2.00",
            10_000,
          );
          expect(fresh).toBe(true);
          expect(guarded.replica!.health.state).toBe("lagging");
          expect(lagLines.filter((l) => l.level === "warn" && l.msg.includes("lags behind"))).toHaveLength(1);
          // Without the guard the same read is stale: the replica is still paused.
          expect((await callerFor(deps).products.byId({ id: product.id })).price).toBe("1.00");
        } finally {
          await resumeReplay();
        }
        await replicaCaughtUp();
        expect(await eventually(async () => (await readServedBy(guardedDeps)) === "replica", 10_000)).toBe(true);
        expect(lagLines.some((l) => l.level === "info" && l.msg.includes("caught up"))).toBe(true);
      } finally {
        await guarded.close();
      }
    }, 30_000);
  });

  describe("on Workers", () => {
    test("a HYPERDRIVE_READ binding (or DATABASE_READ_URL) sends the Worker's catalog reads to the replica", async () => {
      const db = await getTestDatabase();
      await replicaCaughtUp();
      await pauseReplay();
      try {
        const [product] = await db.db.insert(products).values({ name: "worker replica", price: "4.00", stock: 2 }).returning();
        const base = { DATABASE_URL: db.url!, JWT_SECRET: TEST_JWT_SECRET, DATABASE_PREPARE: String(prepareStatements) };
        // Not replayed yet: the replica does not have it, the primary does.
        for (const bindings of [
          { ...base, HYPERDRIVE_READ: { connectionString: replicaUrl } },
          { ...base, DATABASE_READ_URL: replicaUrl },
        ]) {
          const res = await workerGet(byIdPath(product!.id), bindings);
          expect(res.status).toBe(404);
          expect(res.body).toMatchObject({ error: { data: { code: "NOT_FOUND" } } });
        }
        expect((await workerGet(byIdPath(product!.id), base)).status).toBe(200);
      } finally {
        await resumeReplay();
      }
    });
  });

  describe("errors", () => {
    test("a statement's own error on the replica is thrown as it is: no fallback, no warning", async () => {
      const before = lines.length;
      const outcome = await deps.readDb.execute(sql`select 1 / (select count(*) from products where false)`).then(
        () => "no error",
        (error) => (error as { cause?: { code?: string } }).cause?.code ?? (error as { code?: string }).code,
      );
      expect(outcome).toBe("22012");
      expect(lines.slice(before).filter((l) => l.level === "warn")).toEqual([]);
      expect(await readServedBy()).toBe("replica");
    });

    test("bad input to a catalog read is BAD_REQUEST, as without a replica", async () => {
      expect(await errorCodeOf(callerFor(deps).products.list({ cursor: "not a cursor" }))).toBe("BAD_REQUEST");
      expect(await errorCodeOf(callerFor(deps).inventory.get({ productId: "nope" }))).toBe("BAD_REQUEST");
    });
  });

  describe("security", () => {
    test("a write sent through readDb fails on the read-only replica instead of landing anywhere", async () => {
      const outcome = await deps.readDb
        .insert(products)
        .values({ name: "never", price: "1.00", stock: 0 })
        .then(
          () => "no error",
          (error) => (error as { cause?: { code?: string } }).cause?.code ?? (error as { code?: string }).code,
        );
      expect(outcome).toBe("25006");
      const [{ n }] = await queryRows<{ n: number }>(primaryDirect.db, sql`select count(*)::int as n from products where name = 'never'`);
      expect(n).toBe(0);
    });

    test("a made-up bearer token does not move a catalog read to the primary", async () => {
      const admin = await signUpAdmin(deps);
      const product = await admin.caller.products.create({ name: "forged reader", price: "5.00", stock: 1 });
      await replicaCaughtUp();
      await pauseReplay();
      try {
        await admin.caller.products.update({ id: product.id, price: "6.00" });
        const forged = `${admin.accessToken.slice(0, -4)}AAAA`;
        expect((await callerFor(deps, { token: forged }).products.byId({ id: product.id })).price).toBe("5.00");
        expect((await callerFor(deps, { token: "junk" }).products.byId({ id: product.id })).price).toBe("5.00");
        expect((await callerFor(deps, { token: admin.accessToken }).products.byId({ id: product.id })).price).toBe("6.00");
      } finally {
        await resumeReplay();
      }
    });
  });
});
