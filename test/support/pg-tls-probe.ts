// Run by test/integration/postgres-tls.test.ts under Bun and under Deno: opens the app's own
// postgres.js client (src/db/client.ts) on the URL in PROBE_DATABASE_URL, runs a few queries on
// parallel connections and prints one JSON line saying whether each connection was encrypted.
import { sql } from "drizzle-orm";
import { createPostgresDatabase, queryRows } from "../../src/db/client";

const env = (globalThis as { process?: { env: Record<string, string | undefined> } }).process?.env ?? {};
const url = env.PROBE_DATABASE_URL;
if (!url) throw new Error("PROBE_DATABASE_URL is required");
const connections = Number(env.PROBE_CONNECTIONS ?? "4");

const handle = await createPostgresDatabase({ url, poolMax: connections, prepare: false });
try {
  // pg_sleep keeps each query on its own connection, so every one of them does a TLS handshake.
  const rows = await Promise.all(
    Array.from({ length: connections }, () =>
      queryRows<{ ssl: boolean; version: string | null; pid: number }>(
        handle.db,
        sql`select s.ssl, s.version, s.pid from pg_stat_ssl s, pg_sleep(0.05) where s.pid = pg_backend_pid()`,
      ),
    ),
  );
  const seen = rows.map((r) => r[0]);
  console.log(
    JSON.stringify({
      ok: true,
      connections: new Set(seen.map((r) => r.pid)).size,
      ssl: seen.every((r) => r.ssl),
      version: seen[0]?.version ?? null,
    }),
  );
} catch (error) {
  // Drizzle wraps the driver's error (the TLS failure) as its cause.
  const e = ((error as { cause?: unknown }).cause ?? error) as { message?: string; code?: string };
  console.log(JSON.stringify({ ok: false, error: e.message ?? String(e), code: e.code ?? null }));
} finally {
  await handle.close().catch(() => {});
}
