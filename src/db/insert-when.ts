import { getTableColumns, is, type Placeholder, SQL, sql } from "drizzle-orm";
import type { PgTable } from "drizzle-orm/pg-core";

/** A row for `table`'s insert: each column's value, an SQL expression for it, or a placeholder. */
export type InsertRow<T extends PgTable> = { [K in keyof T["$inferInsert"]]?: T["$inferInsert"][K] | SQL | Placeholder };

/**
 * `insert into <table> (<columns>) select <values> where <condition>`: one row, written only when
 * the condition holds, for a statement whose CTEs decide whether it may write (the sign-in's
 * last statement writes its session and event only while the throttle allows it). Drizzle's
 * `values()` cannot carry a condition, and its `insert().select()` needs a query over a table.
 *
 * Columns and their SQL types come from the table's Drizzle schema, so a renamed or retyped
 * column changes this statement with it; each value goes through its column's driver mapping
 * (jsonb is serialised as the column does it) and is cast to the column's type, since a bare
 * parameter in a select list would be read as text.
 */
export function insertRowWhen<T extends PgTable>(table: T, row: InsertRow<T>, condition: SQL): SQL {
  const columns = getTableColumns(table);
  const names: SQL[] = [];
  const values: SQL[] = [];
  for (const [key, value] of Object.entries(row)) {
    if (value === undefined) continue;
    const column = columns[key];
    if (!column) throw new Error(`insertRowWhen: ${key} is not a column of the table`);
    names.push(sql`${sql.identifier(column.name)}`);
    const type = sql.raw(column.getSQLType());
    // An SQL value (an expression, a subquery) is sent as it is, cast like the rest.
    // A null goes as a parameter too, so the statement's text (its prepared shape) is the same.
    const bound = is(value, SQL) ? sql`(${value})` : sql.param(value, column);
    values.push(sql`${bound}::${type}`);
  }
  return sql`insert into ${table} (${sql.join(names, sql`, `)}) select ${sql.join(values, sql`, `)} where ${condition}`;
}
