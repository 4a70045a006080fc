import { describe, expect, test } from "bun:test";
import * as v from "valibot";
import { createUuidv7, uuidv7, uuidv7Time } from "../../src/lib/uuidv7";
import { uuid } from "../../src/lib/validation";

const bytesOf = (id: string) =>
  Uint8Array.from(
    id
      .replaceAll("-", "")
      .match(/../g)!
      .map((h) => Number.parseInt(h, 16)),
  );
// Fixed clocks run on generators of their own, never on the process's (other files share it).
const counterOf = (id: string) => Number.parseInt(id.slice(15, 18), 16);

describe("uuidv7: happy path", () => {
  test("is canonical lowercase UUID text with version 7 and the RFC 9562 variant", () => {
    for (let i = 0; i < 1000; i++) {
      const id = uuidv7();
      expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
      const b = bytesOf(id);
      expect(b[6] >> 4).toBe(7);
      expect(b[8] >> 6).toBe(0b10);
    }
  });

  test("the API's own uuid validation accepts it", () => {
    expect(v.parse(uuid("id"), uuidv7())).toMatch(/^[0-9a-f-]{36}$/);
  });

  test("carries the millisecond it was made in its first 48 bits", () => {
    const at = Date.UTC(2026, 11, 2, 0, 25, 0, 123);
    const gen = createUuidv7();
    const id = gen(at);
    expect(uuidv7Time(id)).toBe(at);
    expect(id.slice(0, 13)).toBe(`${at.toString(16).padStart(12, "0").slice(0, 8)}-${at.toString(16).padStart(12, "0").slice(8)}`);
  });

  test("ids of later milliseconds sort after earlier ones (as text and as Postgres compares uuids: bytewise)", () => {
    const base = Date.UTC(2027, 0, 1);
    const gen = createUuidv7();
    const ids = [0, 1, 2, 1000, 86_400_000].map((d) => gen(base + d));
    expect([...ids].sort()).toEqual(ids);
    expect(ids.map(uuidv7Time)).toEqual([0, 1, 2, 1000, 86_400_000].map((d) => base + d));
  });

  test("many ids in one millisecond still sort in creation order, and are all distinct", () => {
    const at = Date.UTC(2027, 1, 1);
    const gen = createUuidv7();
    const ids = Array.from({ length: 3000 }, () => gen(at));
    expect([...ids].sort()).toEqual(ids);
    expect(new Set(ids).size).toBe(ids.length);
  });

  test("a burst beyond the 12-bit counter borrows the next millisecond instead of wrapping", () => {
    const at = Date.UTC(2027, 2, 1);
    const gen = createUuidv7();
    const ids = Array.from({ length: 10_000 }, () => gen(at));
    expect([...ids].sort()).toEqual(ids);
    expect(new Set(ids).size).toBe(ids.length);
    const times = new Set(ids.map(uuidv7Time));
    expect(times.has(at)).toBe(true);
    expect(Math.max(...times) - at).toBeLessThanOrEqual(4);
    // A new millisecond re-seeds the counter with its top bit clear, so it has >= 2048 steps.
    expect(counterOf(gen(at + 10))).toBeLessThan(0x800);
  });

  test("100,000 ids at the real clock are unique and ordered", () => {
    const ids = Array.from({ length: 100_000 }, () => uuidv7());
    expect(new Set(ids).size).toBe(ids.length);
    expect(ids.every((id, i) => i === 0 || ids[i - 1] < id)).toBe(true);
  });
});

describe("uuidv7: error cases", () => {
  test("a clock that steps back never produces an id sorting before the previous one", () => {
    const at = Date.UTC(2027, 3, 1);
    const gen = createUuidv7();
    const first = gen(at);
    const stepped = gen(at - 5_000);
    expect(stepped > first).toBe(true);
    expect(uuidv7Time(stepped)).toBe(at);
  });
});

describe("uuidv7: security", () => {
  test("the 62 random bits of rand_b differ between ids of one millisecond (not a counter)", () => {
    const at = Date.UTC(2027, 4, 1);
    const gen = createUuidv7();
    const tails = Array.from({ length: 2000 }, () => gen(at).slice(19));
    expect(new Set(tails).size).toBe(tails.length);
    // Every bit position of the last 48 bits is set in some ids and clear in others.
    const ones = new Array(48).fill(0);
    for (const t of tails) {
      const n = BigInt(`0x${t.slice(5)}`);
      for (let bit = 0; bit < 48; bit++) if ((n >> BigInt(bit)) & 1n) ones[bit]++;
    }
    for (const count of ones) {
      expect(count).toBeGreaterThan(800);
      expect(count).toBeLessThan(1200);
    }
  });
});
