// End to end over HTTP with the typed tRPC client, exactly as a TypeScript client calls the
// service. Runs unchanged against any server: E2E_BASE_URL (e.g. `wrangler dev`), or else the
// real Bun server (`bun run src/server.ts`) started here on a free port.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createTRPCClient, httpBatchLink, TRPCClientError } from "@trpc/client";
import type { AppRouter } from "../../src/index";
import { startServer, removeDataDir, type RunningServer } from "../support/server";

// ---- The README's "Calling it from TypeScript" snippet, verbatim (only the import path differs:
// ---- a client project writes `from "commerce-backend"`).
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

beforeAll(async () => {
  if (EXTERNAL) {
    baseUrl = EXTERNAL;
    return;
  }
  // NODE_ENV=development: tRPC would add stacks to errors there; the service must not.
  server = await startServer({ env: { NODE_ENV: "development", SEED: "true" } });
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
  test("the README snippet works as written", async () => {
    // ---- README usage, verbatim (with a fresh email)
    let token: string | undefined;
    const api = createApiClient(baseUrl, () => token);

    const { accessToken, user } = await api.auth.register.mutate({ email: email("readme"), password: "correct horse battery" });
    token = accessToken;
    const me = await api.auth.me.query(); // { id, email, role, createdAt, updatedAt }
    const page = await api.products.list.query({ limit: 5, sort: "price_asc" }); // { items, nextCursor }
    // ---- end of the README usage
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
