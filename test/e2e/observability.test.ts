// Metrics, traces and their log lines on the real Bun server (a child process): GET /metrics
// checked by Prometheus's own promtool, and traces sent by the real OTLP/HTTP exporter to a
// receiver on loopback that decodes what arrives.
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { existsSync } from "node:fs";
import { type RunningServer, removeDataDir, startServer } from "../support/server";

setDefaultTimeout(60_000);

const PROMTOOL = process.env.PROMTOOL ?? "/usr/bin/promtool";
const ADMIN = { email: `obs-admin-${Date.now().toString(36)}@example.com`, password: "obs admin password" };
const METRICS_TOKEN = "metrics-token-0123456789abcdef";

async function call(baseUrl: string, procedure: string, input: unknown, opts: { token?: string; headers?: Record<string, string> } = {}) {
  const headers: Record<string, string> = { "content-type": "application/json", ...opts.headers };
  if (opts.token) headers.authorization = `Bearer ${opts.token}`;
  const res = await fetch(`${baseUrl}/trpc/${procedure}`, { method: "POST", headers, body: JSON.stringify(input) });
  // biome-ignore lint/suspicious/noExplicitAny: the tests read whatever each procedure answers
  const body = (await res.json()) as { result?: { data: any }; error?: { data?: { code?: string } } };
  return { status: res.status, data: body.result?.data, code: body.error?.data?.code };
}

const query = async (baseUrl: string, procedure: string, input: unknown, token?: string) => {
  const res = await fetch(`${baseUrl}/trpc/${procedure}?input=${encodeURIComponent(JSON.stringify(input))}`, {
    headers: token ? { authorization: `Bearer ${token}` } : {},
  });
  return { status: res.status, body: await res.json() };
};

/** Sample values of one metric: `{ 'outcome="placed"': 1, ... }` (label text as exposed). */
function samples(text: string, name: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const line of text.split("\n")) {
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (m && m[1] === name) out[m[2] ?? ""] = Number(m[3]);
  }
  return out;
}

