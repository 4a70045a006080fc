// The single-query fast path (src/trpc/query-fast-path.ts) must answer byte for byte what tRPC's
// fetch adapter answers, and must leave every other request to it. Each case below runs through
// both with the same options and the same database state; queries do not write, so the second
// run sees what the first saw.
import { afterEach, beforeAll, describe, expect, spyOn, test } from "bun:test";
import { fetchRequestHandler } from "@trpc/server/adapters/fetch";
import { createApp } from "../../src/app";
import { createPgliteDatabase } from "../../src/db/client";
import type { AppDeps } from "../../src/deps";
import { createLogger } from "../../src/lib/logger";
import { appRouter } from "../../src/routers";
import { trpcHandlerOptions } from "../../src/trpc/handler";
import * as fastPath from "../../src/trpc/query-fast-path";
import { answerSingleQuery, inputParam } from "../../src/trpc/query-fast-path";
import { createTestDeps, signUp, signUpAdmin } from "../support/app";
import { getTestDatabase, resetDatabase } from "../support/db";

const handle = await getTestDatabase();
let deps: AppDeps;
let customer: string;
let admin: string;
let productId: string;
let orderId: string;
const MISSING = "0190c6a2-7f3e-7a11-8b22-3c4d5e6f7a8b";

beforeAll(async () => {
  await resetDatabase(handle);
  deps = createTestDeps(handle.db);
  const a = await signUpAdmin(deps);
  admin = a.accessToken;
  const c = await signUp(deps);
  customer = c.accessToken;
  for (const [name, price, stock] of [
    ["Lamp", "19.90", 3],
    ["Chair", "49.00", 0],
    ["Desk", "199.99", 12],
  ] as const) {
    const p = await a.caller.products.create({ name, price, stock });
    productId ??= p.id;
  }
  orderId = (await c.caller.orders.create({ items: [{ productId, quantity: 1 }] })).id;
});

// With TRPC_FAST_PATH=false (.ci/run's "patches reverted, fast path off" run, or after a tRPC
// upgrade the fast path has not been checked against) the app never calls the fast path, so its
// comparison with the adapter is skipped; the switch itself is tested either way.
const FAST_PATH_ON = process.env.TRPC_FAST_PATH !== "false" && process.env.TRPC_FAST_PATH !== "0";
const OFF = "(skipped: TRPC_FAST_PATH=false)";

const q = (input: unknown) => `?input=${encodeURIComponent(JSON.stringify(input))}`;

function request(path: string, init: { token?: string; headers?: Record<string, string>; method?: string; body?: string } = {}) {
  const headers = new Headers({ "x-request-id": "equivalence-check", ...init.headers });
  if (init.token) headers.set("authorization", `Bearer ${init.token}`);
  return new Request(`http://localhost/trpc/${path}`, { method: init.method ?? "GET", headers, body: init.body });
}

async function snapshot(res: Response) {
  return { status: res.status, headers: [...res.headers.entries()], body: await res.text() };
}

async function bothWays(make: () => Request, using: AppDeps = deps) {
  const options = (req: Request) =>
    trpcHandlerOptions(appRouter, using, { req, requestId: "equivalence-check", socketAddress: "203.0.113.7" });
  const fast = await answerSingleQuery(options(make()));
  const adapter = await fetchRequestHandler(options(make()));
  return { fast: fast && (await snapshot(fast)), adapter: await snapshot(adapter) };
}

