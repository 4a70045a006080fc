// The per-request CPU of the observability layers with the database and the network taken out:
// createApp().fetch() for products.byId in-process over a stand-in postgres.js client (as in
// bench/layers.ts), once bare and once per configuration, interleaved over rounds.
//
//   bun bench/observability-layers.ts [calls per round] [rounds]
import { drizzle } from "drizzle-orm/postgres-js";
import { createApp } from "../src/app";
import type { Database } from "../src/db/client";
import * as schema from "../src/db/schema";
import { parseEnv } from "../src/env";
import { createLogger } from "../src/lib/logger";
import { createTokenConfig } from "../src/lib/tokens";
import { createObservability } from "../src/observability";
import { observePostgresClient } from "../src/observability/statements";

const N = Number(process.argv[2] ?? 10_000);
const ROUNDS = Number(process.argv[3] ?? 5);
const id = "0190a5e4-0000-4000-8000-000000000001";
const row = [id, "Rustic Cotton Chair 1", "Benchmark product 1", "19.99", 100, "2026-11-24 23:17:00.123456", "2026-11-24 23:17:00.123456"];

function fakeClient() {
  return {
    options: { parsers: {}, serializers: {} },
    unsafe() {
      const p = Promise.resolve([{}]) as Promise<unknown> & { values(): Promise<unknown>; count: number };
      p.values = () => Promise.resolve(Object.assign([row.slice()], { count: 1 }));
      return p;
    },
  };
}

const configs = {
  off: { METRICS: "false", LOG_SLOW_QUERY_MS: "0" },
  "metrics, no slow log": { METRICS: "true", LOG_SLOW_QUERY_MS: "0" },
  "metrics + slow log (default)": { METRICS: "true" },
} as const;
type Name = keyof typeof configs;

function appFor(name: Name) {
  const env = parseEnv({ JWT_SECRET: "layers-secret-that-is-at-least-32-bytes", LOG_LEVEL: "warn", ...configs[name] });
  const logger = createLogger("warn");
  const observability = name === "off" ? undefined : createObservability(env, { logger, poolMax: 10, processMetrics: false });
  const client = observability?.statements ? observePostgresClient(fakeClient() as never, observability.statements) : fakeClient();
  const db = drizzle(client as never, { schema }) as unknown as Database;
  return createApp({
    db,
    readDb: db,
    env,
    logger,
    tokens: createTokenConfig(env.JWT_SECRET!, 3600),
    clock: () => new Date(),
    observability,
  });
}

const url = `http://bench/trpc/products.byId?input=${encodeURIComponent(JSON.stringify({ id }))}`;
const apps = Object.fromEntries((Object.keys(configs) as Name[]).map((n) => [n, appFor(n)])) as Record<Name, ReturnType<typeof createApp>>;
const call = (n: Name) => async () => {
  const res = await apps[n].fetch(new Request(url));
  if (res.status !== 200) throw new Error(`${n}: ${res.status} ${await res.text()}`);
  await res.text();
};

async function cpuPerCall(f: () => Promise<void>): Promise<number> {
  const c = process.cpuUsage();
  for (let i = 0; i < N; i++) await f();
  const d = process.cpuUsage(c);
  return (d.user + d.system) / N;
}

for (const n of Object.keys(configs) as Name[]) for (let i = 0; i < 2000; i++) await call(n)();
const names = Object.keys(configs) as Name[];
const per: Record<string, number[]> = {};
for (let r = 0; r < ROUNDS; r++) {
  const order = names.map((_, k) => names[(k + r) % names.length]);
  for (const n of order) {
    per[n] ??= [];
    per[n].push(await cpuPerCall(call(n)));
  }
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
console.log(`products.byId in-process, ${N} calls × ${ROUNDS} rounds, CPU µs per call (median; rounds):`);
for (const n of names) {
  const m = median(per[n]);
  const ratios = per[n].map((v, k) => v / per.off[k] - 1);
  console.log(
    `${m.toFixed(1).padStart(7)} µs  ${n.padEnd(30)} vs off ${n === "off" ? "—" : `${(median(ratios) * 100).toFixed(1)} %`}  [${per[n].map((v) => v.toFixed(1)).join(", ")}]`,
  );
}