/** Runs `promtool check metrics` on the exposition text; exit 0 and no complaints is a pass. */
async function promtoolCheck(text: string) {
  const proc = Bun.spawn([PROMTOOL, "check", "metrics"], { stdin: new Blob([text]), stdout: "pipe", stderr: "pipe" });
  const [code, stdout, stderr] = await Promise.all([proc.exited, new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
  return { code, output: `${stdout}${stderr}`.trim() };
}

/** Signs in the bootstrapped admin, makes a product with `stock`, and a customer. */
async function setUpShop(baseUrl: string, stock: number) {
  const admin = await call(baseUrl, "auth.login", ADMIN);
  expect(admin.status).toBe(200);
  const product = await call(
    baseUrl,
    "products.create",
    { name: `obs ${Date.now()}`, price: "2.50", stock },
    { token: admin.data.accessToken },
  );
  expect(product.status).toBe(200);
  const email = `obs-customer-${Date.now().toString(36)}@example.com`;
  const password = "customer password 1";
  const customer = await call(baseUrl, "auth.register", { email, password });
  expect(customer.status).toBe(200);
  return {
    productId: product.data.id as string,
    token: customer.data.accessToken as string,
    email,
    password,
    adminToken: admin.data.accessToken as string,
  };
}

/** With METRICS_TOKEN set, /metrics answers only `Authorization: Bearer <token>`, exactly. */
async function checkMetricsToken(baseUrl: string) {
  const get = (authorization?: string) => fetch(`${baseUrl}/metrics`, { headers: authorization ? { authorization } : {} });
  const none = await get();
  expect(none.status).toBe(401);
  expect(await none.text()).not.toContain("http_requests_total");
  expect((await get(`Bearer ${METRICS_TOKEN}x`)).status).toBe(401);
  expect((await get(`Bearer ${METRICS_TOKEN.slice(0, -1)}`)).status).toBe(401);
  expect((await get(METRICS_TOKEN)).status).toBe(401);
  const ok = await get(`Bearer ${METRICS_TOKEN}`);
  expect(ok.status).toBe(200);
  expect(await ok.text()).toContain("# TYPE http_requests_total counter");
}

describe("GET /metrics", () => {
  let server: RunningServer;
  let baseUrl = "";
  beforeAll(async () => {
    server = await startServer({ env: { ADMIN_EMAIL: ADMIN.email, ADMIN_PASSWORD: ADMIN.password } });
    baseUrl = server.baseUrl;
  }, 120_000);
  afterAll(async () => {
    await server?.stop();
    await removeDataDir(server?.dataDir);
  });

  test("Prometheus text that promtool accepts, with request, database, order and login series", async () => {
    expect(existsSync(PROMTOOL)).toBe(true);
    const shop = await setUpShop(baseUrl, 3);
    expect((await query(baseUrl, "products.byId", { id: shop.productId })).status).toBe(200);
    expect(
      (await call(baseUrl, "orders.create", { items: [{ productId: shop.productId, quantity: 1 }] }, { token: shop.token })).status,
    ).toBe(200);
    const res = await fetch(`${baseUrl}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toContain("text/plain");
    const text = await res.text();

    const check = await promtoolCheck(text);
    expect(check).toEqual({ code: 0, output: "" });

    expect(samples(text, "http_requests_total")['procedure="products.byId",status="2xx"']).toBeGreaterThanOrEqual(1);
    expect(samples(text, "http_request_duration_seconds_count")['procedure="orders.create",status="2xx"']).toBeGreaterThanOrEqual(1);
    // The scrape itself is the one request in flight.
    expect(samples(text, "http_requests_in_flight")[""]).toBe(1);
    // PGlite is one connection; on Postgres the pool is DATABASE_POOL_MAX (5 in the test env).
    expect([1, 5]).toContain(samples(text, "db_pool_max_connections")[""]);
    expect(samples(text, "db_statements_waiting")[""]).toBe(0);
    // Statements are labelled by their kind: reads (the sign-in's, the catalog's, the order's function call) and writes (the registration's).
    expect(samples(text, "db_statement_duration_seconds_count")['operation="select"']).toBeGreaterThanOrEqual(1);
    expect(samples(text, "db_statement_duration_seconds_count")['operation="insert"']).toBeGreaterThanOrEqual(1);
    expect(samples(text, "orders_create_total")['outcome="placed"']).toBe(1);
    expect(samples(text, "auth_login_total")['outcome="ok"']).toBe(1);
    expect(samples(text, "process_resident_memory_bytes")[""]).toBeGreaterThan(0);
  });

  test("orders refused by reason, idempotent replays and login outcomes are counted apart", async () => {
    const shop = await setUpShop(baseUrl, 1);
    const before = samples(await (await fetch(`${baseUrl}/metrics`)).text(), "orders_create_total");
    const loginsBefore = samples(await (await fetch(`${baseUrl}/metrics`)).text(), "auth_login_total");
    const order = (input: unknown) => call(baseUrl, "orders.create", input, { token: shop.token });

    expect((await order({ items: [{ productId: shop.productId, quantity: 1 }], idempotencyKey: "obs-key-1" })).status).toBe(200);
    expect((await order({ items: [{ productId: shop.productId, quantity: 1 }] })).code).toBe("CONFLICT");
    expect((await order({ items: [{ productId: crypto.randomUUID(), quantity: 1 }] })).code).toBe("NOT_FOUND");
    expect((await order({ items: [] })).code).toBe("BAD_REQUEST");
    expect((await call(baseUrl, "orders.create", { items: [{ productId: shop.productId, quantity: 1 }] })).code).toBe("UNAUTHORIZED");
    // A replay answers the first order; it is told apart by its age, so wait past the threshold.
    await Bun.sleep(1_100);
    const replay = await order({ items: [{ productId: shop.productId, quantity: 1 }], idempotencyKey: "obs-key-1" });
    expect(replay.status).toBe(200);
    expect((await call(baseUrl, "auth.login", { email: shop.email, password: "wrong password 1" })).code).toBe("UNAUTHORIZED");
    expect((await call(baseUrl, "auth.login", { email: shop.email, password: shop.password })).status).toBe(200);

    const text = await (await fetch(`${baseUrl}/metrics`)).text();
    const after = samples(text, "orders_create_total");
    const delta = (k: string) => after[`outcome="${k}"`] - before[`outcome="${k}"`];
    expect({
      placed: delta("placed"),
      replayed: delta("replayed"),
      stock: delta("stock"),
      not_found: delta("not_found"),
      invalid: delta("invalid"),
      unauthorized: delta("unauthorized"),
      error: delta("error"),
    }).toEqual({ placed: 1, replayed: 1, stock: 1, not_found: 1, invalid: 1, unauthorized: 1, error: 0 });
    const logins = samples(text, "auth_login_total");
    expect(logins['outcome="failed"'] - loginsBefore['outcome="failed"']).toBe(1);
    expect(logins['outcome="ok"'] - loginsBefore['outcome="ok"']).toBe(1);
  });

  test("labels stay bounded: unknown paths and procedures share one label, no id or email appears", async () => {
    const email = `leak-${Date.now().toString(36)}@example.com`;
    const id = crypto.randomUUID();
    await fetch(`${baseUrl}/trpc/${email}`);
    await fetch(`${baseUrl}/products/${id}`);
    await fetch(`${baseUrl}/trpc/products.byId,products.list?batch=1&input={}`);
    await query(baseUrl, "products.byId", { id });
    const text = await (await fetch(`${baseUrl}/metrics`)).text();
    expect(text).not.toContain(email);
    expect(text).not.toContain(id);
    expect(text).not.toContain("@");
    const procedures = new Set(Object.keys(samples(text, "http_requests_total")).map((l) => /procedure="([^"]*)"/.exec(l)?.[1]));
    for (const p of procedures) expect(p).toMatch(/^(?:[a-z]+\.[A-Za-z]+|batch|other|\/[a-z.]+)$/);
    expect(procedures.has("other")).toBe(true);
    expect(procedures.has("batch")).toBe(true);
  });
});

interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  attributes?: { key: string; value: Record<string, unknown> }[];
}

/** A minimal OTLP/HTTP receiver: collects the spans of every JSON export it is sent. */
function startReceiver() {
  const spans: OtlpSpan[] = [];
  const contentTypes: string[] = [];
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    async fetch(req) {
      const url = new URL(req.url);
      if (req.method !== "POST" || url.pathname !== "/v1/traces") return new Response("not found", { status: 404 });
      contentTypes.push(req.headers.get("content-type") ?? "");
      const body = (await req.json()) as { resourceSpans?: { scopeSpans?: { spans?: OtlpSpan[] }[] }[] };
      for (const rs of body.resourceSpans ?? []) for (const ss of rs.scopeSpans ?? []) spans.push(...(ss.spans ?? []));
      return Response.json({});
    },
  });
  return { url: `http://127.0.0.1:${server.port}`, spans, contentTypes, stop: () => server.stop(true) };
}

const attr = (span: OtlpSpan, key: string) => {
  const v = span.attributes?.find((a) => a.key === key)?.value;
  return v ? (v.stringValue ?? (v.intValue !== undefined ? Number(v.intValue) : v.boolValue)) : undefined;
};

describe("OpenTelemetry traces over OTLP/HTTP", () => {
  let receiver: ReturnType<typeof startReceiver>;
  let server: RunningServer | undefined;
  beforeAll(() => {
    receiver = startReceiver();
  });
  afterAll(async () => {
    await server?.stop();
    await removeDataDir(server?.dataDir);
    receiver.stop();
  });

  test("METRICS_TOKEN guards /metrics; an orders.create is one server span, a procedure span under it and its SQL under that; no secret in any attribute", async () => {
    server = await startServer({
      env: { ADMIN_EMAIL: ADMIN.email, ADMIN_PASSWORD: ADMIN.password, OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url, METRICS_TOKEN },
    });
    const shop = await setUpShop(server.baseUrl, 5);
    await checkMetricsToken(server.baseUrl);
    const callerTrace = "4bf92f3577b34da6a3ce929d0e0e4736";
    const callerSpan = "00f067aa0ba902b7";
    const requestId = "obs-trace-request-1";
    const created = await call(
      server.baseUrl,
      "orders.create",
      { items: [{ productId: shop.productId, quantity: 2 }], idempotencyKey: "obs-secret-key" },
      { token: shop.token, headers: { traceparent: `00-${callerTrace}-${callerSpan}-01`, "x-request-id": requestId } },
    );
    expect(created.status).toBe(200);
    // SIGTERM: the host shuts the tracer provider down, which sends what is still batched.
    expect(await server.stop()).toBe(0);
    const output = server.output();
    await removeDataDir(server.dataDir);
    server = undefined;

    expect(receiver.contentTypes.every((t) => t.startsWith("application/json"))).toBe(true);
    const trace = receiver.spans.filter((s) => s.traceId === callerTrace);
    const root = trace.find((s) => s.kind === 2);
    expect(root?.name).toBe("POST /trpc/orders.create");
    expect(root?.parentSpanId).toBe(callerSpan);
    expect(attr(root!, "request.id")).toBe(requestId);
    expect(attr(root!, "http.response.status_code")).toBe(200);
    const procedure = trace.find((s) => s.parentSpanId === root!.spanId);
    expect(procedure?.name).toBe("trpc orders.create");
    expect(attr(procedure!, "request.id")).toBe(requestId);
    const statements = trace.filter((s) => s.parentSpanId === procedure!.spanId);
    expect(statements.length).toBeGreaterThanOrEqual(1);
    for (const s of statements) {
      expect(s.kind).toBe(3);
      expect(attr(s, "db.system.name")).toBe("postgresql");
      expect(typeof attr(s, "db.query.text")).toBe("string");
      expect(typeof attr(s, "db.response.returned_rows")).toBe("number");
    }
    // The order is one statement: migration 0010's function.
    expect(statements.some((s) => /select \* from orders_place\(/i.test(String(attr(s, "db.query.text"))))).toBe(true);
    // Every span of the request is in this one trace.
    expect(trace.length).toBe(2 + statements.length);

    const secrets = [shop.token, shop.adminToken, shop.email, shop.password, ADMIN.email, ADMIN.password, shop.productId, "obs-secret-key"];
    const everyValue = JSON.stringify(receiver.spans.map((s) => s.attributes ?? []));
    for (const secret of secrets) expect(everyValue).not.toContain(secret);
    expect(everyValue).not.toContain("@");

    // The request's log line carries both ids.
    const line = output.split("\n").find((l) => l.includes('"msg":"request"') && l.includes(requestId));
    expect(JSON.parse(line!)).toMatchObject({ requestId, traceId: callerTrace, status: 200 });
    // The metrics token is a secret too: never in a log line.
    expect(output).not.toContain(METRICS_TOKEN);
  });
});
