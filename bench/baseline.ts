// The raw baselines: a bare Bun.serve handler with postgres.js (no Hono, tRPC, Drizzle or valibot)
// that answers the benchmarked procedures in tRPC's wire format (`{"result":{"data":…}}`, batching
// off) with the same input checks and the same token verification (jose, pinned algorithm and
// claims) and session-row lookup as the service. Two flavours (BASELINE_SQL):
//  - `same` (default): the service's own SQL (bench/baseline-sql.ts), so the ratio measures the
//    framework alone;
//  - `plain`: the plainest correct SQL for each procedure (login: user lookup, argon2 verify,
//    session insert; orders: guarded decrements, the order, its items), so the ratio also shows
//    what the service's SQL costs over the limit.
//
//   PORT=4001 DATABASE_URL=postgres://… JWT_SECRET=… [BASELINE_SQL=plain] bun bench/baseline.ts

import { hash as argonHash, verify as argonVerify } from "@node-rs/argon2";
import { jwtVerify, SignJWT } from "jose";
import postgres from "postgres";
import { needsRehash, PASSWORD_PARAMS } from "../src/lib/password-policy";
// Formatting is the application's, not the framework's: both sides format timestamps alike.
import { toIso } from "../src/lib/time";
import { TOKEN_AUDIENCE, TOKEN_ISSUER } from "../src/lib/tokens";
import { uuidv7 } from "../src/lib/uuidv7";
import {
  LOGIN_FAILED,
  listProductsStatement,
  loginDecide,
  loginRead,
  MAX_TOTAL,
  ORDER_PLACE,
  orderPlaceParams,
  PLAIN_ORDER_INSERT,
  PLAIN_PRODUCTS_EXIST,
  PLAIN_SESSION_INSERT,
  PLAIN_TAKE_STOCK,
  PLAIN_USER_BY_EMAIL,
  PRODUCT_BY_ID,
  type ProductSort,
  plainItemsInsert,
  SESSION_LOOKUP,
  USER_REHASH,
} from "./baseline-sql";

const env = process.env;
const port = Number(env.PORT ?? 4001);
const secret = new TextEncoder().encode(env.JWT_SECRET ?? "");
if (secret.length < 32 || !env.DATABASE_URL) {
  console.error("baseline: DATABASE_URL and JWT_SECRET (at least 32 bytes) are required");
  process.exit(1);
}
const ttlSeconds = Number(env.SESSION_TTL_SECONDS ?? 604_800);
const PLAIN = env.BASELINE_SQL === "plain";
// postgres.js prepares tagged templates by default but never `unsafe` text unless asked: with
// DATABASE_PREPARE=true every statement is prepared on its connection (as the service's are).
const PREPARE_OPTS = { prepare: env.DATABASE_PREPARE === "true" };
// The sign-in's two statements in the shape the service sends with the same setting.
const LOGIN_READ_TEXT = loginRead(PREPARE_OPTS.prepare);
const LOGIN_DECIDE_TEXT = loginDecide(PREPARE_OPTS.prepare);

// The service's pool settings (src/db/client.ts), so both sides get the same connections.
const sql = postgres(env.DATABASE_URL, {
  max: Number(env.DATABASE_POOL_MAX ?? 10),
  prepare: env.DATABASE_PREPARE === "true",
  connect_timeout: 10,
  idle_timeout: 30,
  max_lifetime: 60 * 30,
  onnotice: () => {},
});
// Like drizzle-orm/postgres-js: timestamps stay the database's text.
for (const oid of ["1184", "1082", "1083", "1114", "1182", "1185", "1115", "1231"]) {
  (sql.options.parsers as Record<string, (v: string) => unknown>)[oid] = (v) => v;
}

// --- wire format ------------------------------------------------------------------------------

