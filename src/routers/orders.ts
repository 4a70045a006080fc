import { router } from "../trpc/init";

// Filled in by the orders issue.
export const ordersRouter = router({});
