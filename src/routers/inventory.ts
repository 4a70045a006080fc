import { router } from "../trpc/init";

// Filled in by the inventory issue.
export const inventoryRouter = router({});
