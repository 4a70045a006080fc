import { describe, expect, test } from "bun:test";
import * as v from "valibot";
import { DomainError } from "../../src/errors";
import { calendarTimestampText, decodeCursor, encodeCursor, timestampText, uuidText } from "../../src/lib/cursor";
import { decodeProductCursor, encodeProductCursor, escapeLikePattern, type ProductSort, productSorts } from "../../src/services/products";

const ID = "0190c6a2-7f3e-7a11-8b22-3c4d5e6f7a8b";
const row = { id: ID, createdAt: "2026-11-24 23:17:00.123456", price: "19.90", name: 'Tee "quoted" ✓ 東京' };

function kindOf(fn: () => unknown): string {
  try {
    fn();
    return "no error";
  } catch (error) {
    return error instanceof DomainError ? error.kind : "other error";
  }
}

describe("cursor: round trip", () => {
  test("encode then decode gives the tuple back, in an URL-safe opaque string", () => {
    const schema = v.strictTuple([v.literal("x"), timestampText, uuidText]);
    const cursor = encodeCursor(["x", row.createdAt, ID]);
    expect(cursor).toMatch(/^[A-Za-z0-9_-]+$/);
    expect(cursor).not.toContain(ID);
    expect(decodeCursor(cursor, schema)).toEqual(["x", row.createdAt, ID]);
  });

  test.each(productSorts.map((s) => [s]))("a %s cursor decodes for its own sort to the row's key", (sort) => {
    const cursor = encodeProductCursor(sort, row);
    const [decodedSort, key, id] = decodeProductCursor(cursor, sort);
    expect(decodedSort).toBe(sort);
    expect(id).toBe(ID);
    const expected = { newest: row.createdAt, price_asc: row.price, price_desc: row.price, name_asc: row.name }[sort];
    expect(key).toBe(expected);
  });

  test("the newest cursor keeps the microseconds, not the millisecond ISO form", () => {
    const [, key] = decodeProductCursor(encodeProductCursor("newest", row), "newest");
    expect(key).toBe("2026-11-24 23:17:00.123456");
  });
});

describe("cursor: refused", () => {
  test.each(productSorts.flatMap((issued) => productSorts.filter((s) => s !== issued).map((used) => [issued, used])))(
    "a %s cursor used for %s is BAD_REQUEST",
    (issued, used) => {
      const cursor = encodeProductCursor(issued as ProductSort, row);
      expect(kindOf(() => decodeProductCursor(cursor, used as ProductSort))).toBe("BAD_REQUEST");
    },
  );

  const b64 = (value: unknown) => Buffer.from(typeof value === "string" ? value : JSON.stringify(value)).toString("base64url");
  const garbage: Array<[string, string]> = [
    ["empty", ""],
    ["not base64", "!!!***"],
    ["base64 of not JSON", b64("not json {")],
    ["JSON object instead of tuple", b64({ sort: "newest" })],
    ["extra element", b64(["newest", row.createdAt, ID, 1])],
    ["missing id", b64(["newest", row.createdAt])],
    ["bad uuid", b64(["newest", row.createdAt, "1 or 1=1"])],
    ["unknown sort", b64(["random", row.createdAt, ID])],
    ["month 13", b64(["newest", "2026-13-01 00:00:00", ID])],
    ["February 31", b64(["newest", "2026-02-31 00:00:00", ID])],
    ["hour 25", b64(["newest", "2026-01-01 25:00:00", ID])],
    ["year 0", b64(["newest", "0000-01-01 00:00:00", ID])],
    ["timestamp with SQL", b64(["newest", "2026-01-01 00:00:00'; drop table products; --", ID])],
    ["price with exponent", b64(["price_asc", "1e5", ID])],
    ["price as a number", b64(["price_asc", 19.9, ID])],
    ["price too large", b64(["price_desc", "123456789.00", ID])],
    ["negative price", b64(["price_asc", "-1.00", ID])],
    ["name too long", b64(["name_asc", "x".repeat(256), ID])],
    ["name with NUL", b64(["name_asc", "a\u0000b", ID])],
    ["null", b64(null)],
  ];
  test.each(garbage)("%s → BAD_REQUEST", (_label, cursor) => {
    const sort = (["newest", "price_asc", "price_desc", "name_asc"] as const).find((s) => {
      try {
        return JSON.parse(Buffer.from(cursor, "base64url").toString())[0] === s;
      } catch {
        return false;
      }
    });
    expect(kindOf(() => decodeProductCursor(cursor, sort ?? "newest"))).toBe("BAD_REQUEST");
  });

  test("flipping any single character of a cursor never yields anything but the same position or BAD_REQUEST", () => {
    const cursor = encodeProductCursor("price_asc", row);
    const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    for (let i = 0; i < cursor.length; i++) {
      for (const c of alphabet) {
        if (c === cursor[i]) continue;
        const tampered = cursor.slice(0, i) + c + cursor.slice(i + 1);
        try {
          const [sort, price, id] = decodeProductCursor(tampered, "price_asc");
          // A tamper that still decodes must still be a well-formed position.
          expect(sort).toBe("price_asc");
          expect(price).toMatch(/^\d{1,8}\.\d{2}$/);
          expect(id).toMatch(/^[0-9a-f-]{36}$/i);
        } catch (error) {
          expect(error).toBeInstanceOf(DomainError);
          expect((error as DomainError).kind).toBe("BAD_REQUEST");
        }
      }
    }
  });
});

describe("calendarTimestampText", () => {
  test.each(["2026-11-24 23:17:00", "2026-11-24 23:17:00.1", "2026-11-24 23:17:00.123456", "2024-02-29 00:00:00", "2026-11-24T23:17:00.5"])(
    "accepts %p",
    (text) => expect(v.is(calendarTimestampText, text)).toBe(true),
  );
  test.each(["2025-02-29 00:00:00", "2026-00-10 00:00:00", "2026-11-24 23:60:00", "2026-11-24 23:17:00.1234567", "2026-11-24", "tomorrow"])(
    "refuses %p",
    (text) => expect(v.is(calendarTimestampText, text)).toBe(false),
  );
});

describe("escapeLikePattern", () => {
  test("%, _ and the backslash become literal; other characters are untouched", () => {
    expect(escapeLikePattern("50%_off\\now")).toBe("50\\%\\_off\\\\now");
    expect(escapeLikePattern("plain text")).toBe("plain text");
  });
});
