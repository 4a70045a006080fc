import { defineConfig } from "drizzle-kit";

export default defineConfig({
  dialect: "postgresql",
  schema: "./src/db/schema/index.ts",
  out: "./drizzle",
  // Only `generate` needs this file; migrations are applied by `npm run db:migrate`,
  // which works on both PGlite and Postgres.
  dbCredentials: { url: process.env.DATABASE_URL ?? "postgres://localhost/unused" },
});
