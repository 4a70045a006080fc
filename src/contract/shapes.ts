// The contract's output shapes as valibot schemas, declared once: the OpenAPI document
// (src/openapi.ts) takes every response schema from here. Each schema is checked at compile time
// against its plain type in ./types, so the package's types and the document cannot drift apart.
import * as v from "valibot";
import { orderStatuses } from "../db/schema/orders";
import { userRoles } from "../db/schema/users";
import type * as T from "./types";

const id = v.pipe(v.string(), v.uuid());
const timestamp = v.pipe(v.string(), v.isoTimestamp());
const money = v.pipe(v.string(), v.regex(/^\d{1,8}\.\d{2}$/), v.description('A decimal string with two fraction digits, such as "19.99"'));
const nullableString = v.nullable(v.string());

export const UserSchema = v.object({
  id,
  email: v.pipe(v.string(), v.email()),
  role: v.picklist(userRoles),
  emailVerified: v.boolean(),
  disabled: v.boolean(),
  createdAt: timestamp,
  updatedAt: timestamp,
});

export const SessionSchema = v.object({ id, createdAt: timestamp, expiresAt: timestamp, current: v.boolean() });

export const ProductSchema = v.object({
  id,
  name: v.string(),
  description: nullableString,
  price: money,
  stock: v.pipe(v.number(), v.integer()),
  createdAt: timestamp,
  updatedAt: timestamp,
});

export const OrderItemSchema = v.object({ id, productId: id, quantity: v.pipe(v.number(), v.integer()), price: money });

export const OrderStatusSchema = v.picklist(orderStatuses);

export const OrderSchema = v.object({
  id,
  userId: id,
  status: OrderStatusSchema,
  total: money,
  createdAt: timestamp,
  updatedAt: timestamp,
  items: v.array(OrderItemSchema),
});

export const AuthSchema = v.object({ user: UserSchema, accessToken: v.string(), expiresAt: timestamp });

export const AuditEventSchema = v.object({
  id,
  at: timestamp,
  action: v.string(),
  actorId: v.nullable(id),
  targetType: nullableString,
  targetId: nullableString,
  ip: nullableString,
  requestId: nullableString,
  details: v.record(v.string(), v.unknown()),
});

export const StockLevelSchema = v.object({ productId: id, stock: v.pipe(v.number(), v.integer()) });
export const LowStockItemSchema = v.object({ productId: id, name: v.string(), stock: v.pipe(v.number(), v.integer()) });

export const page = <S extends v.GenericSchema>(item: S) => v.object({ items: v.array(item), nextCursor: nullableString });

const ok = v.object({ ok: v.literal(true) });
const okRevoked = v.object({ ok: v.literal(true), revoked: v.pipe(v.number(), v.integer()) });

/** Named in the OpenAPI document's components; every other response schema refers to these. */
export const namedShapes = {
  User: UserSchema,
  Session: SessionSchema,
  Product: ProductSchema,
  OrderItem: OrderItemSchema,
  OrderStatus: OrderStatusSchema,
  Order: OrderSchema,
  Auth: AuthSchema,
  AuditEvent: AuditEventSchema,
  StockLevel: StockLevelSchema,
  LowStockItem: LowStockItemSchema,
};

/**
 * What every procedure of the contract answers with. A procedure missing here fails the OpenAPI
 * test; entries for procedures this build does not serve are left out of the document.
 */
export const procedureOutputs: Record<string, v.GenericSchema> = {
  "auth.register": AuthSchema,
  "auth.login": AuthSchema,
  "auth.me": UserSchema,
  "auth.refresh": AuthSchema,
  "auth.logout": ok,
  "auth.logoutAll": okRevoked,
  "auth.sessions": v.array(SessionSchema),
  "auth.revokeSession": ok,
  "auth.changePassword": AuthSchema,
  "auth.requestPasswordReset": ok,
  "auth.resetPassword": AuthSchema,
  "auth.requestEmailVerification": ok,
  "auth.verifyEmail": UserSchema,
  "products.list": page(ProductSchema),
  "products.byId": ProductSchema,
  "products.create": ProductSchema,
  "products.update": ProductSchema,
  "products.delete": ok,
  "inventory.get": StockLevelSchema,
  "inventory.adjust": StockLevelSchema,
  "inventory.set": StockLevelSchema,
  "inventory.lowStock": page(LowStockItemSchema),
  "orders.create": OrderSchema,
  "orders.list": page(OrderSchema),
  "orders.byId": OrderSchema,
  "orders.cancel": OrderSchema,
  "orders.updateStatus": OrderSchema,
  "users.list": page(UserSchema),
  "users.byId": UserSchema,
  "users.setRole": UserSchema,
  "users.revokeSessions": okRevoked,
  "users.disable": UserSchema,
  "users.enable": UserSchema,
  "audit.list": page(AuditEventSchema),
};

// Compile-time agreement between each schema and its plain type (both directions).
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
type Agree<S extends v.GenericSchema, P> = Same<v.InferOutput<S>, P>;
const agree = <_ extends true>() => {};
agree<Agree<typeof UserSchema, T.User>>();
agree<Agree<typeof SessionSchema, T.Session>>();
agree<Agree<typeof ProductSchema, T.Product>>();
agree<Agree<typeof OrderItemSchema, T.OrderItem>>();
agree<Agree<typeof OrderStatusSchema, T.OrderStatus>>();
agree<Agree<typeof OrderSchema, T.Order>>();
agree<Agree<typeof AuthSchema, T.Auth>>();
agree<Agree<typeof AuditEventSchema, T.AuditEvent>>();
agree<Agree<typeof StockLevelSchema, T.StockLevel>>();
agree<Agree<typeof LowStockItemSchema, T.LowStockItem>>();
agree<Agree<ReturnType<typeof page<typeof ProductSchema>>, T.Page<T.Product>>>();
