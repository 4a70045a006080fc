// In real headless Chromium: the /docs reference page loads offline without console errors and
// lists every procedure; a page on an origin in CORS_ORIGINS calls the API with fetch (a query,
// and a mutation with a bearer token), and the same page on another origin is blocked.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import type { Page } from "playwright-core";
import { listProcedures } from "../../src/openapi";
import { type RunningServer, startServer, unusedPort } from "../support/server";
import { CHROMIUM, launchChromium } from "./chromium";

const HAVE_CHROMIUM = existsSync(CHROMIUM);
// .ci/run installs it; in CI a missing browser is a failure, not a skip.
if (process.env.CI && !HAVE_CHROMIUM) throw new Error(`No Chromium at ${CHROMIUM}: apt-get install chromium`);
const SETUP_MS = 180_000;

let api: RunningServer | undefined;
let browser: Awaited<ReturnType<typeof launchChromium>> | undefined;
const origins: { server: ReturnType<typeof Bun.serve>; origin: string }[] = [];

/** A static page on its own loopback port: its own origin. */
function servePage(port: number) {
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port,
    fetch: () => new Response("<!doctype html><title>shop</title><p>shop front</p>", { headers: { "content-type": "text/html" } }),
  });
  return { server, origin: `http://127.0.0.1:${server.port}` };
}

beforeAll(async () => {
  if (!HAVE_CHROMIUM) return;
  const allowedPort = await unusedPort();
  origins.push(servePage(allowedPort), servePage(await unusedPort()));
  api = await startServer({ env: { CORS_ORIGINS: `https://shop.example.com,${origins[0].origin}` } });
  browser = await launchChromium();
}, SETUP_MS);

afterAll(async () => {
  await browser?.close();
  await api?.stop();
  for (const o of origins) o.server.stop(true);
});

function watch(page: Page) {
  const problems: string[] = [];
  page.on("console", (m) => {
    if (m.type() === "error") problems.push(`console: ${m.text()}`);
  });
  page.on("pageerror", (e) => problems.push(`pageerror: ${e.message}`));
  page.on("requestfailed", (r) => problems.push(`failed: ${r.url()} ${r.failure()?.errorText}`));
  page.on("response", (r) => {
    if (r.status() >= 400) problems.push(`${r.status()}: ${r.url()}`);
  });
  return problems;
}

/** What the page's own script gets from fetch: the status and body, or the error it threw. */
async function callFrom(page: Page, baseUrl: string, token: string) {
  return page.evaluate(
    async ({ baseUrl, token }) => {
      const attempt = async (f: () => Promise<Response>) => {
        try {
          const res = await f();
          return { status: res.status, body: await res.json() };
        } catch (error) {
          return { error: String(error) };
        }
      };
      const query = await attempt(() => fetch(`${baseUrl}/trpc/products.list?input=${encodeURIComponent(JSON.stringify({ limit: 1 }))}`));
      const mutation = await attempt(() =>
        fetch(`${baseUrl}/trpc/auth.logoutAll`, {
          method: "POST",
          headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
          body: "{}",
        }),
      );
      return { query, mutation };
    },
    { baseUrl, token },
  );
}

async function register(baseUrl: string) {
  const res = await fetch(`${baseUrl}/trpc/auth.register`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      email: `browser-${Date.now()}-${Math.random().toString(36).slice(2)}@example.com`,
      password: "a long and uncommon passphrase",
    }),
  });
  const body = (await res.json()) as { result: { data: { accessToken: string } } };
  return body.result.data.accessToken;
}

describe.skipIf(!HAVE_CHROMIUM)("GET /docs in headless Chromium", () => {
  test("loads offline without console errors and lists every procedure", async () => {
    const page = await browser!.context.newPage();
    const problems = watch(page);
    const res = await page.goto(`${api!.baseUrl}/docs`, { waitUntil: "load" });
    expect(res?.status()).toBe(200);
    expect(res?.headers()["content-security-policy"]).toContain("script-src 'nonce-");
    await page.getByText("orders.updateStatus", { exact: false }).first().waitFor({ timeout: 90_000 });
    // Give late work (lazy chunks of the page, its fetch of /openapi.json) time to fail loudly.
    await page.waitForTimeout(3000);
    const text = await page.locator("body").innerText();
    const missing = listProcedures()
      .map((p) => p.path)
      .filter((path) => !text.includes(path));
    expect(missing).toEqual([]);
    expect(problems).toEqual([]);
    expect(browser!.offLoopback).toEqual([]);
    await page.close();
  }, 150_000);
});

describe.skipIf(!HAVE_CHROMIUM)("CORS in headless Chromium", () => {
  test("a page on an origin in CORS_ORIGINS: the query and the bearer-token mutation succeed", async () => {
    const token = await register(api!.baseUrl);
    const page = await browser!.context.newPage();
    await page.goto(origins[0].origin);
    const { query, mutation } = await callFrom(page, api!.baseUrl, token);
    expect(query).toMatchObject({ status: 200, body: { result: { data: { items: expect.any(Array) } } } });
    expect(mutation).toMatchObject({ status: 200, body: { result: { data: { ok: true, revoked: 1 } } } });
    await page.close();
  }, 60_000);

  test("the same page on an origin not listed: the browser blocks both, and the token is not used", async () => {
    const token = await register(api!.baseUrl);
    const page = await browser!.context.newPage();
    const problems = watch(page);
    await page.goto(origins[1].origin);
    const { query, mutation } = await callFrom(page, api!.baseUrl, token);
    expect(query).toEqual({ error: "TypeError: Failed to fetch" });
    expect(mutation).toEqual({ error: "TypeError: Failed to fetch" });
    expect(problems.join("\n")).toContain("blocked by CORS policy");
    // The preflight failed, so the mutation never ran: the session still works.
    const me = await fetch(`${api!.baseUrl}/trpc/auth.me`, { headers: { authorization: `Bearer ${token}` } });
    expect(me.status).toBe(200);
    await page.close();
  }, 60_000);
});
