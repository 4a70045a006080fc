// Builds the Bun host into one file (dist/server.js) with Bun's bundler. tRPC is compiled from the
// TypeScript sources its package publishes (node_modules/@trpc/server/src) rather than taken from
// its dist, whose build turns every object spread into a slow helper (patches/README.md): with a
// modern target the spreads stay native. Packages with native code or data files stay external.
import { existsSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import type { BunPlugin } from "bun";

const trpcSrc = join(dirname(require.resolve("@trpc/server/package.json")), "src");

const trpcFromSource: BunPlugin = {
  name: "trpc-from-source",
  setup(build) {
    build.onResolve({ filter: /^@trpc\/server(\/.*)?$/ }, (args) => {
      const sub = args.path.slice("@trpc/server".length);
      const base = join(trpcSrc, sub);
      for (const candidate of [`${base}.ts`, join(base, "index.ts")]) {
        if (existsSync(candidate) && statSync(candidate).isFile()) return { path: candidate };
      }
      throw new Error(`build: no TypeScript source for ${args.path} under ${trpcSrc}`);
    });
  },
};

// BUILD_ENTRY: another entry built the same way (bench/layers.ts, to measure the build in-process).
const entry = process.env.BUILD_ENTRY ?? "src/server.ts";
const result = await Bun.build({
  entrypoints: [entry],
  // Two levels below the root, like src/db/migrate.ts, whose `../../drizzle` (from import.meta.url)
  // must still find the migrations.
  outdir: entry === "src/server.ts" ? "dist/bun" : "dist/bench",
  target: "bun",
  format: "esm",
  sourcemap: "linked",
  external: ["@node-rs/argon2", "@electric-sql/pglite", "postgres"],
  plugins: process.env.BUILD_TRPC_FROM_DIST ? [] : [trpcFromSource],
});
for (const message of result.logs) console.error(message);
if (!result.success) process.exit(1);
for (const output of result.outputs) console.log(`${output.path} ${(output.size / 1024).toFixed(0)} KiB`);
