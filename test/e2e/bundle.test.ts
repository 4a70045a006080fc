// `npm run build` (scripts/build-server.ts): the Bun host bundled into one file, with tRPC compiled
// from the TypeScript sources its package publishes so that object spread stays native whatever
// became of patches/. The bundle must answer exactly what `src/server.ts` answers.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { type RunningServer, removeDataDir, repoRoot, startServer } from "../support/server";

const EXTERNAL = Boolean(process.env.E2E_BASE_URL);
const ENTRY = "dist/bun/server.js";
const MISSING = "0190c6a2-7f3e-7a11-8b22-3c4d5e6f7a8b";
const servers: RunningServer[] = [];
let source: RunningServer;
let bundled: RunningServer;

describe.skipIf(EXTERNAL)("the server bundle (npm run build)", () => {
  beforeAll(async () => {
    const build = Bun.spawnSync([process.execPath, "scripts/build-server.ts"], { cwd: repoRoot, stdout: "pipe", stderr: "pipe" });
    if (build.exitCode !== 0) throw new Error(`npm run build failed: ${build.stderr.toString()}`);
    // Two servers on two fresh databases in the same (empty) state, one after the other (a
    // start-up is mostly CPU: migrations on PGlite).
    source = await startServer();
    servers.push(source);
    bundled = await startServer({ entry: ENTRY });
    servers.push(bundled);
  }, 180_000);

  afterAll(async () => {
    for (const s of servers) {
      await s.stop();
      await removeDataDir(s.dataDir);
    }
  });

  test("tRPC's object spreads are native in it: no _objectSpread2 helper", () => {
    const code = readFileSync(join(repoRoot, ENTRY), "utf8");
    expect(code).toContain("fetchRequestHandler");
    expect(code).not.toContain("_objectSpread2");
  });

  const q = (input: unknown) => `?input=${encodeURIComponent(JSON.stringify(input))}`;
  // Every row has its RequestInit: bun's test.each takes a missing last argument for a done callback.
  const requests: Array<[string, string, RequestInit]> = [
    ["health", "/health", {}],
    ["a single query (the fast path)", `/trpc/products.list${q({ limit: 5 })}`, {}],
    ["a missing product: NOT_FOUND", `/trpc/products.byId${q({ id: MISSING })}`, {}],
    ["bad input: BAD_REQUEST", `/trpc/products.byId${q({ id: "not-a-uuid" })}`, {}],
    [
      "a batch (the adapter)",
      `/trpc/products.list,products.byId?batch=1&input=${encodeURIComponent(JSON.stringify({ 0: {}, 1: { id: MISSING } }))}`,
      {},
    ],
    [
      "a mutation without a token: UNAUTHORIZED",
      "/trpc/orders.create",
      { method: "POST", headers: { "content-type": "application/json" }, body: "{}" },
    ],
    ["an unknown route", "/nothing-here", {}],
  ];

  test.each(requests)("%s: the same status and body as src/server.ts", async (_, path, init) => {
    // The same request id to both: error bodies carry it.
    const withId = { ...init, headers: { ...(init.headers as Record<string, string>), "x-request-id": "bundle-check" } };
    const [a, b] = await Promise.all([fetch(`${source.baseUrl}${path}`, withId), fetch(`${bundled.baseUrl}${path}`, withId)]);
    expect(b.status).toBe(a.status);
    expect(b.headers.get("content-type")).toBe(a.headers.get("content-type"));
    expect(await b.text()).toBe(await a.text());
  });
});
