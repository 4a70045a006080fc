import { router } from "../trpc/init";
import { authRouter } from "./auth";
import { inventoryRouter } from "./inventory";
import { ordersRouter } from "./orders";
import { productsRouter } from "./products";

export const appRouter = router({
  auth: authRouter,
  products: productsRouter,
  inventory: inventoryRouter,
  orders: ordersRouter,
});

export type AppRouter = typeof appRouter;
