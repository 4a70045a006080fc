import * as v from "valibot";
import { orderStatuses } from "../db/schema";
import { boundedInt, cursor, limit, noNul, optionalInput, uuid } from "../lib/validation";
import * as orders from "../services/orders";
import { auditContextOf } from "../trpc/context";
import { adminProcedure, protectedProcedure, router } from "../trpc/init";

const statusOf = (field: string) => v.picklist(orderStatuses, `${field} must be one of ${orderStatuses.join(", ")}`);

const createInput = v.object({
  items: v.pipe(
    v.array(
      v.object({ productId: uuid("productId"), quantity: boundedInt("quantity", 1, 1000) }),
      "items must be an array of { productId, quantity }",
    ),
    v.minLength(1, "items must contain 1 to 100 entries"),
    v.maxLength(100, "items must contain 1 to 100 entries"),
  ),
  idempotencyKey: v.optional(
    v.pipe(
      v.string("idempotencyKey must be a string"),
      v.minLength(1, "idempotencyKey must be 1 to 255 characters"),
      v.maxLength(255, "idempotencyKey must be 1 to 255 characters"),
      noNul("idempotencyKey"),
    ),
  ),
});

const byIdInput = v.object({ id: uuid("id") });

export const ordersRouter = router({
  create: protectedProcedure.input(createInput).mutation(({ ctx, input }) => orders.createOrder(ctx.db, ctx.user, input)),

  list: protectedProcedure
    .input(optionalInput({ limit, cursor, status: v.optional(statusOf("status")), userId: v.optional(uuid("userId")) }))
    .query(({ ctx, input }) => orders.listOrders(ctx.db, ctx.user, input)),

  byId: protectedProcedure.input(byIdInput).query(({ ctx, input }) => orders.getOrder(ctx.db, ctx.user, input.id)),

  cancel: protectedProcedure
    .input(byIdInput)
    .mutation(({ ctx, input }) => orders.cancelOrder(ctx.db, ctx.user, input.id, auditContextOf(ctx))),

  updateStatus: adminProcedure
    .input(v.object({ id: uuid("id"), status: statusOf("status") }))
    .mutation(({ ctx, input }) => orders.updateOrderStatus(ctx.db, ctx.user, input, auditContextOf(ctx))),
});
