// End to end over HTTP with the typed tRPC client, exactly as a TypeScript client calls the
// service. Runs unchanged against any server: E2E_BASE_URL (e.g. `wrangler dev`), or else the
// real Bun server (`bun run src/server.ts`) started here on a free port.
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { createTRPCClient, httpBatchLink, TRPCClientError } from "@trpc/client";
import type { AppRouter } from "../../src/index";
import { type RunningServer, removeDataDir, startServer } from "../support/server";

// Argon2 and PGlite are CPU-bound and CI machines are small: generous per-test limits, no timing asserts.
setDefaultTimeout(60_000);

// ---- A typed client as a client project writes one (the README's own snippet,
// ---- examples/client/quickstart.ts, runs from the packed package in test/client/).
function createApiClient(baseUrl: string, getToken: () => string | undefined) {
  return createTRPCClient<AppRouter>({
    links: [
      httpBatchLink({
        url: `${baseUrl}/trpc`,
        headers: () => {
          const token = getToken();
          return token ? { authorization: `Bearer ${token}` } : {};
        },
      }),
    ],
  });
}
// ---- end of the snippet's client part

const EXTERNAL = process.env.E2E_BASE_URL?.replace(/\/+$/, "") || undefined;
let server: RunningServer | undefined;
let baseUrl = "";

/**
 * An admin: the one a self-started server bootstraps (ADMIN_EMAIL/ADMIN_PASSWORD); against an
 * external server, E2E_ADMIN_EMAIL/E2E_ADMIN_PASSWORD, or a fresh account promoted through
 * E2E_DATABASE_URL (the role is not reachable through the API).
 */
const BOOTSTRAP_ADMIN = { email: `e2e-admin-${Date.now().toString(36)}@example.com`, password: "e2e admin password" };
const ADMIN_VIA = !EXTERNAL
  ? "bootstrap"
  : process.env.E2E_ADMIN_EMAIL && process.env.E2E_ADMIN_PASSWORD
    ? "given"
    : process.env.E2E_DATABASE_URL
      ? "promote"
      : undefined;

beforeAll(async () => {
  if (EXTERNAL) {
    baseUrl = EXTERNAL;
    return;
  }
  // NODE_ENV=development: tRPC would add stacks to errors there; the service must not.
  server = await startServer({
    env: { NODE_ENV: "development", SEED: "true", ADMIN_EMAIL: BOOTSTRAP_ADMIN.email, ADMIN_PASSWORD: BOOTSTRAP_ADMIN.password },
  });
  baseUrl = server.baseUrl;
}, 120_000);

afterAll(async () => {
  if (!server) return;
  expect(await server.stop()).toBe(0); // SIGTERM is a clean shutdown
  await removeDataDir(server.dataDir);
}, 30_000);

let n = 0;
const email = (tag: string) => `e2e-${tag}-${Date.now().toString(36)}-${++n}@example.com`;
const PASSWORD = "correct horse battery";

/** A client with its own token slot, like one browser tab. */
function newClient() {
  let token: string | undefined;
  const api = createApiClient(baseUrl, () => token);
  return {
    api,
    setToken: (t: string | undefined) => {
      token = t;
    },
  };
}

type LinkFetch = NonNullable<Parameters<typeof httpBatchLink>[0]["fetch"]>;

/** The link's fetch, with a look at every response (bun's Response type and tRPC's differ slightly). */
function observingFetch(observe: (res: Response) => void | Promise<void>): LinkFetch {
  const wrapped = async (url: string, init?: RequestInit) => {
    const res = await fetch(url, init);
    await observe(res);
    return res;
  };
  return wrapped as unknown as LinkFetch;
}

async function trpcErrorOf(promise: Promise<unknown>): Promise<TRPCClientError<AppRouter>> {
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(TRPCClientError);
    return error as TRPCClientError<AppRouter>;
  }
  throw new Error("the call succeeded but should have failed");
}

