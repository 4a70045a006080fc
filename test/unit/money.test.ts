import { describe, expect, test } from "bun:test";
import * as v from "valibot";
import { money, normalizeMoney } from "../../src/lib/validation";

const price = money("price");

describe("money: accepted forms", () => {
  test.each([
    ["0", "0.00"],
    ["0.0", "0.00"],
    ["0.5", "0.50"],
    ["19", "19.00"],
    ["19.9", "19.90"],
    ["19.99", "19.99"],
    ["007.10", "7.10"],
    ["00000000", "0.00"],
    ["99999999.99", "99999999.99"],
  ])("%p → %p with exactly two fraction digits", (input, expected) => {
    const result = v.safeParse(price, input);
    expect(result.success).toBe(true);
    expect(result.output).toBe(expected);
    expect(normalizeMoney(input)).toBe(expected);
  });
});

describe("money: rejected forms", () => {
  const rejected: unknown[] = [
    "",
    " 1",
    "1 ",
    "1e5",
    "1E5",
    "-1",
    "+1",
    "-0",
    "0.001",
    "19.999",
    "100000000",
    "123456789",
    "1.",
    ".5",
    "1,50",
    "NaN",
    "Infinity",
    "0x10",
    "１２",
    "1.2.3",
    "12 34",
    "\u00001",
    19.99,
    0,
    Number.NaN,
    Infinity,
    null,
    true,
    {},
    ["1"],
  ];
  test.each(rejected.map((value) => [value]))("%p is refused, and the message does not echo it", (value) => {
    const result = v.safeParse(price, value);
    expect(result.success).toBe(false);
    const messages = result.issues?.map((issue) => issue.message) ?? [];
    expect(messages.length).toBeGreaterThan(0);
    for (const message of messages) {
      expect(message.startsWith("price ")).toBe(true);
      if (typeof value === "string" && value.length >= 2) expect(message).not.toContain(value);
    }
  });

  test("normalizeMoney refuses what the schema refuses", () => {
    expect(() => normalizeMoney("1e5")).toThrow();
    expect(() => normalizeMoney("0.001")).toThrow();
  });
});
