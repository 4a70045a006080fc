// The contract's shapes as plain TypeScript: no imports, so the typed-client package ships this
// file's declarations as they are. src/contract/shapes.ts holds the same shapes as valibot schemas
// (for the OpenAPI document) and fails to compile if the two ever disagree.

export type Role = "customer" | "admin";
export type OrderStatus = "pending" | "processing" | "shipped" | "delivered" | "cancelled";

export interface User {
  id: string;
  email: string;
  role: Role;
  emailVerified: boolean;
  disabled: boolean;
  createdAt: string;
  updatedAt: string;
}

export interface Session {
  id: string;
  createdAt: string;
  expiresAt: string;
  current: boolean;
}

export interface Product {
  id: string;
  name: string;
  description: string | null;
  /** Money: a decimal string with exactly two fraction digits, such as "19.99". */
  price: string;
  stock: number;
  createdAt: string;
  updatedAt: string;
}

export interface OrderItem {
  id: string;
  productId: string;
  quantity: number;
  price: string;
}

export interface Order {
  id: string;
  userId: string;
  status: OrderStatus;
  total: string;
  createdAt: string;
  updatedAt: string;
  items: OrderItem[];
}

/** One page of a keyset-paged list; `nextCursor` is opaque, and null on the last page. */
export interface Page<T> {
  items: T[];
  nextCursor: string | null;
}

export interface Auth {
  user: User;
  accessToken: string;
  expiresAt: string;
}

export interface AuditEvent {
  id: string;
  at: string;
  action: string;
  actorId: string | null;
  targetType: string | null;
  targetId: string | null;
  ip: string | null;
  requestId: string | null;
  details: Record<string, unknown>;
}

export interface StockLevel {
  productId: string;
  stock: number;
}

export interface LowStockItem {
  productId: string;
  name: string;
  stock: number;
}