const JSON_HEADERS = { "content-type": "application/json" };
const RPC_CODES = {
  BAD_REQUEST: [-32600, 400],
  UNAUTHORIZED: [-32001, 401],
  FORBIDDEN: [-32003, 403],
  NOT_FOUND: [-32004, 404],
  CONFLICT: [-32009, 409],
  TOO_MANY_REQUESTS: [-32029, 429],
  INTERNAL_SERVER_ERROR: [-32603, 500],
} as const;
type Code = keyof typeof RPC_CODES;

class Failure extends Error {
  constructor(
    readonly code: Code,
    message: string,
    readonly extra: Record<string, unknown> = {},
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

const ok = (data: unknown) => new Response(JSON.stringify({ result: { data } }), { headers: JSON_HEADERS });

function fail(error: unknown, path: string): Response {
  const f = error instanceof Failure ? error : new Failure("INTERNAL_SERVER_ERROR", "Something went wrong on our side; try again later");
  if (!(error instanceof Failure)) console.error("baseline:", error);
  const [rpc, status] = RPC_CODES[f.code];
  return new Response(
    JSON.stringify({ error: { message: f.message, code: rpc, data: { code: f.code, httpStatus: status, path, ...f.extra } } }),
    { status, headers: { ...JSON_HEADERS, ...f.headers } },
  );
}

// --- input checks (what the routers' valibot schemas check) ------------------------------------

const UUID_RE = /^[\da-f]{8}(?:-[\da-f]{4}){3}-[\da-f]{12}$/iu;
const EMAIL_RE = /^[\w+-]+(?:\.[\w+-]+)*@[\da-zA-Z]+(?:[.-][\da-zA-Z]+)*\.[a-zA-Z]{2,}$/u;
const MONEY_RE = /^(\d{1,8})(?:\.(\d{1,2}))?$/;
const SORTS: readonly string[] = ["newest", "price_asc", "price_desc", "name_asc"];

const bad = (message: string) => new Failure("BAD_REQUEST", `Invalid input: ${message}`);
const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);
const isInt = (v: unknown, min: number, max: number) => typeof v === "number" && Number.isInteger(v) && v >= min && v <= max;

function uuidField(v: unknown, field: string): string {
  if (typeof v !== "string" || !UUID_RE.test(v)) throw bad(`${field} must be a UUID`);
  return v.toLowerCase();
}

function moneyField(v: unknown, field: string): string {
  const m = typeof v === "string" ? MONEY_RE.exec(v) : null;
  if (!m) throw bad(`${field} must be a decimal string from "0" to "99999999.99" with at most two fraction digits`);
  return `${m[1].replace(/^0+(?=\d)/, "")}.${(m[2] ?? "").padEnd(2, "0")}`;
}

function queryInput(url: URL): unknown {
  const raw = url.searchParams.get("input");
  if (raw === null) return undefined;
  try {
    return JSON.parse(raw);
  } catch {
    throw new Failure("BAD_REQUEST", "The request is not valid");
  }
}

async function bodyInput(req: Request): Promise<unknown> {
  const text = await req.text();
  if (text === "") return undefined;
  try {
    return JSON.parse(text);
  } catch {
    throw new Failure("BAD_REQUEST", "The request body is not valid JSON");
  }
}

// --- auth ---------------------------------------------------------------------------------------

const toDbTime = (d: Date) => d.toISOString().replace("T", " ").replace("Z", "");
const hex = (buf: ArrayBuffer) => Buffer.from(buf).toString("hex");
const hashToken = async (token: string) => hex(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(token)));

function digestsEqual(a: string, b: string): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return diff === 0;
}

interface Caller {
  id: string;
  email: string;
  role: string;
  sessionId: string;
}

