// Where the service's CPU per request goes, layer by layer, with the database taken out: the
// real app (createApp: Hono, tRPC, valibot, Drizzle, the services) in-process over a stand-in
// postgres.js client that answers every query with a canned row at once. This is a profiling
// tool for the benchmark, not a test: it says how many microseconds each layer adds, which the
// HTTP runs (bench/run.ts) can only show as one total.
//
//   npm run bench:layers -- [iterations]

import { eq, sql } from "drizzle-orm";
import { drizzle } from "drizzle-orm/postgres-js";
import { createApp } from "../src/app";
import type { Database } from "../src/db/client";
import * as schema from "../src/db/schema";
import { parseEnv } from "../src/env";
import { createLogger } from "../src/lib/logger";
import { toIso } from "../src/lib/time";
import { createTokenConfig } from "../src/lib/tokens";
import { getProduct, listProducts } from "../src/services/products";

const N = Number(process.argv[2] ?? 20_000);
const id = "0190a5e4-0000-4000-8000-000000000001";
const row = {
  id,
  name: "Rustic Cotton Chair 1",
  description: "Benchmark product 1",
  price: "19.99",
  stock: 100,
  created_at: "2026-11-24 23:17:00.123456",
  updated_at: "2026-11-24 23:17:00.123456",
};

// The stand-in driver: drizzle-orm/postgres-js calls client.unsafe(text, params).values() for
// selects; every query answers `rows` copies of the canned row.
function fakeClient(rows: number) {
  const objects = Array.from({ length: rows }, () => ({ ...row }));
  const arrays = objects.map((r) => Object.values(r));
  return {
    options: { parsers: {}, serializers: {} },
    unsafe() {
      const p = Promise.resolve(objects) as Promise<unknown> & { values(): Promise<unknown> };
      p.values = () => Promise.resolve(arrays);
      return p;
    },
  };
}

function appWith(rows: number) {
  const db = drizzle(fakeClient(rows) as never, { schema }) as unknown as Database;
  const env = parseEnv({
    JWT_SECRET: "layers-secret-that-is-at-least-32-bytes",
    LOG_LEVEL: "warn",
    TRPC_FAST_PATH: process.env.TRPC_FAST_PATH,
  });
  const app = createApp({
    db,
    readDb: db,
    env,
    logger: createLogger("warn"),
    tokens: createTokenConfig(env.JWT_SECRET!, 3600),
    clock: () => new Date(),
  });
  return { app, db };
}

async function cpuPerCall(label: string, f: () => Promise<unknown>): Promise<number> {
  for (let i = 0; i < Math.min(2000, N / 5); i++) await f();
  const c = process.cpuUsage();
  for (let i = 0; i < N; i++) await f();
  const d = process.cpuUsage(c);
  const us = (d.user + d.system) / N;
  console.log(`${us.toFixed(1).padStart(8)} µs  ${label}`);
  return us;
}

const byIdUrl = `http://bench/trpc/products.byId?input=${encodeURIComponent(JSON.stringify({ id }))}`;
const listUrl = `http://bench/trpc/products.list?input=${encodeURIComponent(JSON.stringify({ limit: 20 }))}`;

// What the baseline does around its query for byId: URL, JSON, a regex, the JSON answer.
async function rawById(): Promise<Response> {
  const url = new URL(byIdUrl);
  const input = JSON.parse(url.searchParams.get("input")!) as { id: string };
  if (!/^[\da-f]{8}(?:-[\da-f]{4}){3}-[\da-f]{12}$/iu.test(input.id)) throw new Error("bad");
  const r = await Promise.resolve([row]);
  const p = r[0];
  const data = {
    id: p.id,
    name: p.name,
    description: p.description,
    price: p.price,
    stock: p.stock,
    createdAt: toIso(p.created_at),
    updatedAt: toIso(p.updated_at),
  };
  const res = new Response(JSON.stringify({ result: { data } }), { headers: { "content-type": "application/json" } });
  await res.text();
  return res;
}

console.log(`${N} calls each, CPU time per call (no network, no database):`);
const one = appWith(1);
const page = appWith(21);
const raw = await cpuPerCall("byId: baseline-style handler (URL, JSON, regex, answer)", rawById);
const drizzleById = await cpuPerCall("byId: getProduct() alone (Drizzle build + run + map)", () => getProduct(one.db, id));
// The same query built once (Drizzle's .prepare(): with postgres.js and prepare: false it keeps
// the SQL text and parameter mapping, nothing is prepared on the server).
const preparedById = one.db
  .select()
  .from(schema.products)
  .where(eq(schema.products.id, sql.placeholder("id")))
  .limit(1)
  .prepare("bench_product_by_id");
await cpuPerCall("byId: the same select as a Drizzle prepared query (built once)", () => preparedById.execute({ id }));
const appById = await cpuPerCall("byId: createApp().fetch() (Hono + tRPC + valibot + getProduct)", async () =>
  (await one.app.fetch(new Request(byIdUrl))).text(),
);
const drizzleList = await cpuPerCall("list: listProducts() alone (Drizzle, 21 rows)", () =>
  listProducts(page.db, { limit: 20, sort: "newest" }),
);
const appList = await cpuPerCall("list: createApp().fetch() (21 rows)", async () => (await page.app.fetch(new Request(listUrl))).text());
console.log(
  `\nbyId: framework around the service (Hono + tRPC + valibot + middleware) ≈ ${(appById - drizzleById - raw).toFixed(0)} µs, Drizzle ≈ ${drizzleById.toFixed(0)} µs, the baseline's own handler work ≈ ${raw.toFixed(0)} µs`,
);
console.log(
  `list: framework ≈ ${(appList - drizzleList).toFixed(0)} µs (incl. its own JSON), Drizzle + service mapping ≈ ${drizzleList.toFixed(0)} µs`,
);
