import { type OrderStatus, orderStatuses } from "../db/schema";

/**
 * The one table of legal status moves. Everything else (including staying put) is illegal.
 * The service turns a target into the list of states allowed to reach it and puts that list in
 * the UPDATE's WHERE clause, so the check and the write are one atomic step in the database.
 */
export const ORDER_TRANSITIONS: Readonly<Record<OrderStatus, readonly OrderStatus[]>> = {
  pending: ["processing", "cancelled"],
  processing: ["shipped", "cancelled"],
  shipped: ["delivered"],
  delivered: [],
  cancelled: [],
};

export function canTransition(from: OrderStatus, to: OrderStatus): boolean {
  return ORDER_TRANSITIONS[from].includes(to);
}

/** The states an order may be in for a move to `target` to be legal (empty for `pending`). */
export function statusesThatMayMoveTo(target: OrderStatus): OrderStatus[] {
  return orderStatuses.filter((from) => canTransition(from, target));
}