describe("e2e: happy path", () => {
  test("a typed client registers, reads itself and lists products", async () => {
    let token: string | undefined;
    const api = createApiClient(baseUrl, () => token);

    const { accessToken, user } = await api.auth.register.mutate({ email: email("readme"), password: "correct horse battery" });
    token = accessToken;
    const me = await api.auth.me.query(); // { id, email, role, createdAt, updatedAt }
    const page = await api.products.list.query({ limit: 5, sort: "price_asc" }); // { items, nextCursor }
    expect(me.id).toBe(user.id);
    expect(me.role).toBe("customer");
    expect(Array.isArray(page.items)).toBe(true);
    expect(page.items.length).toBeLessThanOrEqual(5);
  });

  test("GET /health is 200 {status: ok, db: ok} with a request id", async () => {
    const res = await fetch(`${baseUrl}/health`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ status: "ok", db: "ok" });
    expect(res.headers.get("x-request-id")).toBeTruthy();
  });

  test("a query: products.list pages with money as strings", async () => {
    const { api } = newClient();
    const page = await api.products.list.query();
    expect(page).toHaveProperty("nextCursor");
    for (const p of page.items) {
      expect(typeof p.price).toBe("string");
      expect(p.price).toMatch(/^\d+\.\d{2}$/);
    }
  });

  test("a batched call: two procedures in one HTTP request", async () => {
    let requests = 0;
    let token: string | undefined;
    const api = createTRPCClient<AppRouter>({
      links: [
        httpBatchLink({
          url: `${baseUrl}/trpc`,
          headers: () => (token ? { authorization: `Bearer ${token}` } : {}),
          fetch: observingFetch(() => {
            requests++;
          }),
        }),
      ],
    });
    token = (await api.auth.register.mutate({ email: email("batch"), password: PASSWORD })).accessToken;
    requests = 0;
    const [me, sessions, page] = await Promise.all([api.auth.me.query(), api.auth.sessions.query(), api.products.list.query({ limit: 1 })]);
    expect(requests).toBe(1);
    expect(sessions).toHaveLength(1);
    expect(sessions[0].current).toBe(true);
    expect(me.email).toContain("e2e-batch-");
    expect(page.items.length).toBeLessThanOrEqual(1);
  });

  test("register, login, me, sessions, refresh, logout", async () => {
    const address = email("flow");
    const first = newClient();
    const registered = await first.api.auth.register.mutate({ email: `  ${address.toUpperCase()}`, password: PASSWORD });
    expect(registered.user.email).toBe(address);
    first.setToken(registered.accessToken);

    const second = newClient();
    const login = await second.api.auth.login.mutate({ email: address, password: PASSWORD });
    second.setToken(login.accessToken);
    expect((await second.api.auth.me.query()).id).toBe(registered.user.id);

    const sessions = await second.api.auth.sessions.query();
    expect(sessions).toHaveLength(2);
    expect(sessions.filter((s) => s.current)).toHaveLength(1);

    const refreshed = await second.api.auth.refresh.mutate();
    const stale = newClient();
    stale.setToken(login.accessToken);
    expect((await trpcErrorOf(stale.api.auth.me.query())).data?.code).toBe("UNAUTHORIZED");
    second.setToken(refreshed.accessToken);
    expect(await second.api.auth.logout.mutate()).toEqual({ ok: true });
    expect((await trpcErrorOf(second.api.auth.me.query())).data?.code).toBe("UNAUTHORIZED");
    // The first session was not touched by the second's logout.
    expect((await first.api.auth.me.query()).email).toBe(address);
  });

  test("revocation: a revoked session, a changed password and logoutAll end tokens at once", async () => {
    const address = email("revoke");
    const laptop = newClient();
    laptop.setToken((await laptop.api.auth.register.mutate({ email: address, password: PASSWORD })).accessToken);
    const phone = newClient();
    phone.setToken((await phone.api.auth.login.mutate({ email: address, password: PASSWORD })).accessToken);

    const phoneSession = (await laptop.api.auth.sessions.query()).find((s) => !s.current)!;
    expect(await laptop.api.auth.revokeSession.mutate({ sessionId: phoneSession.id })).toEqual({ ok: true });
    expect((await trpcErrorOf(phone.api.auth.me.query())).data?.code).toBe("UNAUTHORIZED");

    phone.setToken((await phone.api.auth.login.mutate({ email: address, password: PASSWORD })).accessToken);
    const changed = await laptop.api.auth.changePassword.mutate({ currentPassword: PASSWORD, newPassword: "a new long password" });
    expect((await trpcErrorOf(phone.api.auth.me.query())).data?.code).toBe("UNAUTHORIZED");
    laptop.setToken(changed.accessToken);
    expect((await laptop.api.auth.me.query()).email).toBe(address);

    expect(await laptop.api.auth.logoutAll.mutate()).toEqual({ ok: true, revoked: 1 });
    expect((await trpcErrorOf(laptop.api.auth.me.query())).data?.code).toBe("UNAUTHORIZED");
  });
});

