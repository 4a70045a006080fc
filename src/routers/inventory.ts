import * as v from "valibot";
import { boundedInt, cursor, limit, optionalInput, uuid } from "../lib/validation";
import * as inventoryService from "../services/inventory";
import { auditContextOf, catalogDb } from "../trpc/context";
import { adminProcedure, publicProcedure, router } from "../trpc/init";

const productId = uuid("productId");
const DELTA_MESSAGE = "delta must be a non-zero integer from -1000000 to 1000000";
const delta = v.pipe(
  boundedInt("delta", -1_000_000, 1_000_000),
  v.check((d: number) => d !== 0, DELTA_MESSAGE),
);

export const inventoryRouter = router({
  // A public read (replica when configured, catalogDb); the stock checks of adjust, set and
  // orders.create read the primary inside their own statements.
  get: publicProcedure
    .input(v.object({ productId }))
    .query(async ({ ctx, input }) => inventoryService.getStock(await catalogDb(ctx), input.productId)),

  adjust: adminProcedure
    .input(v.object({ productId, delta }))
    .mutation(({ ctx, input }) => inventoryService.adjustStock(ctx.db, input, auditContextOf(ctx))),

  set: adminProcedure
    .input(v.object({ productId, stock: boundedInt("stock", 0, inventoryService.MAX_STOCK) }))
    .mutation(({ ctx, input }) => inventoryService.setStock(ctx.db, input, auditContextOf(ctx))),

  lowStock: adminProcedure
    .input(
      optionalInput({
        threshold: v.optional(boundedInt("threshold", 0, inventoryService.MAX_STOCK), 5),
        limit,
        cursor,
      }),
    )
    .query(({ ctx, input }) => inventoryService.listLowStock(ctx.db, input)),
});
