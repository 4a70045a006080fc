// The typed-client package as a client project meets it: `npm run pack:client`, a fresh project
// in a temp folder that installs the tarball, @trpc/client and @trpc/server (and TypeScript),
// type-checked by tsc with "types": [] and skipLibCheck off under NodeNext (ESM and CommonJS) and
// Bundler, then run against the real Bun host. The README's snippet is examples/client/quickstart.ts.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { cp, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { onPostgres } from "../support/db";
import { type RunningServer, repoRoot, startServer } from "../support/server";

// The package does not depend on the database, and this file is slow (npm install, four tsc runs):
// it runs in the PGlite pass of the suite only.
const SKIP = onPostgres;

const rootPkg = JSON.parse(await readFile(join(repoRoot, "package.json"), "utf8"));
const ADMIN = { email: "typed-admin@example.com", password: "a long and uncommon passphrase" };
const SETUP_MS = 300_000;

let project = "";
let tarball = "";
let declarations = "";
let server: RunningServer | undefined;

function run(cmd: string[], cwd: string, timeoutMs = 240_000) {
  const r = Bun.spawnSync(cmd, { cwd, stdout: "pipe", stderr: "pipe", timeout: timeoutMs, env: { ...process.env, NO_COLOR: "1" } });
  return { code: r.exitCode, out: `${r.stdout.toString()}${r.stderr.toString()}` };
}

const compilerOptions = {
  strict: true,
  skipLibCheck: false,
  types: [],
  lib: ["ES2022", "ESNext.Disposable", "DOM"],
  target: "ES2022",
  noEmit: true,
  noUnusedLocals: false,
};

async function writeJson(path: string, value: unknown) {
  await writeFile(path, `${JSON.stringify(value, null, 2)}\n`);
}

beforeAll(async () => {
  if (SKIP) return;
  const packed = run([process.execPath, "run", "scripts/pack-client.ts"], repoRoot);
  if (packed.code !== 0) throw new Error(`pack:client failed:\n${packed.out}`);
  tarball = packed.out.trim().split("\n").at(-1)!;

  project = await mkdtemp(join(tmpdir(), "commerce-client-"));
  await writeJson(join(project, "package.json"), { name: "client-fixture", private: true, type: "module" });
  const installed = run(
    [
      "npm",
      "install",
      "--no-audit",
      "--no-fund",
      "--prefer-offline",
      "--loglevel=error",
      "--save-exact",
      tarball,
      `@trpc/client@${rootPkg.dependencies["@trpc/client"]}`,
      `@trpc/server@${rootPkg.dependencies["@trpc/server"]}`,
      `typescript@${rootPkg.devDependencies.typescript}`,
    ],
    project,
  );
  if (installed.code !== 0) throw new Error(`npm install in the client project failed:\n${installed.out}`);

  await cp(join(repoRoot, "examples/client/quickstart.ts"), join(project, "quickstart.ts"));
  await cp(join(repoRoot, "test/client/fixture/typed-calls.ts"), join(project, "typed-calls.ts"));
  await cp(join(repoRoot, "test/client/fixture/run.ts"), join(project, "run.ts"));
  const files = ["quickstart.ts", "typed-calls.ts"];
  await writeJson(join(project, "tsconfig.nodenext.json"), {
    compilerOptions: { ...compilerOptions, module: "NodeNext", moduleResolution: "NodeNext" },
    files,
  });
  await writeJson(join(project, "tsconfig.bundler.json"), {
    compilerOptions: { ...compilerOptions, module: "ESNext", moduleResolution: "Bundler" },
    files,
  });

  // A CommonJS project (what `npm init` + `tsc --init` give): the same typed calls must hold.
  await mkdir(join(project, "cjs"));
  await writeJson(join(project, "cjs/package.json"), { name: "client-fixture-cjs", private: true, type: "commonjs" });
  await writeFile(
    join(project, "cjs/calls.ts"),
    `import { createTRPCClient, httpBatchLink } from "@trpc/client";
import type { AppRouter, Product } from "@commerce-backend/client";
const api = createTRPCClient<AppRouter>({ links: [httpBatchLink({ url: "http://127.0.0.1:3000/trpc" })] });
export async function cheapest(): Promise<Product | undefined> {
  // @ts-expect-error sort is one of newest, price_asc, price_desc, name_asc
  await api.products.list.query({ sort: "cheapest" });
  return (await api.products.list.query({ sort: "price_asc" })).items[0];
}
`,
  );
  await writeJson(join(project, "cjs/tsconfig.json"), {
    compilerOptions: { ...compilerOptions, module: "NodeNext", moduleResolution: "NodeNext" },
    files: ["calls.ts"],
  });

  // The control: the same files against an AppRouter that is `any` must fail the check.
  await mkdir(join(project, "any"));
  await writeFile(
    join(project, "any/client.d.ts"),
    `export type AppRouter = any; export type Auth = any; export type OrderStatus = any; export type Page<T> = any;
export type Product = any; export type RouterInputs = any; export type RouterOutputs = any; export type User = any; export type Order = any;\n`,
  );
  await writeJson(join(project, "tsconfig.any.json"), {
    compilerOptions: {
      ...compilerOptions,
      module: "ESNext",
      moduleResolution: "Bundler",
      paths: { "@commerce-backend/client": ["./any/client.d.ts"] },
    },
    files,
  });

  const extracted = run(["tar", "xzf", tarball, "-O", "package/index.d.mts"], project);
  declarations = extracted.out;
}, SETUP_MS);

afterAll(async () => {
  await server?.stop();
  if (project) await rm(project, { recursive: true, force: true });
});

