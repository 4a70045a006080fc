import { describe, expect, test } from "bun:test";
import * as v from "valibot";
import { boundedInt, cursor, email, limit, money, normalizeMoney, optionalInput, password, uuid } from "../../src/lib/validation";
import { describeIssues } from "../../src/trpc/errors";

/** The client-facing message for a rejected input, built the way the error formatter builds it. */
function messageFor(schema: v.GenericSchema, input: unknown): string {
  const result = v.safeParse(schema, input);
  if (result.success) throw new Error("the schema accepted an input it should refuse");
  return describeIssues(result.issues as never);
}

describe("validation: happy path", () => {
  test("money is normalised to two fraction digits", () => {
    const schema = money("price");
    expect(v.parse(schema, "19.99")).toBe("19.99");
    expect(v.parse(schema, "19.9")).toBe("19.90");
    expect(v.parse(schema, "19")).toBe("19.00");
    expect(v.parse(schema, "0")).toBe("0.00");
    expect(v.parse(schema, "007.5")).toBe("7.50");
    expect(v.parse(schema, "99999999.99")).toBe("99999999.99");
    expect(normalizeMoney("0.5")).toBe("0.50");
  });

  test("email is trimmed and lower-cased", () => {
    expect(v.parse(email, "  Ada@Example.COM ")).toBe("ada@example.com");
  });

  test("uuid is lower-cased; limit defaults to 20; an all-optional input may be omitted", () => {
    const id = crypto.randomUUID();
    expect(v.parse(uuid("id"), id.toUpperCase())).toBe(id);
    expect(v.parse(v.object({ limit }), {})).toEqual({ limit: 20 });
    expect(v.parse(optionalInput({ limit, cursor }), undefined)).toEqual({ limit: 20 });
    expect(v.parse(password(), "12345678")).toBe("12345678");
    expect(v.parse(boundedInt("quantity", 1, 1000), 1000)).toBe(1000);
  });
});

describe("validation: errors name the field", () => {
  test("money refuses floats, exponents, negatives, three decimals and values above 99999999.99", () => {
    for (const bad of [19.99, "1e3", "-1", "1.999", "100000000", "", " 1", "1,00", "NaN"]) {
      expect(messageFor(v.object({ price: money("price") }), { price: bad })).toContain("price");
    }
  });

  test("every schema's message starts from its field", () => {
    expect(messageFor(v.object({ email }), { email: "nope" })).toContain("email");
    expect(messageFor(v.object({ email }), { email: `${"a".repeat(250)}@example.com` })).toContain("email");
    expect(messageFor(v.object({ password: password() }), { password: "short" })).toContain("password");
    expect(messageFor(v.object({ password: password() }), { password: "x".repeat(129) })).toContain("password");
    expect(messageFor(v.object({ sessionId: uuid("sessionId") }), { sessionId: "123" })).toContain("sessionId");
    expect(messageFor(v.object({ limit }), { limit: 0 })).toContain("limit");
    expect(messageFor(v.object({ limit }), { limit: 101 })).toContain("limit");
    expect(messageFor(v.object({ limit }), { limit: 1.5 })).toContain("limit");
    expect(messageFor(v.object({ cursor }), { cursor: "x".repeat(2000) })).toContain("cursor");
    const items = v.object({ items: v.array(v.object({ quantity: boundedInt("quantity", 1, 1000) })) });
    expect(messageFor(items, { items: [{ quantity: 1 }, { quantity: 0 }] })).toContain("items.1.quantity");
  });
});

describe("validation: security", () => {
  test("no message echoes the rejected value", () => {
    const secret = "hunter2";
    const cases: Array<[v.GenericSchema, unknown]> = [
      [v.object({ password: password() }), { password: secret }],
      [v.object({ password: password() }), { password: `${secret}${"x".repeat(130)}` }],
      [v.object({ email }), { email: `${secret}-not-an-email` }],
      [v.object({ sessionId: uuid("sessionId") }), { sessionId: secret }],
      [v.object({ price: money("price") }), { price: `${secret}.00` }],
      // Valibot's own default messages (no custom message on the schema) would quote the value.
      [v.object({ status: v.picklist(["pending", "shipped"]) }), { status: secret }],
      [v.object({ flag: v.boolean() }), { flag: secret }],
      [v.object({ n: v.pipe(v.string(), v.maxLength(3)) }), { n: secret }],
    ];
    for (const [schema, input] of cases) expect(messageFor(schema, input)).not.toContain(secret);
  });
});