async function authenticate(req: Request): Promise<Caller> {
  const m = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.get("authorization") ?? "");
  if (!m) throw new Failure("UNAUTHORIZED", "Sign in first: send Authorization: Bearer <accessToken>");
  const token = m[1];
  const now = new Date();
  let userId: string;
  let sessionId: string;
  try {
    const { payload } = await jwtVerify(token, secret, {
      algorithms: ["HS256"],
      issuer: TOKEN_ISSUER,
      audience: TOKEN_AUDIENCE,
      requiredClaims: ["sub", "sid", "exp", "iat"],
      currentDate: now,
    });
    if (typeof payload.sub !== "string" || typeof payload.sid !== "string" || !UUID_RE.test(payload.sub) || !UUID_RE.test(payload.sid)) {
      throw new Error("malformed claims");
    }
    userId = payload.sub;
    sessionId = payload.sid as string;
  } catch {
    throw new Failure("UNAUTHORIZED", "The access token is invalid or expired: sign in again");
  }
  const [row] = await sql.unsafe<{ id: string; email: string; role: string; token_hash: string; disabled: boolean | null }[]>(
    SESSION_LOOKUP,
    [sessionId, userId, toDbTime(now), 1],
    PREPARE_OPTS,
  );
  if (!row || row.disabled === true || !digestsEqual(row.token_hash, await hashToken(token))) {
    throw new Failure("UNAUTHORIZED", "The session has ended: sign in again");
  }
  return { id: row.id, email: row.email, role: row.role, sessionId };
}

const THROTTLE_WINDOW_MS = 15 * 60 * 1000;
let dummyHash: Promise<string> | undefined;
const hashPassword = (password: string) => argonHash(password, PASSWORD_PARAMS);
const verifyPassword = async (h: string, p: string) => {
  try {
    return await argonVerify(h, p);
  } catch {
    return false;
  }
};

interface UserRow {
  id: string;
  email: string;
  password_hash: string;
  role: string;
  created_at: string;
  updated_at: string;
  email_verified?: boolean;
  disabled?: boolean;
}

async function login(input: unknown, clientAddress: string, requestId: string) {
  if (!isObject(input)) throw bad("must be an object");
  if (typeof input.email !== "string") throw bad("email must be a string");
  const email = input.email.trim().toLowerCase();
  if (email.length > 255) throw bad("email must be at most 255 characters");
  if (!EMAIL_RE.test(email)) throw bad("email must be a valid email address");
  const password = input.password;
  if (typeof password !== "string") throw bad("password must be a string");
  if (password.length < 8 || password.length > 128) throw bad("password must be 8 to 128 characters");

  const now = new Date();
  if (PLAIN) return plainLogin(email, password, now);
  return sameLogin(email, password, now, clientAddress, requestId);
}

