import * as v from "valibot";
import { boundedInt, limit, money, noNul, optionalInput, uuid } from "../lib/validation";
import { MAX_STOCK } from "../services/inventory";
import * as productService from "../services/products";
import { auditContextOf, catalogDb } from "../trpc/context";
import { adminProcedure, publicProcedure, router } from "../trpc/init";

const name = v.pipe(
  v.string("name must be a string"),
  v.trim(),
  v.minLength(1, "name must be 1 to 255 characters"),
  v.maxLength(255, "name must be 1 to 255 characters"),
  noNul("name"),
);
const description = v.nullable(
  v.pipe(
    v.string("description must be a string or null"),
    v.maxLength(10_000, "description must be at most 10000 characters"),
    noNul("description"),
  ),
);
const sortMessage = `sort must be one of ${productService.productSorts.join(", ")}`;

// A name_asc cursor carries a product name (up to 255 characters, 4 bytes each in UTF-8), so it
// can be longer than the shared 1024-character cursor limit allows.
const productCursor = v.optional(v.nullable(v.pipe(v.string("cursor must be a string"), v.maxLength(2048, "cursor is not valid"))));

const listInput = optionalInput({
  limit,
  cursor: productCursor,
  search: v.optional(
    v.pipe(v.string("search must be a string"), v.maxLength(100, "search must be at most 100 characters"), noNul("search")),
  ),
  minPrice: v.optional(money("minPrice")),
  maxPrice: v.optional(money("maxPrice")),
  inStock: v.optional(v.boolean("inStock must be true or false")),
  sort: v.optional(v.picklist(productService.productSorts, sortMessage), "newest"),
});

export const productsRouter = router({
  // The public catalog reads go to the replica when one is configured (catalogDb).
  list: publicProcedure.input(listInput).query(async ({ ctx, input }) => productService.listProducts(await catalogDb(ctx), input)),

  byId: publicProcedure
    .input(v.object({ id: uuid("id") }))
    .query(async ({ ctx, input }) => productService.getProduct(await catalogDb(ctx), input.id)),

  create: adminProcedure
    .input(
      v.object({
        name,
        description: v.optional(description),
        price: money("price"),
        stock: v.optional(boundedInt("stock", 0, MAX_STOCK), 0),
      }),
    )
    .mutation(({ ctx, input }) => productService.createProduct(ctx.db, input, auditContextOf(ctx))),

  update: adminProcedure
    .input(
      v.object({
        id: uuid("id"),
        name: v.optional(name),
        description: v.optional(description),
        price: v.optional(money("price")),
        // Said out loud rather than silently dropped: a client sending stock here would think it worked.
        stock: v.optional(v.never("stock is not changed here: use inventory.adjust or inventory.set")),
      }),
    )
    .mutation(({ ctx, input }) =>
      productService.updateProduct(
        ctx.db,
        { id: input.id, name: input.name, description: input.description, price: input.price },
        auditContextOf(ctx),
      ),
    ),

  delete: adminProcedure
    .input(v.object({ id: uuid("id") }))
    .mutation(({ ctx, input }) => productService.deleteProduct(ctx.db, input.id, auditContextOf(ctx))),
});
