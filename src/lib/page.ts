import type { Page } from "../contract/types";

export type { Page } from "../contract/types";

/**
 * The tail every keyset list shares: the query fetched `limit + 1` rows so that the extra one
 * says whether another page follows; the cursor is made from the last row that is kept.
 */
export function toPage<Row, Item>(rows: Row[], limit: number, cursorOf: (last: Row) => string, toItem: (row: Row) => Item): Page<Item> {
  const more = rows.length > limit;
  const kept = more ? rows.slice(0, limit) : rows;
  const last = kept.at(-1);
  return { items: kept.map(toItem), nextCursor: more && last ? cursorOf(last) : null };
}
