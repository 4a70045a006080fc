// Benchmark data, loaded through the service's own services (accounts by register(), products by
// createProduct()), except the million-product catalog of the scale scenario, which is one
// generate_series INSERT per chunk (a progress bar per chunk) because a million service calls
// would measure the loader, not the service.
import type postgres from "postgres";
import type { Database } from "../../src/db/client";
import { createTokenConfig } from "../../src/lib/tokens";
import { systemAudit } from "../../src/services/audit";
import { register } from "../../src/services/auth";
import { createProduct } from "../../src/services/products";
import { HARNESS_MARK } from "./postgres";
import { progressBar } from "./proc";

export const BENCH_PASSWORD = "bench password 123";

export interface Customer {
  email: string;
  token: string;
  userId: string;
  sessionId: string;
}

function claimsOf(token: string): { sub: string; sid: string } {
  return JSON.parse(Buffer.from(token.split(".")[1], "base64url").toString("utf8"));
}

/** Registers `count` customers (two at a time: each is an argon2 hash). */
export async function loadCustomers(db: Database, secret: string, count: number): Promise<Customer[]> {
  const tokens = createTokenConfig(secret, 604_800);
  const bar = progressBar("customers", count);
  const out: Customer[] = [];
  const stamp = Date.now().toString(36);
  for (let i = 0; i < count; i += 2) {
    const batch = await Promise.all(
      [i, i + 1]
        .filter((n) => n < count)
        .map((n) =>
          register(db, { tokens, now: new Date(), clientAddress: "bench" }, systemAudit(), {
            email: `bench-${stamp}-${n}@example.com`,
            password: BENCH_PASSWORD,
          }),
        ),
    );
    for (const auth of batch) {
      const { sub, sid } = claimsOf(auth.accessToken);
      out.push({ email: auth.user.email, token: auth.accessToken, userId: sub, sessionId: sid });
    }
    bar.update(out.length);
  }
  bar.finish();
  return out;
}

const WORDS = {
  adjective: [
    "Rustic",
    "Sleek",
    "Ergonomic",
    "Handmade",
    "Vintage",
    "Compact",
    "Deluxe",
    "Modern",
    "Classic",
    "Portable",
    "Heavy",
    "Light",
    "Smart",
    "Organic",
    "Premium",
    "Basic",
    "Royal",
    "Urban",
    "Arctic",
    "Golden",
  ],
  material: [
    "Cotton",
    "Granite",
    "Steel",
    "Wooden",
    "Leather",
    "Wool",
    "Bamboo",
    "Glass",
    "Ceramic",
    "Linen",
    "Copper",
    "Marble",
    "Silk",
    "Concrete",
    "Rubber",
    "Plastic",
    "Velvet",
    "Bronze",
    "Oak",
    "Canvas",
  ],
  noun: [
    "Chair",
    "Table",
    "Lamp",
    "Mug",
    "Shirt",
    "Backpack",
    "Bottle",
    "Clock",
    "Keyboard",
    "Sofa",
    "Jacket",
    "Pillow",
    "Kettle",
    "Wallet",
    "Helmet",
    "Speaker",
    "Blanket",
    "Vase",
    "Candle",
    "Notebook",
  ],
};

/** Products through createProduct, with stock that the create scenario will not exhaust. */
export async function loadProducts(db: Database, count: number, stock: number, label = "products"): Promise<string[]> {
  const bar = progressBar(label, count);
  const ids: string[] = [];
  for (let i = 0; i < count; i++) {
    const name = `${WORDS.adjective[i % 20]} ${WORDS.material[Math.floor(i / 20) % 20]} ${WORDS.noun[Math.floor(i / 400) % 20]} ${i}`;
    const price = `${1 + ((i * 7919) % 500)}.${String((i * 31) % 100).padStart(2, "0")}`;
    const p = await createProduct(db, { name, description: `Benchmark product ${i}`, price, stock });
    ids.push(p.id);
    if (i % 50 === 0 || i === count - 1) bar.update(i + 1);
  }
  bar.finish();
  return ids;
}

/** The key tables pgbench draws its random ids from (see bench/lib/pgbench.ts). */
export async function writeKeyTables(sql: postgres.Sql, productIds: string[], customers: Customer[]): Promise<void> {
  await sql.unsafe(`${HARNESS_MARK} create table if not exists bench_products (n int primary key, id uuid not null)`);
  await sql.unsafe(
    `${HARNESS_MARK} create table if not exists bench_sessions (n int primary key, session_id uuid not null, user_id uuid not null)`,
  );
  await sql.unsafe(`${HARNESS_MARK} truncate bench_products, bench_sessions`);
  await sql.unsafe(`${HARNESS_MARK} insert into bench_products (n, id) select n, id from unnest($1::uuid[]) with ordinality as t(id, n)`, [
    `{${productIds.join(",")}}`,
  ]);
  await sql.unsafe(
    `${HARNESS_MARK} insert into bench_sessions (n, session_id, user_id)
       select n, s, u from unnest($1::uuid[], $2::uuid[]) with ordinality as t(s, u, n)`,
    [`{${customers.map((c) => c.sessionId).join(",")}}`, `{${customers.map((c) => c.userId).join(",")}}`],
  );
  await sql.unsafe(`${HARNESS_MARK} analyze bench_products`);
  await sql.unsafe(`${HARNESS_MARK} analyze bench_sessions`);
}

const arr = (xs: string[]) => `array[${xs.map((x) => `'${x}'`).join(",")}]`;

/**
 * The scale catalog: `rows` more products, names from 20 × 20 × 20 words plus a number (so a
 * two-word search matches 1 in 400 products, a material 1 in 20), created one millisecond apart
 * and all older than the products loaded through the service. Words are drawn by a hash of the
 * row number, not in a regular pattern: a regular pattern puts the same few words at every
 * histogram bound of `name`, and the planner then misjudges how common the others are.
 */
export async function loadScaleCatalog(sql: postgres.Sql, rows: number, chunk = 50_000): Promise<number> {
  const bar = progressBar("scale catalog", rows);
  const statement = `${HARNESS_MARK}
    insert into products (name, description, price, stock, created_at, updated_at)
    select (${arr(WORDS.adjective)})[1 + abs(hashint4extended(g, 1)) % 20] || ' ' ||
           (${arr(WORDS.material)})[1 + abs(hashint4extended(g, 2)) % 20] || ' ' ||
           (${arr(WORDS.noun)})[1 + abs(hashint4extended(g, 3)) % 20] || ' ' || g,
           'Bulk product ' || g,
           (1 + (g::bigint * 7919) % 99999) / 100.0,
           g % 50,
           timestamp '2026-01-01' + g * interval '1 millisecond',
           timestamp '2026-01-01' + g * interval '1 millisecond'
      from generate_series($1::int, $2::int) g`;
  for (let lo = 1; lo <= rows; lo += chunk) {
    const hi = Math.min(rows, lo + chunk - 1);
    await sql.unsafe(statement, [lo, hi]);
    bar.update(hi);
  }
  const seconds = bar.finish();
  await sql.unsafe(`${HARNESS_MARK} vacuum analyze products`);
  return seconds;
}