describe("e2e: errors", () => {
  test("a validation error is BAD_REQUEST naming the field, without the input or a stack", async () => {
    const { api } = newClient();
    const secret = "pw-zq91";
    const error = await trpcErrorOf(api.auth.register.mutate({ email: "not-an-email", password: `${secret}-long-enough` }));
    expect(error.data?.code).toBe("BAD_REQUEST");
    expect(error.data?.httpStatus).toBe(400);
    expect(error.message).toContain("email");
    expect(error.message).not.toContain(secret);
    expect(JSON.stringify(error.shape)).not.toContain(secret);
    expect((error.data as Record<string, unknown>).stack).toBeUndefined();
  });

  test("an unknown procedure is NOT_FOUND (typed client and plain HTTP)", async () => {
    const { api } = newClient();
    const untyped = api as unknown as { nope: { nothing: { query: () => Promise<unknown> } } };
    const error = await trpcErrorOf(untyped.nope.nothing.query());
    expect(error.data?.code).toBe("NOT_FOUND");
    expect((error.data as Record<string, unknown>).stack).toBeUndefined();

    const res = await fetch(`${baseUrl}/trpc/nope.nothing`);
    expect(res.status).toBe(404);
    const body = (await res.json()) as { error: { data: { code: string; stack?: string } } };
    expect(body.error.data.code).toBe("NOT_FOUND");
    expect(body.error.data.stack).toBeUndefined();
  });

  test("wrong credentials: unknown email and wrong password look the same", async () => {
    const { api } = newClient();
    const address = email("creds");
    await api.auth.register.mutate({ email: address, password: PASSWORD });
    const wrong = await trpcErrorOf(api.auth.login.mutate({ email: address, password: "not the password" }));
    const unknown = await trpcErrorOf(api.auth.login.mutate({ email: email("nobody"), password: "not the password" }));
    expect(wrong.data?.code).toBe("UNAUTHORIZED");
    expect(unknown.data?.code).toBe("UNAUTHORIZED");
    expect(unknown.message).toBe(wrong.message);
  });

  test("a duplicate email is CONFLICT", async () => {
    const { api } = newClient();
    const address = email("dup");
    await api.auth.register.mutate({ email: address, password: PASSWORD });
    expect((await trpcErrorOf(api.auth.register.mutate({ email: address, password: PASSWORD }))).data?.code).toBe("CONFLICT");
  });

  test("a 5 MB body is 413 and the server keeps serving", async () => {
    const res = await fetch(`${baseUrl}/trpc/auth.login`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ email: "a@example.com", password: "x".repeat(5 * 1024 * 1024) }),
    });
    expect(res.status).toBe(413);
    expect((await fetch(`${baseUrl}/health`)).status).toBe(200);
  });
});

describe("e2e: security", () => {
  test("no response carries a hash or the password", async () => {
    const seen: string[] = [];
    let token: string | undefined;
    const api = createTRPCClient<AppRouter>({
      links: [
        httpBatchLink({
          url: `${baseUrl}/trpc`,
          headers: () => (token ? { authorization: `Bearer ${token}` } : {}),
          fetch: observingFetch(async (res) => {
            seen.push(await res.clone().text());
          }),
        }),
      ],
    });
    const password = "Leak-Check-Passw0rd";
    const address = email("leak");
    token = (await api.auth.register.mutate({ email: address, password })).accessToken;
    await api.auth.me.query();
    await api.auth.sessions.query();
    await trpcErrorOf(api.auth.register.mutate({ email: address, password }));
    await trpcErrorOf(api.auth.login.mutate({ email: address, password: `${password}!` }));
    await trpcErrorOf(api.auth.changePassword.mutate({ currentPassword: `${password}!`, newPassword: password }));
    token = (await api.auth.login.mutate({ email: address, password })).accessToken;
    expect(seen.length).toBeGreaterThanOrEqual(7);
    const all = seen.join("\n");
    for (const leak of ["password_hash", "passwordHash", "token_hash", "tokenHash", "$argon2", password]) {
      expect(all).not.toContain(leak);
    }
  });

  test("forged and garbage tokens are UNAUTHORIZED", async () => {
    const client = newClient();
    const { accessToken } = await client.api.auth.register.mutate({ email: email("forge"), password: PASSWORD });
    const [header, payload, signature] = accessToken.split(".");
    const claims = JSON.parse(Buffer.from(payload, "base64url").toString()) as Record<string, unknown>;
    const none = `${Buffer.from(JSON.stringify({ alg: "none", typ: "JWT" })).toString("base64url")}.${payload}.`;
    const tampered = `${header}.${Buffer.from(JSON.stringify({ ...claims, exp: Number(claims.exp) + 86_400 })).toString("base64url")}.${signature}`;
    for (const token of [none, tampered, "garbage", `${accessToken}x`]) {
      client.setToken(token);
      expect((await trpcErrorOf(client.api.auth.me.query())).data?.code).toBe("UNAUTHORIZED");
    }
  });
});

