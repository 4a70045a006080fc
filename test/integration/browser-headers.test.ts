// CORS_ORIGINS and the security headers, at the HTTP level (the browser itself is in
// test/browser/): preflight and answers for a listed origin, nothing for any other origin.
import { describe, expect, setDefaultTimeout, test } from "bun:test";
import { Hono, type MiddlewareHandler } from "hono";
import { secureHeaders } from "hono/secure-headers";
import { createApp } from "../../src/app";
import { API_CSP, securityHeaders } from "../../src/browser";
import { EnvError, parseEnv } from "../../src/env";
import { createTestDeps, signUp } from "../support/app";
import { getTestDatabase } from "../support/db";

setDefaultTimeout(60_000);

const handle = await getTestDatabase();
const ALLOWED = "http://127.0.0.1:5173";
const base = createTestDeps(handle.db);
const deps = { ...base, env: { ...base.env, CORS_ORIGINS: [ALLOWED, "https://shop.example.com"] } };
const app = createApp(deps);

const preflight = (origin: string, method = "POST") =>
  app.request("/trpc/orders.create", {
    method: "OPTIONS",
    headers: { origin, "access-control-request-method": method, "access-control-request-headers": "authorization,content-type" },
  });

describe("CORS_ORIGINS: configuration", () => {
  test("comma-separated origins are parsed, spaces and empty entries dropped", () => {
    expect(parseEnv({ CORS_ORIGINS: " https://a.example.com, http://localhost:5173 ,," }).CORS_ORIGINS).toEqual([
      "https://a.example.com",
      "http://localhost:5173",
    ]);
    expect(parseEnv({}).CORS_ORIGINS).toEqual([]);
  });

  for (const bad of ["*", "localhost:5173", "https://a.example.com/", "https://a.example.com/app", "ftp://a.example.com"]) {
    test(`${JSON.stringify(bad)} is refused with one line naming CORS_ORIGINS`, () => {
      expect(() => parseEnv({ CORS_ORIGINS: bad })).toThrow(EnvError);
      expect(() => parseEnv({ CORS_ORIGINS: bad })).toThrow("CORS_ORIGINS");
    });
  }
});

describe("CORS: a listed origin", () => {
  test("a preflight is answered: the origin, POST, and the authorization and content-type headers", async () => {
    const res = await preflight(ALLOWED);
    expect(res.status).toBe(204);
    expect(res.headers.get("access-control-allow-origin")).toBe(ALLOWED);
    expect(res.headers.get("access-control-allow-methods")).toContain("POST");
    const allowed = res.headers.get("access-control-allow-headers")!.split(",");
    expect(allowed).toContain("authorization");
    expect(allowed).toContain("content-type");
    expect(res.headers.get("vary")).toContain("Origin");
  });

  test("a query and a mutation with a bearer token answer with the origin allowed", async () => {
    const list = await app.request("/trpc/products.list", { headers: { origin: ALLOWED } });
    expect(list.status).toBe(200);
    expect(list.headers.get("access-control-allow-origin")).toBe(ALLOWED);
    const { accessToken } = await signUp(deps);
    const logout = await app.request("/trpc/auth.logout", {
      method: "POST",
      headers: { origin: ALLOWED, authorization: `Bearer ${accessToken}`, "content-type": "application/json" },
      body: "{}",
    });
    expect(logout.status).toBe(200);
    expect(logout.headers.get("access-control-allow-origin")).toBe(ALLOWED);
    expect(logout.headers.get("access-control-expose-headers")).toContain("x-request-id");
  });
});

