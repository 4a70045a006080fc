// Export order is the design's phase-1 creation order: users, products, orders, order_items, sessions.

export * from "./accounts";
export * from "./backup-deletions";
export * from "./job-runs";
// Tables added to the design, each because correctness or a query needs it.
export * from "./login-throttle";
export * from "./order-idempotency-keys";
export * from "./orders";
export * from "./products";
export * from "./sessions";
export * from "./users";
