// The SQL functions' text in the migrations must be what src/db/functions.ts writes from the
// Drizzle schema, so a renamed table or column cannot leave a function naming the old one.
import { describe, expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { SQL_FUNCTIONS } from "../../src/db/functions";

const DRIZZLE = join(import.meta.dir, "../../drizzle");
const migrations = readdirSync(DRIZZLE)
  .filter((f) => f.endsWith(".sql"))
  .sort()
  .map((f) => ({ file: f, text: readFileSync(join(DRIZZLE, f), "utf8") }));

/** The newest migration that (re)defines the function, and the definition's text in it. */
function newestDefinition(name: string): { file: string; definition: string } | undefined {
  const head = new RegExp(`CREATE (OR REPLACE )?FUNCTION "public"\\."${name}"\\(`);
  for (const m of [...migrations].reverse()) {
    const start = m.text.search(head);
    if (start < 0) continue;
    // The body ends at the first `$$;` after its opening `AS $$`.
    const end = m.text.indexOf("$$;", m.text.indexOf("AS $$", start) + 5) + 3;
    return { file: m.file, definition: m.text.slice(start, end) };
  }
  return undefined;
}

describe("SQL functions follow the schema", () => {
  for (const [name, source] of Object.entries(SQL_FUNCTIONS)) {
    test(`happy: the newest migration defining ${name} holds exactly src/db/functions.ts's text`, () => {
      const found = newestDefinition(name);
      expect(found?.file).toBeDefined();
      // A mismatch means the schema changed under the function: add a migration with
      // `CREATE OR REPLACE FUNCTION` (npx drizzle-kit generate --custom) holding the new text.
      expect(found!.definition.replace(/^CREATE OR REPLACE/, "CREATE")).toBe(source);
    });
  }
});