describe.skipIf(!FAST_PATH_ON)(`query fast path: the same answer as tRPC's fetch adapter${FAST_PATH_ON ? "" : ` ${OFF}`}`, () => {
  const cases: Array<[string, () => Request]> = [
    ["products.list without input", () => request("products.list")],
    ["products.list with an empty input", () => request("products.list?input=")],
    ["products.list first page", () => request(`products.list${q({ limit: 2 })}`)],
    ["products.list by price with filters", () => request(`products.list${q({ sort: "price_asc", minPrice: "10", inStock: true })}`)],
    ["products.list search", () => request(`products.list${q({ search: "am" })}`)],
    ["products.list input null", () => request("products.list?input=null")],
    ["products.list limit 0", () => request(`products.list${q({ limit: 0 })}`)],
    ["products.list exponent price", () => request(`products.list${q({ minPrice: "1e5" })}`)],
    ["products.list garbage cursor", () => request(`products.list${q({ cursor: "not-a-cursor" })}`)],
    ["products.list unknown sort", () => request(`products.list${q({ sort: "random" })}`)],
    ["products.list an array", () => request(`products.list${q([1, 2])}`)],
    ["products.byId", () => request(`products.byId${q({ id: productId })}`)],
    ["products.byId upper-case id", () => request(`products.byId${q({ id: productId.toUpperCase() })}`)],
    ["products.byId not found", () => request(`products.byId${q({ id: MISSING })}`)],
    ["products.byId malformed id", () => request(`products.byId${q({ id: "42" })}`)],
    ["products.byId no input", () => request("products.byId")],
    ["products.byId with a token", () => request(`products.byId${q({ id: productId })}`, { token: customer })],
    ["inventory.get", () => request(`inventory.get${q({ productId })}`)],
    ["inventory.get not found", () => request(`inventory.get${q({ productId: MISSING })}`)],
    ["inventory.lowStock anonymous", () => request("inventory.lowStock")],
    ["inventory.lowStock customer", () => request("inventory.lowStock", { token: customer })],
    ["inventory.lowStock admin", () => request(`inventory.lowStock${q({ threshold: 5 })}`, { token: admin })],
    ["auth.me anonymous", () => request("auth.me")],
    ["auth.me garbage token", () => request("auth.me", { token: "not.a.jwt" })],
    ["auth.me", () => request("auth.me", { token: customer })],
    ["auth.sessions", () => request("auth.sessions", { token: customer })],
    ["orders.list customer", () => request("orders.list", { token: customer })],
    ["orders.list admin filtered", () => request(`orders.list${q({ status: "pending", limit: 5 })}`, { token: admin })],
    ["orders.byId owner", () => request(`orders.byId${q({ id: orderId })}`, { token: customer })],
    ["orders.byId someone else's", () => request(`orders.byId${q({ id: MISSING })}`, { token: customer })],
    ["users.list admin", () => request(`users.list${q({ limit: 2 })}`, { token: admin })],
    ["users.list customer", () => request("users.list", { token: customer })],
    ["users.list bad role", () => request(`users.list${q({ role: "root" })}`, { token: admin })],
    ["users.byId admin", () => request(`users.byId${q({ id: MISSING })}`, { token: admin })],
    ["users.byId malformed id", () => request(`users.byId${q({ id: "42" })}`, { token: admin })],
    ["audit.list admin", () => request(`audit.list${q({ action: "auth.register", limit: 1 })}`, { token: admin })],
    ["audit.list anonymous", () => request("audit.list")],
    ["audit.list garbage cursor", () => request(`audit.list${q({ cursor: "nope" })}`, { token: admin })],
    ["a header that has nothing to do with tRPC", () => request("products.list", { headers: { accept: "application/json" } })],
    // The query string as browsers and other clients may write it (inputParam decodes it by hand).
    ["an empty query string", () => request("products.list?")],
    ["`+` in the input is a space", () => request("products.list?input=%7B%22search%22%3A%22am+p%22%7D")],
    ["`%2B` in the input is a plus", () => request(`products.list?input=${encodeURIComponent(JSON.stringify({ search: "a+b" }))}`)],
    ["lower-case escapes", () => request(`products.list?input=${encodeURIComponent(JSON.stringify({ limit: 2 })).toLowerCase()}`)],
    ["unescaped JSON characters", () => request('products.list?input={"limit":2,"sort":"name_asc"}')],
    ["unicode in the input", () => request(`products.list${q({ search: "Lämp ☕ 𝄞" })}`)],
    ["an `=` inside the input", () => request(`products.list${q({ search: "a=b" })}`)],
    ["escaped `&` and `#` inside the input", () => request(`products.list${q({ search: "a&b#c" })}`)],
    ["a search for `%`", () => request(`products.list${q({ search: "100%" })}`)],
  ];

  test.each(cases)("%s", async (_, make) => {
    const { fast, adapter } = await bothWays(make);
    expect(fast).not.toBeNull();
    expect(fast).toEqual(adapter);
  });

  test("a database failure: the same 500, and the failure logged once by each", async () => {
    const closed = await createPgliteDatabase(undefined);
    await closed.close();
    const lines: string[] = [];
    const broken = { ...createTestDeps(closed.db), logger: createLogger("info", (line) => lines.push(line)) };
    const { fast, adapter } = await bothWays(() => request(`products.byId${q({ id: productId })}`), broken);
    expect(fast).toEqual(adapter);
    expect(adapter.status).toBe(500);
    expect(adapter.body).toContain("request id equivalence-check");
    const logged = lines.map((l) => JSON.parse(l) as { msg: string; path?: string });
    expect(logged.map((l) => [l.msg, l.path])).toEqual([
      ["procedure failed", "products.byId"],
      ["procedure failed", "products.byId"],
    ]);
    // A fresh PGlite takes seconds on a busy 2-core machine.
  }, 60_000);

  test("the cases cover every query procedure of the router", async () => {
    const queries = Object.entries(appRouter._def.procedures as unknown as Record<string, { _def: { type: string } }>)
      .filter(([, p]) => p._def.type === "query")
      .map(([path]) => path)
      .sort();
    const covered = [...new Set(cases.map(([, make]) => new URL(make().url).pathname.slice("/trpc/".length)))].sort();
    expect(covered).toEqual(queries);
  });
});

