// patches/@trpc+server+11.25.2.patch replaces the object-spread helper tRPC's build compiled in
// (see patches/README.md). These tests hold the installed helper, patched or published, to what
// native spread does, so a difference in behaviour cannot hide behind the speed-up. The helper is
// found through the package's module graph; if the patch is not applied (reverted, or no longer
// applying after an upgrade) the installation test is skipped and says why, and EXPECT_PATCHES
// (set by .ci/run) turns that into a failure when the run expects the other state.
import { describe, expect, test } from "bun:test";
import { createRequire } from "node:module";
import { EXPECT_PATCHES, isPatched, locateDefinition, skipNote } from "../support/patches";

const require = createRequire(import.meta.url);
const located = locateDefinition("@trpc/server", "_objectSpread2");
const patched = isPatched(located);
const NO_HELPER =
  "this @trpc/server build has no _objectSpread2 helper (object spread is native): the patch can be dropped (patches/README.md)";
const NOT_APPLIED = "patches/@trpc+server+*.patch is not applied: reverted, or it no longer applies to this version (patches/README.md)";

// The helper is exported under a minified name; find it by identity rather than guessing the letter.
const mod = located.esm ? ((await import(located.esm)) as Record<string, unknown>) : {};
const spread = Object.values(mod).find((f) => typeof f === "function" && f.name === "_objectSpread2") as (
  target: object,
  ...sources: unknown[]
) => Record<PropertyKey, unknown>;

describe("the tRPC patch", () => {
  test.skipIf(!patched)(`is installed in both module formats${skipNote(patched, located.esm ? NOT_APPLIED : NO_HELPER)}`, () => {
    // The functions the modules export, not just the files' text, are the replacement.
    const cjs = Object.values(require(located.cjs!) as Record<string, unknown>).find(
      (f) => typeof f === "function" && f.name === "_objectSpread2",
    );
    for (const helper of [spread, cjs]) expect(String(helper)).toContain("_assignOwn(");
  });

  test.skipIf(EXPECT_PATCHES === undefined)(
    `is in the state this run expects (EXPECT_PATCHES=${EXPECT_PATCHES ?? ""})${skipNote(EXPECT_PATCHES !== undefined, "EXPECT_PATCHES is unset")}`,
    () => {
      expect(patched ? "applied" : "absent").toBe(EXPECT_PATCHES!);
    },
  );
});

describe.skipIf(!spread)(
  `tRPC's spread helper (${patched ? "patched" : "as published"}) against native spread${skipNote(Boolean(spread), NO_HELPER)}`,
  () => {
    // `{ ...a, ...b }` compiles to spread(spread({}, a), b): sources at odd positions.
    test("copies own enumerable string and symbol keys like native spread", () => {
      const visible = Symbol("visible");
      const hidden = Symbol("hidden");
      const a: Record<PropertyKey, unknown> = { x: 1, y: { deep: true }, [visible]: "s" };
      Object.defineProperty(a, hidden, { value: "h", enumerable: false });
      Object.defineProperty(a, "quiet", { value: "q", enumerable: false });
      const b = { y: 2, z: undefined };
      const patched = spread(spread({}, a), b);
      const native = { ...a, ...b };
      expect(patched).toEqual(native);
      expect(Reflect.ownKeys(patched)).toEqual(Reflect.ownKeys(native));
      expect(patched[visible]).toBe("s");
      expect(hidden in patched).toBe(false);
      expect("quiet" in patched).toBe(false);
    });

    test("reads getters of a source once and stores their values", () => {
      let reads = 0;
      const source = {
        get value() {
          reads++;
          return 42;
        },
      };
      const patched = spread({}, source);
      expect(reads).toBe(1);
      expect(Object.getOwnPropertyDescriptor(patched, "value")).toEqual({
        value: 42,
        writable: true,
        enumerable: true,
        configurable: true,
      });
    });

    test("defines keys the target inherits instead of calling inherited setters", () => {
      const source = JSON.parse('{"__proto__": {"polluted": true}, "toString": "own"}') as Record<string, unknown>;
      const patched = spread({}, source);
      expect(Object.getPrototypeOf(patched)).toBe(Object.prototype);
      expect(Object.hasOwn(patched, "__proto__")).toBe(true);
      expect((patched as { polluted?: unknown }).polluted).toBeUndefined();
      expect(patched.toString as unknown).toBe("own");
      expect(patched).toEqual({ ...source });
    });

    test("skips null and undefined and spreads strings by index", () => {
      expect(spread({ a: 1 }, null, {}, undefined)).toEqual({ a: 1 });
      expect(spread({}, "ab")).toEqual({ ...Object("ab") });
    });

    // Even positions hold the literal part of `{ ...a, k: v }`: its properties are defined as written.
    test("keeps accessors of the literal part as accessors", () => {
      const literal = {
        get computed() {
          return "lazy";
        },
      };
      const patched = spread(spread({}, { a: 1 }), {}, literal);
      expect(typeof Object.getOwnPropertyDescriptor(patched, "computed")?.get).toBe("function");
      expect(patched.computed).toBe("lazy");
    });
  },
);