// The service's login statements (src/services/auth.ts): read the account and the throttle's
// counters (no write); after the hash, a wrong password counts the failure and writes its audit
// event, a right one sends the statement that decides (session, event, forgiving, unless a
// counter is at its bar).
async function sameLogin(email: string, password: string, now: Date, clientAddress: string, requestId: string) {
  const nowText = toDbTime(now);
  const floor = toDbTime(new Date(now.getTime() - THROTTLE_WINDOW_MS));
  const expires = toDbTime(new Date(now.getTime() + THROTTLE_WINDOW_MS));
  const emailKey = `email:${email}`;
  const addressKey = `ip:${clientAddress}`;
  type Counter = { key: string; failures: number; window_started_at: string };
  const refuse = (rows: Counter[], atLimit: boolean) => {
    for (const c of rows) {
      const bar = c.key.startsWith("email:") ? 10 : 100;
      if (Number(c.failures) > (atLimit ? bar - 1 : bar)) {
        const end = new Date(`${c.window_started_at.replace(" ", "T")}Z`).getTime() + THROTTLE_WINDOW_MS;
        const retry = Math.max(1, Math.ceil((end - now.getTime()) / 1000));
        throw new Failure(
          "TOO_MANY_REQUESTS",
          `Too many failed sign-in attempts: try again in ${retry} seconds`,
          { retryAfterSeconds: retry },
          { "retry-after": String(retry) },
        );
      }
    }
  };
  const rows = await sql.unsafe<(Partial<Counter> & Partial<UserRow>)[]>(
    LOGIN_READ_TEXT,
    [emailKey, addressKey, floor, email],
    PREPARE_OPTS,
  );
  refuse(
    rows.filter((r): r is Counter => typeof r.key === "string"),
    true,
  );
  const found = rows[0];
  let user = found?.id ? (found as UserRow) : undefined;
  if (!user) dummyHash ??= hashPassword("not-a-real-password-only-for-timing");
  const good = await verifyPassword(user?.password_hash ?? (await dummyHash!), password);
  if (!user || !good || user.disabled) {
    const reason = !user ? "unknown_email" : !good ? "wrong_password" : "disabled";
    const counted = await sql.unsafe<Counter[]>(
      LOGIN_FAILED,
      [
        emailKey,
        1,
        nowText,
        expires,
        addressKey,
        1,
        nowText,
        expires,
        floor,
        floor,
        floor,
        uuidv7(),
        nowText,
        "auth.login_failed",
        null,
        user ? "user" : null,
        user?.id ?? null,
        clientAddress,
        requestId,
        JSON.stringify({ reason }),
      ],
      PREPARE_OPTS,
    );
    refuse(counted, false);
    throw new Failure("UNAUTHORIZED", "Email or password is incorrect");
  }
  const sessionId = uuidv7();
  const expiresAt = new Date(now.getTime() + ttlSeconds * 1000);
  const accessToken = await new SignJWT({ sid: sessionId })
    .setProtectedHeader({ alg: "HS256", typ: "JWT" })
    .setIssuer(TOKEN_ISSUER)
    .setAudience(TOKEN_AUDIENCE)
    .setSubject(user.id)
    .setIssuedAt(Math.floor(now.getTime() / 1000))
    .setExpirationTime(Math.floor(expiresAt.getTime() / 1000))
    .setJti(crypto.randomUUID())
    .sign(secret);
  const tokenHash = await hashToken(accessToken);
  const userId = user.id;
  const atLimit = await sql.unsafe<Counter[]>(
    LOGIN_DECIDE_TEXT,
    [
      emailKey,
      addressKey,
      floor,
      10,
      100,
      uuidv7(),
      nowText,
      null,
      clientAddress,
      requestId,
      sessionId,
      userId,
      tokenHash,
      toDbTime(expiresAt),
      nowText,
    ],
    PREPARE_OPTS,
  );
  refuse(atLimit, true);
  if (needsRehash(user.password_hash)) {
    const [updated] = await sql.unsafe<UserRow[]>(USER_REHASH, [await hashPassword(password), user.id], PREPARE_OPTS);
    user = updated ? { ...user, ...updated } : user;
  }
  return {
    user: {
      id: user.id,
      email: user.email,
      role: user.role,
      emailVerified: user.email_verified === true,
      disabled: user.disabled === true,
      createdAt: toIso(user.created_at),
      updatedAt: toIso(user.updated_at),
    },
    accessToken,
    expiresAt: expiresAt.toISOString(),
  };
}

/** The plainest correct sign-in: no throttle, no rehash check; the same answer for unknown emails. */
async function plainLogin(email: string, password: string, now: Date) {
  const [user] = await sql.unsafe<UserRow[]>(PLAIN_USER_BY_EMAIL, [email], PREPARE_OPTS);
  if (!user) dummyHash ??= hashPassword("not-a-real-password-only-for-timing");
  const good = await verifyPassword(user?.password_hash ?? (await dummyHash!), password);
  if (!user || !good || user.disabled) throw new Failure("UNAUTHORIZED", "Email or password is incorrect");
  const sessionId = uuidv7();
  const expiresAt = new Date(now.getTime() + ttlSeconds * 1000);
  const accessToken = await new SignJWT({ sid: sessionId })
    .setProtectedHeader({ alg: "HS256", typ: "JWT" })
    .setIssuer(TOKEN_ISSUER)
    .setAudience(TOKEN_AUDIENCE)
    .setSubject(user.id)
    .setIssuedAt(Math.floor(now.getTime() / 1000))
    .setExpirationTime(Math.floor(expiresAt.getTime() / 1000))
    .setJti(crypto.randomUUID())
    .sign(secret);
  await sql.unsafe(
    PLAIN_SESSION_INSERT,
    [sessionId, user.id, await hashToken(accessToken), toDbTime(expiresAt), toDbTime(now)],
    PREPARE_OPTS,
  );
  return {
    user: {
      id: user.id,
      email: user.email,
      role: user.role,
      emailVerified: user.email_verified === true,
      disabled: false, // a disabled account was refused above
      createdAt: toIso(user.created_at),
      updatedAt: toIso(user.updated_at),
    },
    accessToken,
    expiresAt: expiresAt.toISOString(),
  };
}