describe.skipIf(!FAST_PATH_ON)(`query fast path: everything else goes to tRPC's fetch adapter${FAST_PATH_ON ? "" : ` ${OFF}`}`, () => {
  const passed: Array<[string, () => Request]> = [
    ["a mutation over POST", () => request("auth.login", { method: "POST", headers: { "content-type": "application/json" }, body: "{}" })],
    ["a mutation over GET (405 comes from the adapter)", () => request("auth.login")],
    ["a query over POST", () => request("products.list", { method: "POST", body: "" })],
    [
      "a batch",
      () => request(`products.list,products.byId?batch=1&input=${encodeURIComponent(JSON.stringify({ 0: {}, 1: { id: MISSING } }))}`),
    ],
    ["batch=1 with one call", () => request(`products.list?batch=1&input=${encodeURIComponent("{}")}`)],
    ["an unknown procedure", () => request("products.nothing")],
    ["a router, not a procedure", () => request("products")],
    ["a name every object inherits", () => request("toString")],
    ["__proto__", () => request("__proto__")],
    ["a percent-encoded path", () => request("products%2Elist")],
    ["a trailing slash", () => request("products.list/")],
    ["input that is not JSON", () => request("products.list?input=%7Bnope")],
    ["another query parameter", () => request("products.list?input=%7B%7D&extra=1")],
    ["input given twice", () => request("products.list?input=%7B%7D&input=%7B%7D")],
    ["another parameter first", () => request("products.list?extra=1&input=%7B%7D")],
    ["a trailing `&`", () => request("products.list?input=%7B%7D&")],
    ["a leading `&`", () => request("products.list?&input=%7B%7D")],
    ["input without `=`", () => request("products.list?input")],
    ["a parameter named Input", () => request("products.list?Input=%7B%7D")],
    ["a parameter that only starts with input", () => request("products.list?inputs=%7B%7D")],
    ["a malformed escape", () => request("products.list?input=%7B%22search%22%3A%22100%%22%7D")],
    ["an escape that is not UTF-8", () => request("products.list?input=%7B%22search%22%3A%22%E9%22%7D")],
    ["an escaped lone surrogate", () => request("products.list?input=%7B%22search%22%3A%22%ED%A0%80%22%7D")],
    ["a content type on a GET", () => request("products.list", { headers: { "content-type": "application/json" } })],
    ["a streaming client (trpc-accept)", () => request("products.list", { headers: { "trpc-accept": "application/jsonl" } })],
    ["a streaming client (accept)", () => request("products.list", { headers: { accept: "application/jsonl" } })],
    ["HEAD", () => request("products.list", { method: "HEAD" })],
  ];

  test.each(passed)("%s", async (_, make) => {
    const { fast, adapter } = await bothWays(make);
    expect(fast).toBeNull();
    expect(adapter.status).toBeGreaterThan(0);
  });

  test("through the app, a passed-on request still gets the adapter's answer", async () => {
    const app = createApp(deps);
    const res = await app.fetch(request("auth.login"), { socketAddress: "203.0.113.7" });
    expect(res.status).toBe(405);
    const batch = await app.fetch(
      request(`products.list,products.byId?batch=1&input=${encodeURIComponent(JSON.stringify({ 0: {}, 1: { id: MISSING } }))}`),
      {
        socketAddress: "203.0.113.7",
      },
    );
    expect(batch.status).toBe(207);
    const body = (await batch.json()) as Array<{ result?: unknown; error?: { data: { code: string } } }>;
    expect(body[0].result).toBeDefined();
    expect(body[1].error?.data.code).toBe("NOT_FOUND");
  });
});

