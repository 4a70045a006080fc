// patches/@trpc+server+11.25.2.patch replaces the object-spread helper tRPC's build compiled in
// (see patches/README.md). These tests hold the replacement to what native spread does, so a
// difference in behaviour cannot hide behind the speed-up, and fail if the patch is not applied.
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";

const require = createRequire(import.meta.url);
const distDir = join(dirname(require.resolve("@trpc/server/package.json")), "dist");
const esm = join(distDir, "getErrorShape-B5jPKHJ3.mjs");
const cjs = join(distDir, "getErrorShape-BAuHhNuh.cjs");

// The helper is exported under a minified name; find it by identity rather than guessing the letter.
const mod = (await import(esm)) as Record<string, unknown>;
const spread = Object.values(mod).find((f) => typeof f === "function" && f.name === "_objectSpread2") as (
  target: object,
  ...sources: unknown[]
) => Record<PropertyKey, unknown>;

describe("the patched tRPC spread helper", () => {
  test("is installed in both module formats", () => {
    expect(spread).toBeFunction();
    for (const file of [esm, cjs]) expect(readFileSync(file, "utf8")).toContain("function _assignOwn(e, key, value)");
  });

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
    expect(Object.getOwnPropertyDescriptor(patched, "value")).toEqual({ value: 42, writable: true, enumerable: true, configurable: true });
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
});