// --- products -----------------------------------------------------------------------------------

interface ProductRow {
  id: string;
  name: string;
  description: string | null;
  price: string;
  stock: number;
  created_at: string;
  updated_at: string;
}

const toProduct = (r: ProductRow) => ({
  id: r.id,
  name: r.name,
  description: r.description,
  price: r.price,
  stock: r.stock,
  createdAt: toIso(r.created_at),
  updatedAt: toIso(r.updated_at),
});

const encodeCursor = (values: unknown[]) => Buffer.from(JSON.stringify(values)).toString("base64url");
const TIMESTAMP_RE = /^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(\.\d{1,6})?$/;

function decodeCursor(cursor: string, sort: ProductSort): [string, string] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(cursor, "base64url").toString("utf8"));
  } catch {
    parsed = undefined;
  }
  const invalid = () => new Failure("BAD_REQUEST", "cursor is not valid: pass the nextCursor of the previous page");
  if (!Array.isArray(parsed) || parsed.length !== 3 || typeof parsed[1] !== "string" || typeof parsed[2] !== "string") throw invalid();
  const [s, key, id] = parsed as [unknown, string, string];
  if (!SORTS.includes(String(s)) || !UUID_RE.test(id)) throw invalid();
  if (s === "newest" && (!TIMESTAMP_RE.test(key) || Number.isNaN(Date.parse(`${key.replace(" ", "T")}Z`)))) throw invalid();
  if ((s === "price_asc" || s === "price_desc") && !/^\d{1,8}\.\d{2}$/.test(key)) throw invalid();
  if (s === "name_asc" && (key.length > 255 || key.includes("\0"))) throw invalid();
  if (s !== sort) throw new Failure("BAD_REQUEST", "cursor belongs to another sort: pass the nextCursor of a page with the same sort");
  return [key, id];
}

async function listProducts(input: unknown) {
  const i = input === undefined ? {} : input;
  if (!isObject(i)) throw bad("must be an object");
  const limit = i.limit === undefined ? 20 : i.limit;
  if (!isInt(limit, 1, 100)) throw bad("limit must be an integer from 1 to 100");
  const sort = (i.sort === undefined ? "newest" : i.sort) as ProductSort;
  if (!SORTS.includes(sort)) throw bad(`sort must be one of ${SORTS.join(", ")}`);
  if (i.cursor !== undefined && i.cursor !== null && (typeof i.cursor !== "string" || i.cursor.length > 2048))
    throw bad("cursor is not valid");
  if (i.search !== undefined && (typeof i.search !== "string" || i.search.length > 100 || i.search.includes("\0"))) {
    throw bad("search must be a string of at most 100 characters");
  }
  if (i.inStock !== undefined && typeof i.inStock !== "boolean") throw bad("inStock must be true or false");
  const q = {
    sort,
    limit: limit as number,
    after: typeof i.cursor === "string" && i.cursor !== "" ? decodeCursor(i.cursor, sort) : undefined,
    search: (i.search as string | undefined) || undefined,
    minPrice: i.minPrice === undefined ? undefined : moneyField(i.minPrice, "minPrice"),
    maxPrice: i.maxPrice === undefined ? undefined : moneyField(i.maxPrice, "maxPrice"),
    inStock: i.inStock as boolean | undefined,
  };
  const { text, params } = listProductsStatement(q);
  const rows = await sql.unsafe<ProductRow[]>(text, params, PREPARE_OPTS);
  const more = rows.length > q.limit;
  const items = more ? rows.slice(0, q.limit) : rows;
  const last = items[items.length - 1];
  const key = last && (sort === "newest" ? last.created_at : sort === "name_asc" ? last.name : last.price);
  return { items: items.map(toProduct), nextCursor: more && last ? encodeCursor([sort, key, last.id]) : null };
}