describe("inputParam: the query string of a single query, parsed by hand", () => {
  // `url.indexOf("?") + 1` is where the fast path starts it.
  const parse = (query: string) => {
    const url = `http://localhost/trpc/products.list?${query}`;
    return inputParam(url, url.indexOf("?") + 1);
  };
  // What tRPC's adapter reads: URLSearchParams' only `input`.
  const standard = (query: string) => new URLSearchParams(query).get("input");

  test("good: the value, decoded as URLSearchParams decodes it", () => {
    const queries = [
      "input=",
      "input=%7B%7D",
      "input=%7b%22a%22%3a1%7d",
      'input={"a":1}',
      "input=a+b",
      "input=a%2Bb",
      "input=a%2bb+%2B+c",
      "input=%25",
      "input=%C3%A4%E2%98%95%F0%9D%84%9E",
      "input=a=b=c",
      "input=%26%23%3D%3F",
      "input=a?b",
      "input=%00",
      "input=%EF%BB%BF%7B%7D",
    ];
    for (const query of queries) expect([query, parse(query)]).toEqual([query, standard(query)]);
    expect(parse("input=a+b%2Bc")).toBe("a b+c");
    expect(parse("input=%E2%98%95")).toBe("☕");
  });

  test("good: no query string at all is no input", () => {
    const url = "http://localhost/trpc/products.list?";
    expect(inputParam(url, url.length)).toBe("");
  });

  test("error: a malformed escape or one that is not UTF-8 goes to the adapter", () => {
    for (const query of ["input=%", "input=%7", "input=%GG", "input=100%", "input=%E9", "input=%C3", "input=%ED%A0%80", "input=%FF%FE"]) {
      expect([query, parse(query)]).toEqual([query, null]);
    }
  });

  test("security: anything but exactly one `input` parameter goes to the adapter", () => {
    const queries = [
      "input=1&input=2",
      "input=1&extra=2",
      "extra=2&input=1",
      "input=1&",
      "&input=1",
      "input",
      "Input=1",
      "INPUT=1",
      "inputs=1",
      "input%3D1",
      "%69nput=1",
      " input=1",
      "input=1#fragment",
      "batch=1&input=1",
    ];
    for (const query of queries) expect([query, parse(query)]).toEqual([query, null]);
  });
});

describe.skipIf(!FAST_PATH_ON)(
  `query fast path: response headers from createContext and responseMeta${FAST_PATH_ON ? "" : ` ${OFF}`}`,
  () => {
    // Nothing in src/ writes them today; the fast path must still merge them as the adapter does.
    test("resHeaders written in createContext and headers from responseMeta: the same answer as the adapter", async () => {
      const options = (req: Request) => {
        const base = trpcHandlerOptions(appRouter, deps, { req, requestId: "equivalence-check", socketAddress: "203.0.113.7" });
        return {
          ...base,
          createContext: (opts: Parameters<NonNullable<typeof base.createContext>>[0]) => {
            opts.resHeaders.set("x-from-context", "1");
            opts.resHeaders.append("vary", "Origin");
            opts.resHeaders.append("set-cookie", "a=1");
            return base.createContext!(opts);
          },
          responseMeta: () => ({ headers: { "x-from-context": "2", "set-cookie": ["b=2", "c=3"], "cache-control": "no-store" } }),
        };
      };
      const make = () => request(`products.byId${q({ id: productId })}`);
      const fast = await answerSingleQuery(options(make()));
      const adapter = await fetchRequestHandler(options(make()));
      expect(fast).not.toBeNull();
      const [f, a] = [await snapshot(fast!), await snapshot(adapter)];
      expect(f).toEqual(a);
      expect(f.headers).toContainEqual(["x-from-context", "2"]);
      expect(f.headers).toContainEqual(["vary", "trpc-accept, accept, Origin"]);
    });
  },
);

describe("TRPC_FAST_PATH: the switch in the app", () => {
  afterEach(() => {
    spy?.mockRestore();
  });
  let spy: ReturnType<typeof spyOn> | undefined;

  async function byIdThrough(using: AppDeps) {
    spy = spyOn(fastPath, "answerSingleQuery");
    const headers = { "x-request-id": "switch-check" };
    const res = await createApp(using).fetch(request(`products.byId${q({ id: productId })}`, { headers }), {
      socketAddress: "203.0.113.7",
    });
    // Only this request's calls: a request another test left running must not count.
    const calls = spy.mock.calls.filter(
      (args: unknown[]) => (args[0] as { req: Request }).req.headers.get("x-request-id") === "switch-check",
    ).length;
    return { calls, status: res.status, body: (await res.json()) as { result?: { data?: { id?: string } } } };
  }

  test("on: a single query is answered by the fast path", async () => {
    const on = await byIdThrough({ ...deps, env: { ...deps.env, TRPC_FAST_PATH: true } });
    expect(on.calls).toBe(1);
    expect(on.status).toBe(200);
    expect(on.body.result?.data?.id).toBe(productId);
  });

  test("off: the same query never reaches the fast path and gets the same answer from the adapter", async () => {
    const off = await byIdThrough({ ...deps, env: { ...deps.env, TRPC_FAST_PATH: false } });
    expect(off.calls).toBe(0);
    expect(off.status).toBe(200);
    expect(off.body.result?.data?.id).toBe(productId);
  });
});
