import { router } from "../trpc/init";
import { auditRouter } from "./audit";
import { authRouter } from "./auth";
import { inventoryRouter } from "./inventory";
import { ordersRouter } from "./orders";
import { productsRouter } from "./products";
import { usersRouter } from "./users";

export const appRouter = router({
  auth: authRouter,
  products: productsRouter,
  inventory: inventoryRouter,
  orders: ordersRouter,
  users: usersRouter,
  audit: auditRouter,
});

export type AppRouter = typeof appRouter;
