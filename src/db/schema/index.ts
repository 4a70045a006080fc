// Export order is the design's phase-1 creation order: users, products, orders, order_items, sessions.
export * from "./users";
export * from "./products";
export * from "./orders";
export * from "./sessions";
export * from "./additions";
