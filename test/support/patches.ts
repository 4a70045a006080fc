// Helpers for the tests of patches/ (patches/README.md). They find a patched function through the
// package's own module graph (its published entry points and the files those import), never by a
// dist file name, which is a content hash of the build and changes with every release.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const require = createRequire(import.meta.url);

// Relative specifiers of static imports, re-exports and requires in a built file.
const RELATIVE_IMPORT = /(?:\bfrom\s*|\bimport\s*\(?\s*|\brequire\s*\(\s*)["'](\.{1,2}\/[^"']+)["']/g;

/** Every file reachable from `entry` through relative imports, the entry first. */
function moduleGraph(entry: string): string[] {
  const seen = new Set<string>();
  const queue = [entry];
  while (queue.length > 0) {
    const file = queue.shift()!;
    if (seen.has(file)) continue;
    seen.add(file);
    for (const [, spec] of readFileSync(file, "utf8").matchAll(RELATIVE_IMPORT)) {
      const target = resolve(dirname(file), spec);
      try {
        queue.push(require.resolve(target));
      } catch {
        // A specifier the regex caught inside a string or comment: not a module.
      }
    }
  }
  return [...seen];
}

export interface Located {
  /** The ES module build's file that defines the function, if any. */
  esm: string | undefined;
  /** The CommonJS build's file that defines it, if any. */
  cjs: string | undefined;
}

/**
 * The files of both builds of `specifier` (a package or a subpath export) that define the
 * function `name` (matched as `function name(`), found by walking from the package's entry.
 */
export function locateDefinition(specifier: string, name: string): Located {
  const defines = new RegExp(`\\bfunction ${name}\\(`);
  const find = (entry: string) => moduleGraph(entry).find((f) => defines.test(readFileSync(f, "utf8")));
  return { esm: find(fileURLToPath(import.meta.resolve(specifier))), cjs: find(require.resolve(specifier)) };
}

/** Whether both builds carry the project's patch, recognised by its comment. */
export function isPatched(located: Located): boolean {
  return [located.esm, located.cjs].every((f) => f !== undefined && readFileSync(f, "utf8").includes("Patched by this project"));
}

/**
 * What the run expects: `EXPECT_PATCHES=applied` (the normal CI run) or `absent` (the run with
 * `npx patch-package --reverse`). Unset, a test of a patch that is not applied is skipped and
 * says why, so a bumped dependency costs speed, not a red suite.
 */
export const EXPECT_PATCHES = ((): "applied" | "absent" | undefined => {
  const v = process.env.EXPECT_PATCHES;
  if (v === undefined || v === "") return undefined;
  if (v === "applied" || v === "absent") return v;
  throw new Error("EXPECT_PATCHES must be applied or absent");
})();

/** A test-name suffix: empty when the test runs, the reason when it is skipped. */
export const skipNote = (runs: boolean, reason: string) => (runs ? "" : ` (skipped: ${reason})`);
