// Summarises a Bun/V8 .cpuprofile (npm run bench -- … --profile writes one for the service) by
// sample count: where the service's CPU goes, grouped by package, and the top functions.
// Samples are counted rather than timed, because the profile's time deltas fold idle gaps into
// whichever frame was sampled next.
//   npm run bench:profile-summary -- <run folder>/profile/CPU….cpuprofile
import { readFileSync } from "node:fs";

interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

const file = process.argv[2];
if (!file) {
  console.error("usage: npm run bench:profile-summary -- <file.cpuprofile>");
  process.exit(2);
}
const profile = JSON.parse(readFileSync(file, "utf8")) as { nodes: Node[]; samples: number[] };
const byId = new Map(profile.nodes.map((n) => [n.id, n]));
const parent = new Map<number, number>();
for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);

function groupOf(url: string, fn: string): string {
  if (!url) return fn === "(idle)" || fn === "(program)" || fn === "(garbage collector)" ? fn : "native/runtime";
  const m = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (m) return m[1];
  if (url.includes("/src/")) return `src/${url.split("/src/")[1]}`;
  if (url.startsWith("node:") || url.startsWith("internal:")) return "bun node-compat (net, streams)";
  return url;
}

const self = new Map<string, number>();
const groups = new Map<string, number>();
// Inclusive counts per package: a sample counts once for every package on its stack.
const inclusive = new Map<string, number>();
let total = 0;
for (const id of profile.samples) {
  const n = byId.get(id);
  if (!n) continue;
  const { functionName, url, lineNumber } = n.callFrame;
  if (functionName === "(idle)" || functionName === "(root)") continue;
  total++;
  const key = `${functionName || "(anonymous)"} ${url ? `${url.replace(/.*node_modules\//, "").replace(/.*\/work\/main\//, "")}:${lineNumber + 1}` : "[native]"}`;
  self.set(key, (self.get(key) ?? 0) + 1);
  const g = groupOf(url, functionName);
  groups.set(g, (groups.get(g) ?? 0) + 1);
  const seen = new Set<string>();
  for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
    const f = byId.get(cur)!.callFrame;
    if (!f.url) continue;
    const pg = groupOf(f.url, f.functionName).replace(/^src\/.*/, "src (the service's own code)");
    if (!seen.has(pg)) {
      seen.add(pg);
      inclusive.set(pg, (inclusive.get(pg) ?? 0) + 1);
    }
  }
}
const pct = (n: number) => `${((100 * n) / Math.max(1, total)).toFixed(1)} %`;
console.log(`${total} busy samples`);
console.log("\nself samples by package:");
for (const [g, n] of [...groups].sort((a, b) => b[1] - a[1]).slice(0, 15)) console.log(`  ${pct(n).padStart(7)}  ${g}`);
console.log("\ninclusive (on the stack) by package:");
for (const [g, n] of [...inclusive].sort((a, b) => b[1] - a[1]).slice(0, 15)) console.log(`  ${pct(n).padStart(7)}  ${g}`);
console.log("\ntop functions (self):");
for (const [k, n] of [...self].sort((a, b) => b[1] - a[1]).slice(0, 25)) console.log(`  ${pct(n).padStart(7)}  ${k}`);
