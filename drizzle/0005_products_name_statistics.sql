-- Statistics, not schema: substring search (ILIKE '%term%') is estimated from the sample of
-- product names. With the default sample a two-word term matching thousands of rows of a
-- million was estimated at 100, so the planner fetched and sorted every match through the
-- trigram index instead of walking idx_products_created_at_id. A larger sample makes the
-- estimate follow the data.
ALTER TABLE "products" ALTER COLUMN "name" SET STATISTICS 1000;