const tsc = (config: string) => run(["npx", "--no-install", "tsc", "-p", config], project, 120_000);

describe.skipIf(SKIP)("the packed tarball", () => {
  test("is named @commerce-backend/client, holds only declarations, and has @trpc/server as its only peer", async () => {
    const listing = run(["tar", "tzf", tarball], project).out.trim().split("\n").sort();
    expect(listing).toEqual(["package/README.md", "package/index.d.cts", "package/index.d.mts", "package/package.json"]);
    const pkg = JSON.parse(run(["tar", "xzf", tarball, "-O", "package/package.json"], project).out);
    expect(pkg.name).toBe("@commerce-backend/client");
    expect(pkg.dependencies).toBeUndefined();
    expect(Object.keys(pkg.peerDependencies)).toEqual(["@trpc/server"]);
    expect(pkg.main).toBeUndefined();
  });

  test("its declarations import only @trpc/server: no relative path, no Node type, no server module", () => {
    const imports = [...declarations.matchAll(/from\s+"([^"]+)"/g)].map((m) => m[1]);
    expect(imports).toEqual(["@trpc/server"]);
    expect(declarations).not.toMatch(/\b(process|Buffer|NodeJS)\b/);
    expect(declarations).not.toMatch(/drizzle|postgres|pglite|valibot/i);
    expect(declarations).not.toMatch(/\bany\b/);
  });

  test("exports AppRouter and every shape of the contract", () => {
    for (const name of [
      "AppRouter",
      "User",
      "Session",
      "Product",
      "OrderItem",
      "Order",
      "OrderStatus",
      "Page",
      "Auth",
      "AuditEvent",
      "RouterInputs",
      "RouterOutputs",
    ]) {
      expect(declarations).toMatch(new RegExp(`export (type|interface) ${name}\\b`));
    }
  });

  test("names the contract's shapes in the procedures' outputs", () => {
    expect(declarations).toContain("byId: Query<{ id: string }, Product>;");
    expect(declarations).toMatch(/status\?: OrderStatus \| undefined;[^\n]*\}, Page<Order>>;/);
    expect(declarations).toContain("cancel: Mutation<{ id: string }, Order>;");
  });
});

describe.skipIf(SKIP)("a client project type-checks (strict, skipLibCheck off, no @types/node)", () => {
  test("under moduleResolution NodeNext", () => {
    const r = tsc("tsconfig.nodenext.json");
    expect(r.out).toBe("");
    expect(r.code).toBe(0);
  }, 120_000);

  test("under moduleResolution Bundler", () => {
    const r = tsc("tsconfig.bundler.json");
    expect(r.out).toBe("");
    expect(r.code).toBe(0);
  }, 120_000);

  test("under NodeNext in a CommonJS project", () => {
    const r = tsc("cjs/tsconfig.json");
    expect(r.out).toBe("");
    expect(r.code).toBe(0);
  }, 120_000);

  test("control: against an AppRouter that is any, every wrong call goes unnoticed and the check fails", () => {
    const r = tsc("tsconfig.any.json");
    expect(r.code).not.toBe(0);
    expect(r.out).toContain("TS2578"); // Unused '@ts-expect-error' directive.
  }, 120_000);

  test("a wrong call in new code is reported with the field it concerns", async () => {
    await writeFile(
      join(project, "wrong.ts"),
      `import { createTRPCClient, httpBatchLink } from "@trpc/client";
import type { AppRouter } from "@commerce-backend/client";
const api = createTRPCClient<AppRouter>({ links: [httpBatchLink({ url: "http://127.0.0.1:3000/trpc" })] });
export const p = api.inventory.set.mutate({ productId: "x", stock: "7" });\n`,
    );
    await writeJson(join(project, "tsconfig.wrong.json"), {
      compilerOptions: { ...compilerOptions, module: "NodeNext", moduleResolution: "NodeNext" },
      files: ["wrong.ts"],
    });
    const r = tsc("tsconfig.wrong.json");
    expect(r.code).not.toBe(0);
    expect(r.out).toMatch(/wrong\.ts\(4,\d+\): error TS2322: Type 'string' is not assignable to type 'number'/);
  }, 120_000);
});

describe.skipIf(SKIP)("the client project against the real server", () => {
  test("an admin stocks a product, then the README's quickstart registers and orders it", async () => {
    server = await startServer({ env: { ADMIN_EMAIL: ADMIN.email, ADMIN_PASSWORD: ADMIN.password } });
    const r = run([process.execPath, "run.ts", server.baseUrl, ADMIN.email, ADMIN.password], project, 60_000);
    expect(r.code).toBe(0);
    const { stocked, order } = JSON.parse(r.out.trim().split("\n").at(-1)!);
    expect(stocked.price).toBe("19.90");
    expect(stocked.stock).toBe(5);
    expect(stocked.refused).toBe("BAD_REQUEST 400");
    expect(order.status).toBe("pending");
    expect(order.items).toHaveLength(1);
    expect(order.items[0].quantity).toBe(1);
    expect(order.total).toBe(order.items[0].price);
  }, 120_000);
});

// Runs in every pass (it reads two files): the README's snippet is the quickstart the tests above
// type-check and run, so the README cannot drift from what works.
describe("the README's typed-client snippet", () => {
  test("is examples/client/quickstart.ts, verbatim", async () => {
    const readme = await readFile(join(repoRoot, "README.md"), "utf8");
    const quickstart = await readFile(join(repoRoot, "examples/client/quickstart.ts"), "utf8");
    expect(readme).toContain(`\`\`\`ts\n${quickstart.trimEnd()}\n\`\`\``);
  });
});