async function productById(input: unknown) {
  if (!isObject(input)) throw bad("must be an object");
  const id = uuidField(input.id, "id");
  const [row] = await sql.unsafe<ProductRow[]>(PRODUCT_BY_ID, [id, 1], PREPARE_OPTS);
  if (!row) throw new Failure("NOT_FOUND", "Product not found");
  return toProduct(row);
}

// --- orders -------------------------------------------------------------------------------------

async function createOrder(input: unknown, caller: Caller) {
  if (!isObject(input)) throw bad("must be an object");
  const items = input.items;
  if (!Array.isArray(items) || items.length < 1 || items.length > 100) throw bad("items must contain 1 to 100 entries");
  const merged = new Map<string, number>();
  items.forEach((item, n) => {
    if (!isObject(item)) throw bad(`items.${n} must be an object`);
    const productId = uuidField(item.productId, `items.${n}.productId`);
    if (!isInt(item.quantity, 1, 1000)) throw bad(`items.${n}.quantity must be an integer from 1 to 1000`);
    merged.set(productId, (merged.get(productId) ?? 0) + (item.quantity as number));
  });
  if (input.idempotencyKey !== undefined) {
    // The benchmark never sends one; the baseline does not implement the keyed path.
    throw bad("idempotencyKey is not supported by the benchmark baseline");
  }
  const lines = [...merged]
    .map(([productId, quantity]) => ({ productId, quantity }))
    .sort((a, b) => (a.productId < b.productId ? -1 : a.productId > b.productId ? 1 : 0));
  return PLAIN ? plainOrder(lines, caller) : sameOrder(lines, caller);
}

type Line = { productId: string; quantity: number };
const toCents = (money: string) => {
  const [whole, fraction = ""] = money.split(".");
  return Number(whole) * 100 + Number(fraction.padEnd(2, "0").slice(0, 2));
};
const fromCents = (cents: number) => `${Math.floor(cents / 100)}.${String(cents % 100).padStart(2, "0")}`;
const MAX_CENTS = toCents(MAX_TOTAL);
const tooLarge = () => new Failure("BAD_REQUEST", "The order total would be above 99999999.99: order fewer items");
const shortStock = (ids: string[]) =>
  new Failure("CONFLICT", "Not enough stock for some products: see data.productIds", { productIds: [...ids].sort() });
class Miss {}

interface PlaceRow {
  outcome: "placed" | "not_found" | "short" | "too_large";
  short_ids: string | null;
  prices: string | null;
  order_total: string | null;
  order_created_at: string | null;
  order_updated_at: string | null;
}
interface ItemRowText {
  id: string;
  product_id: string;
  quantity: number;
  price: string;
}
const byProduct = (a: { productId: string }, b: { productId: string }) =>
  a.productId < b.productId ? -1 : a.productId > b.productId ? 1 : 0;

