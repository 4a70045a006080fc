import { router } from "../trpc/init";

// Filled in by the products issue.
export const productsRouter = router({});
