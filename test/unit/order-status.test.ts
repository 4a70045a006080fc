import { describe, expect, test } from "bun:test";
import { orderStatuses } from "../../src/db/schema";
import { canTransition, ORDER_TRANSITIONS, statusesThatMayMoveTo } from "../../src/services/order-status";

describe("order status machine", () => {
  test("the legal moves are exactly the specification's", () => {
    const legal = orderStatuses.flatMap((from) => orderStatuses.filter((to) => canTransition(from, to)).map((to) => `${from}->${to}`));
    expect(legal.sort()).toEqual(
      ["pending->processing", "processing->shipped", "shipped->delivered", "pending->cancelled", "processing->cancelled"].sort(),
    );
  });

  test("no state may move to itself, and delivered and cancelled are final", () => {
    for (const s of orderStatuses) expect(canTransition(s, s)).toBe(false);
    expect(ORDER_TRANSITIONS.delivered).toEqual([]);
    expect(ORDER_TRANSITIONS.cancelled).toEqual([]);
  });

  test("the WHERE-clause sources are the inverse of the table", () => {
    expect(statusesThatMayMoveTo("pending")).toEqual([]);
    expect(statusesThatMayMoveTo("processing")).toEqual(["pending"]);
    expect(statusesThatMayMoveTo("shipped")).toEqual(["processing"]);
    expect(statusesThatMayMoveTo("delivered")).toEqual(["shipped"]);
    expect(statusesThatMayMoveTo("cancelled")).toEqual(["pending", "processing"]);
  });
});