describe("CORS: security", () => {
  for (const origin of ["http://127.0.0.1:5174", "https://shop.example.com.evil.test", "null", "HTTP://127.0.0.1:5173"]) {
    test(`origin ${origin}: no Access-Control-* header at all, preflight or not`, async () => {
      for (const res of [await preflight(origin), await app.request("/trpc/products.list", { headers: { origin } })]) {
        const cors = [...res.headers.keys()].filter((k) => k.startsWith("access-control-"));
        expect(cors).toEqual([]);
      }
    });
  }

  test("without CORS_ORIGINS no origin gets CORS headers", async () => {
    const closed = createApp(createTestDeps(handle.db));
    const res = await closed.request("/trpc/products.list", { headers: { origin: ALLOWED } });
    expect(res.headers.get("access-control-allow-origin")).toBeNull();
  });

  test("every answer carries the security headers: API JSON, errors, 404s and the health check", async () => {
    const answers = [
      await app.request("/trpc/products.list"),
      await app.request("/trpc/products.byId?input=%7B%7D"),
      await app.request("/nope"),
      await app.request("/health"),
    ];
    for (const res of answers) {
      expect(res.headers.get("x-content-type-options")).toBe("nosniff");
      expect(res.headers.get("x-frame-options")).toBe("SAMEORIGIN");
      expect(res.headers.get("referrer-policy")).toBe("no-referrer");
      expect(res.headers.get("content-security-policy")).toBe("default-src 'none'; frame-ancestors 'none'; base-uri 'none'");
      expect(res.headers.get("x-powered-by")).toBeNull();
    }
  });
});

// securityHeaders sets constant pairs instead of running Hono's secureHeaders middleware on API
// answers (src/browser.ts); these hold the two to the same answers.
describe("security headers: the same as Hono's secureHeaders", () => {
  const withHeaders = (middleware: MiddlewareHandler) => {
    const app = new Hono<{ Variables: { secureHeadersNonce?: string } }>();
    app.use("*", middleware);
    app.get("/json", (c) => c.json({ ok: true }));
    // A handler that sets some of the headers itself, and X-Powered-By.
    app.get("/own", (c) =>
      c.text("own", 200, { "x-frame-options": "DENY", "Content-Security-Policy": "default-src *", "X-Powered-By": "Express" }),
    );
    app.get("/raw", () => new Response("raw", { status: 201, headers: { "x-powered-by": "PHP", "referrer-policy": "unsafe-url" } }));
    app.get("/docs", (c) => c.text(c.get("secureHeadersNonce") ?? "no nonce"));
    app.get("/docs/reference.js", (c) => c.text(c.get("secureHeadersNonce") ?? "no nonce"));
    app.get("/docsx", (c) => c.text("not the reference page"));
    return app;
  };
  const ours = withHeaders(securityHeaders);
  const hono = withHeaders(secureHeaders({ contentSecurityPolicy: API_CSP }));
  const snapshot = async (res: Response) => ({ status: res.status, headers: [...res.headers.entries()], body: await res.text() });

  for (const path of ["/json", "/own", "/raw", "/nope", "/docsx"]) {
    test(`${path}: the same status, headers and body`, async () => {
      expect(await snapshot(await ours.request(path))).toEqual(await snapshot(await hono.request(path)));
    });
  }

  test("API answers carry every header of the list, and no X-Powered-By", async () => {
    const headers = (await ours.request("/own")).headers;
    expect(headers.get("x-frame-options")).toBe("SAMEORIGIN");
    expect(headers.get("content-security-policy")).toBe("default-src 'none'; frame-ancestors 'none'; base-uri 'none'");
    expect(headers.get("strict-transport-security")).toBe("max-age=15552000; includeSubDomains");
    expect(headers.get("x-powered-by")).toBeNull();
  });

  test("/docs and below: the reference page's policy, with the nonce its script is given", async () => {
    for (const path of ["/docs", "/docs/reference.js"]) {
      const res = await ours.request(path);
      const nonce = await res.text();
      expect(nonce).not.toBe("no nonce");
      const csp = res.headers.get("content-security-policy") ?? "";
      expect(csp).toContain(`script-src 'nonce-${nonce}'`);
      expect(csp).toContain("default-src 'self'");
      expect(res.headers.get("x-frame-options")).toBe("SAMEORIGIN");
    }
    // A fresh nonce per answer.
    expect(await (await ours.request("/docs")).text()).not.toBe(await (await ours.request("/docs")).text());
  });
});
