// Export order is the design's phase-1 creation order: users, products, orders, order_items, sessions.

export * from "./additions";
export * from "./orders";
export * from "./products";
export * from "./sessions";
export * from "./users";