/** The plainest correct order: guarded decrements in id order, the order, its items; all pipelined. */
async function plainOrder(lines: Line[], caller: Caller) {
  const orderId = uuidv7();
  try {
    return await sql.begin(async (tx) => {
      const taken = await Promise.all(
        lines.map((l) => tx.unsafe<{ price: string }[]>(PLAIN_TAKE_STOCK, [l.quantity, l.productId], PREPARE_OPTS)),
      );
      if (taken.some((r) => r.length === 0)) throw new Miss();
      const cents = taken.reduce((sum, [r], n) => sum + toCents(r.price) * lines[n].quantity, 0);
      if (cents > MAX_CENTS) throw tooLarge();
      const total = fromCents(cents);
      const [[o], items] = await Promise.all([
        tx.unsafe<{ created_at: string; updated_at: string }[]>(PLAIN_ORDER_INSERT, [orderId, caller.id, total], PREPARE_OPTS),
        tx.unsafe<ItemRowText[]>(
          plainItemsInsert(lines.length),
          [orderId, ...lines.flatMap((l, n) => [l.productId, l.quantity, taken[n][0].price])],
          PREPARE_OPTS,
        ),
      ]);
      return {
        id: orderId,
        userId: caller.id,
        status: "pending",
        total,
        createdAt: toIso(o.created_at),
        updatedAt: toIso(o.updated_at),
        items: items.map((i) => ({ id: i.id, productId: i.product_id, quantity: i.quantity, price: i.price })).sort(byProduct),
      };
    });
  } catch (error) {
    if (!(error instanceof Miss)) throw error;
    const found = await sql.unsafe<{ id: string }[]>(PLAIN_PRODUCTS_EXIST, [`{${lines.map((l) => l.productId).join(",")}}`], PREPARE_OPTS);
    if (found.length < lines.length) throw new Failure("NOT_FOUND", "Product not found");
    throw shortStock(lines.map((l) => l.productId));
  }
}

/** The service's statement (src/services/orders.ts createOrder, without an idempotency key). */
async function sameOrder(lines: Line[], caller: Caller) {
  const orderId = uuidv7();
  const itemIds = lines.map(() => uuidv7());
  // In its own transaction, as the service sends it (its own connection: nothing queues behind it).
  const [row] = await sql.begin((tx) =>
    tx.unsafe<PlaceRow[]>(ORDER_PLACE, orderPlaceParams(lines, orderId, caller.id, itemIds), PREPARE_OPTS),
  );
  if (row.outcome === "not_found") throw new Failure("NOT_FOUND", "Product not found");
  if (row.outcome === "short") throw shortStock(row.short_ids!.split(","));
  if (row.outcome === "too_large") throw tooLarge();
  const prices = row.prices!.split(",");
  return {
    id: orderId,
    userId: caller.id,
    status: "pending",
    total: row.order_total!,
    createdAt: toIso(row.order_created_at!),
    updatedAt: toIso(row.order_updated_at!),
    items: lines.map((l, n) => ({ id: itemIds[n], productId: l.productId, quantity: l.quantity, price: prices[n] })),
  };
}

// --- routing ------------------------------------------------------------------------------------

const server = Bun.serve({
  hostname: env.HOST ?? "127.0.0.1",
  port,
  async fetch(req, srv) {
    const url = new URL(req.url);
    const path = url.pathname.startsWith("/trpc/") ? url.pathname.slice(6) : "";
    try {
      switch (path) {
        case "products.list":
          return ok(await listProducts(queryInput(url)));
        case "products.byId":
          return ok(await productById(queryInput(url)));
        case "orders.create": {
          if (req.method !== "POST") throw new Failure("BAD_REQUEST", "Queries use GET and mutations use POST");
          const caller = await authenticate(req);
          return ok(await createOrder(await bodyInput(req), caller));
        }
        case "auth.login":
          if (req.method !== "POST") throw new Failure("BAD_REQUEST", "Queries use GET and mutations use POST");
          return ok(
            await login(
              await bodyInput(req),
              srv.requestIP(req)?.address ?? "unknown",
              req.headers.get("x-request-id") ?? crypto.randomUUID(),
            ),
          );
      }
    } catch (error) {
      return fail(error, path);
    }
    if (url.pathname === "/health") {
      try {
        await sql`select 1`;
        return Response.json({ status: "ok", db: "ok" });
      } catch {
        return Response.json({ status: "degraded", db: "down" }, { status: 503 });
      }
    }
    return Response.json({ error: { message: "Not found" } }, { status: 404 });
  },
});

console.log(JSON.stringify({ msg: "baseline listening", url: `http://${server.hostname}:${server.port}` }));

const shutdown = async () => {
  await server.stop(false);
  await sql.end({ timeout: 5 });
  process.exit(0);
};
process.on("SIGTERM", () => void shutdown());
process.on("SIGINT", () => void shutdown());