async function signInAdmin() {
  const admin = newClient();
  if (ADMIN_VIA === "promote") {
    const address = email("admin");
    admin.setToken((await admin.api.auth.register.mutate({ email: address, password: PASSWORD })).accessToken);
    const { default: postgres } = await import("postgres");
    const sql = postgres(process.env.E2E_DATABASE_URL!, { max: 1, prepare: false, onnotice: () => {} });
    await sql`update users set role = 'admin' where email = ${address}`;
    await sql.end();
    return admin;
  }
  const credentials =
    ADMIN_VIA === "given" ? { email: process.env.E2E_ADMIN_EMAIL!, password: process.env.E2E_ADMIN_PASSWORD! } : BOOTSTRAP_ADMIN;
  admin.setToken((await admin.api.auth.login.mutate(credentials)).accessToken);
  return admin;
}

async function signUpCustomer(tag: string) {
  const client = newClient();
  client.setToken((await client.api.auth.register.mutate({ email: email(tag), password: PASSWORD })).accessToken);
  return client;
}

describe.if(ADMIN_VIA !== undefined)("e2e: products and orders", () => {
  test("an admin creates a product; a customer orders it, sees it, cancels it; stock follows", async () => {
    const admin = await signInAdmin();
    expect((await admin.api.auth.me.query()).role).toBe("admin");
    const product = await admin.api.products.create.mutate({ name: `E2E Lamp ${Date.now()}`, price: "12.5", stock: 3 });
    expect(product).toMatchObject({ price: "12.50", stock: 3, description: null });

    const alice = await signUpCustomer("alice");
    expect((await alice.api.products.byId.query({ id: product.id })).name).toBe(product.name);
    // The same product twice is merged into one line.
    const order = await alice.api.orders.create.mutate({
      items: [
        { productId: product.id, quantity: 2 },
        { productId: product.id, quantity: 1 },
      ],
      idempotencyKey: `e2e-${product.id}`,
    });
    expect(order).toMatchObject({ status: "pending", total: "37.50" });
    expect(order.items).toEqual([{ id: expect.any(String), productId: product.id, quantity: 3, price: "12.50" }]);
    expect(await alice.api.inventory.get.query({ productId: product.id })).toEqual({ productId: product.id, stock: 0 });

    // A retry with the same key returns the same order and takes no more stock.
    const retry = await alice.api.orders.create.mutate({
      items: [{ productId: product.id, quantity: 3 }],
      idempotencyKey: `e2e-${product.id}`,
    });
    expect(retry.id).toBe(order.id);

    const mine = await alice.api.orders.list.query();
    expect(mine.items.map((o) => o.id)).toContain(order.id);
    expect((await alice.api.orders.byId.query({ id: order.id })).total).toBe("37.50");

    const cancelled = await alice.api.orders.cancel.mutate({ id: order.id });
    expect(cancelled.status).toBe("cancelled");
    expect((await alice.api.products.byId.query({ id: product.id })).stock).toBe(3);
  });

  test("errors: short stock is CONFLICT with productIds; someone else's order NOT_FOUND; customers cannot admin", async () => {
    const admin = await signInAdmin();
    const product = await admin.api.products.create.mutate({ name: `E2E Mug ${Date.now()}`, price: "4.99", stock: 1 });
    const bob = await signUpCustomer("bob");
    const short = await trpcErrorOf(bob.api.orders.create.mutate({ items: [{ productId: product.id, quantity: 2 }] }));
    expect(short.data?.code).toBe("CONFLICT");
    expect((short.data as unknown as { productIds: string[] }).productIds).toEqual([product.id]);

    const order = await bob.api.orders.create.mutate({ items: [{ productId: product.id, quantity: 1 }] });
    const eve = await signUpCustomer("eve");
    expect((await trpcErrorOf(eve.api.orders.byId.query({ id: order.id }))).data?.code).toBe("NOT_FOUND");
    expect((await trpcErrorOf(eve.api.orders.cancel.mutate({ id: order.id }))).data?.code).toBe("NOT_FOUND");
    expect((await trpcErrorOf(bob.api.orders.updateStatus.mutate({ id: order.id, status: "shipped" }))).data?.code).toBe("FORBIDDEN");
    expect((await trpcErrorOf(bob.api.products.create.mutate({ name: "Nope", price: "1.00" }))).data?.code).toBe("FORBIDDEN");

    expect((await admin.api.orders.updateStatus.mutate({ id: order.id, status: "processing" })).status).toBe("processing");
    expect((await trpcErrorOf(admin.api.orders.updateStatus.mutate({ id: order.id, status: "delivered" }))).data?.code).toBe("CONFLICT");
    expect((await trpcErrorOf(bob.api.products.byId.query({ id: "not-a-uuid" }))).data?.code).toBe("BAD_REQUEST");
    expect((await trpcErrorOf(bob.api.products.byId.query({ id: crypto.randomUUID() }))).data?.code).toBe("NOT_FOUND");
  });
});
