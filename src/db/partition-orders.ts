// `npm run partition-orders`: range-partitions `orders` by `created_at` (monthly, plus DEFAULT)
// with little downtime, following docs/operations.md ("Partitioning `orders` past 10 million
// rows"). Never run by default: the design's `orders` changes shape (its primary key becomes
// (id, created_at)), which is the operator's decision.
//
// Design (why not the composite foreign key on order_items): every unique constraint of a
// partitioned table must include the partition key, so nothing can reference `orders (id)` any
// more. Instead of adding `order_created_at` to order_items and order_idempotency_keys (a change
// to a design table, a backfill that rewrites every item row, and service SQL that must write the
// new column), an added table `order_ids (id primary key, created_at)` holds one row per order:
//  - order_items and order_idempotency_keys keep their columns and keep a real foreign key,
//    `(order_id) references order_ids (id) on delete cascade`;
//  - order_ids references `orders (id, created_at)` on delete cascade, so deleting an order
//    still cascades to its items and keys (orders → order_ids → order_items), natively;
//  - its primary key keeps `orders.id` unique across all partitions, which the partitioned
//    table alone no longer guarantees;
//  - an AFTER INSERT trigger on orders writes the order_ids row, so src/services/orders.ts's
//    statements stay exactly as they are, on both shapes.
// The cost: one more row and index entry (and one foreign-key check) per order, measured in
// bench/results/2026-12-02-partition.md.
import { getTableName } from "drizzle-orm";
import type postgres from "postgres";
import { orderIdempotencyKeys, orderItems, orders, users } from "./schema";

type Sql = postgres.Sql;

export const ORDERS = getTableName(orders);
/** The added table (docs/architecture.md, "Schema additions"); only this script creates it. */
export const ORDER_IDS = "order_ids";
/** The old `orders` table becomes this partition: every row before the first monthly bound. */
export const HISTORY = `${ORDERS}_history`;
export const DEFAULT_PARTITION = `${ORDERS}_default`;
const BOUND_CHECK = `${ORDERS}_partition_bound`;
const ID_KEY_INDEX = `${ORDERS}_id_created_at_key`;
const SYNC = `${ORDER_IDS}_sync`;
const ORDER_IDS_FK = `${ORDER_IDS}_${ORDERS}_fk`;
/** Session advisory lock: two runs must not interleave their steps. */
const RUN_LOCK = 727_018;

const q = (name: string) => `"${name.replace(/"/g, '""')}"`;
const pub = (name: string) => `public.${q(name)}`;
const lit = (text: string) => `'${text.replace(/'/g, "''")}'`;

/** Anything the operator must change or decide; the CLI prints the message as one line. */
export class PartitionRefusal extends Error {
  override name = "PartitionRefusal";
}

export interface PartitionOptions {
  /** lock_timeout of each short, strongly locked step: how long the shop may queue behind it. */
  lockTimeoutMs: number;
  /** Attempts of each such step before giving up (lock_timeout or deadlock each time). */
  retries: number;
  /** Rows per backfill transaction. */
  batchSize: number;
  /** Monthly partitions created ahead of the current month. */
  monthsAhead: number;
  log: (line: string) => void;
}

/**
 * lock_timeout stays below Postgres' deadlock_timeout (1 s by default): should the script and an
 * order's transaction ever wait for each other, the script gives up first and retries, so the
 * deadlock detector never has to cancel a customer's order.
 */
export const defaultOptions: Omit<PartitionOptions, "log"> = { lockTimeoutMs: 500, retries: 20, batchSize: 20_000, monthsAhead: 3 };

/** A foreign key into orders (id), which must move to order_ids (id). */
interface Reference {
  table: string;
  constraint: string;
  column: string;
  onDelete: string;
  /** Its replacement, to order_ids: absent, added (not valid) or validated. */
  replacement: "absent" | "added" | "validated";
}

interface Partition {
  name: string;
  /** Upper bound (timestamp text) of a range partition; absent for DEFAULT. */
  to?: string;
  from?: string;
}

export interface OrdersState {
  database: string;
  serverVersion: string;
  shape: "plain" | "partitioned";
  rows: Record<string, number>;
  bytes: Record<string, number>;
  references: Reference[];
  orderIds: boolean;
  /** order_ids, or the partitioned orders, without the backups' deletion triggers (migration 0008). */
  untrackedDeletions: string[];
  syncTrigger: boolean;
  idKeyIndex: "absent" | "invalid" | "valid";
  boundCheck?: { bound: string; validated: boolean };
  /** The partitions' first monthly bound: history holds everything before it. */
  bound: string;
  /** The months to exist after this run (first day of each, timestamp text). */
  months: string[];
  partitions: Partition[];
  orderIdsFk: "absent" | "added" | "validated";
  /** orders' non-primary-key indexes (name, definition) and constraints, for the new parent. */
  indexes: { name: string; def: string }[];
  checks: { name: string; def: string }[];
  foreignKeys: { name: string; def: string }[];
  grants: string[];
  owner: string;
  currentUser: string;
}

export interface Step {
  title: string;
  phase: "before the swap (online)" | "the swap (one short transaction)" | "after the swap (online)" | "monthly upkeep";
  /** The locks taken, on which tables, and what they block. */
  lock: string;
  /** Roughly how long, from the table sizes. */
  estimate: string;
  statements: string[];
  /** Set when the state shows the step already done (a re-run skips it). */
  done?: string;
  /** Short, strongly locked: run in a transaction with lock_timeout, retried. */
  short?: boolean;
  run?: (sql: Sql, opts: PartitionOptions) => Promise<Record<string, number | string> | undefined>;
}

export interface StepResult {
  title: string;
  lock: string;
  ms: number;
  skipped?: string;
  attempts?: number;
  details?: Record<string, number | string>;
}

// ---------------------------------------------------------------------------------------------
// Reading the database's state

async function one<T>(sql: Sql, text: string, params: unknown[] = []): Promise<T> {
  const rows = await sql.unsafe(text, params as never[]);
  return rows[0] as T;
}

const monthName = (ts: string) => `${ORDERS}_${ts.slice(0, 4)}_${ts.slice(5, 7)}`;

/** Range bounds as pg_get_expr prints them: FOR VALUES FROM ('…') TO ('…'), MINVALUE, DEFAULT. */
function parseBound(expr: string): { from?: string; to?: string } {
  const m = /FROM \((MINVALUE|'([^']+)')\) TO \((MAXVALUE|'([^']+)')\)/.exec(expr);
  return m ? { from: m[2], to: m[4] } : {};
}

export async function readState(sql: Sql, opts: Pick<PartitionOptions, "monthsAhead">): Promise<OrdersState> {
  const server = await one<{ version: string; num: number; db: string; usr: string }>(
    sql,
    `select current_setting('server_version') as version, current_setting('server_version_num')::int as num,
            current_database() as db, current_user as usr`,
  );
  if (server.num < 150000) {
    throw new PartitionRefusal(
      `partition-orders needs Postgres 15 or newer (this server is ${server.version}): before 15 an UPDATE that moves a row between partitions runs the foreign keys' ON DELETE actions, which would delete an order's items`,
    );
  }
  const rel = await one<{ kind: string; owner: string; rls: boolean; inherited: boolean } | undefined>(
    sql,
    `select c.relkind as kind, pg_get_userbyid(c.relowner) as owner, c.relrowsecurity as rls,
            exists (select 1 from pg_inherits i where i.inhparent = c.oid and c.relkind = 'r') as inherited
       from pg_class c where c.oid = to_regclass($1)`,
    [pub(ORDERS)],
  );
  if (!rel) throw new PartitionRefusal(`there is no table public.${ORDERS}: run npm run db:migrate first`);
  if (rel.rls) throw new PartitionRefusal(`public.${ORDERS} has row-level security on: this script does not carry policies over`);
  if (rel.inherited) throw new PartitionRefusal(`public.${ORDERS} has inheritance children: this script does not handle them`);
  const shape = rel.kind === "p" ? "partitioned" : "plain";

  // Partitioned tables count through their leaves (pg_partition_tree lists nothing for a plain table).
  const sizes = await sql.unsafe<{ name: string; rows: number; bytes: number }[]>(
    `select t.name, coalesce(sum(greatest(c.reltuples, 0)), 0)::float8 as rows, coalesce(sum(pg_relation_size(c.oid)), 0)::float8 as bytes
       from unnest($1::text[]) t(name)
       cross join lateral (select to_regclass('public.' || quote_ident(t.name)) as r) x
       cross join lateral (select relid from pg_partition_tree(x.r) where isleaf
                           union all select x.r where x.r is not null and not exists (select 1 from pg_partition_tree(x.r))) p
       join pg_class c on c.oid = p.relid
      group by t.name`,
    [[ORDERS, getTableName(orderItems), getTableName(orderIdempotencyKeys), ORDER_IDS]],
  );
  const rows: Record<string, number> = {};
  const bytes: Record<string, number> = {};
  for (const s of sizes) {
    rows[s.name] = Number(s.rows);
    bytes[s.name] = Number(s.bytes);
  }

  const orderIds = (await one<{ t: string | null }>(sql, "select to_regclass($1)::text as t", [pub(ORDER_IDS)])).t !== null;
  // Foreign keys into orders: before the swap they reference orders (id); replacements reference order_ids (id).
  const fks = await sql.unsafe<{ table: string; constraint: string; cols: string[]; refcols: string[]; del: string }[]>(
    `select cl.relname as "table", f.conname as "constraint",
            array(select a.attname::text from unnest(f.conkey) k join pg_attribute a on a.attrelid = f.conrelid and a.attnum = k) as cols,
            array(select a.attname::text from unnest(f.confkey) k join pg_attribute a on a.attrelid = f.confrelid and a.attnum = k) as refcols,
            f.confdeltype::text as del
       from pg_constraint f join pg_class cl on cl.oid = f.conrelid
      where f.contype = 'f' and f.confrelid = to_regclass($1) and f.conparentid = 0 and cl.relname <> $2`,
    [pub(ORDERS), ORDER_IDS],
  );
  const replacements = orderIds
    ? await sql.unsafe<{ table: string; constraint: string; validated: boolean }[]>(
        `select cl.relname as "table", f.conname as "constraint", f.convalidated as validated
           from pg_constraint f join pg_class cl on cl.oid = f.conrelid
          where f.contype = 'f' and f.confrelid = to_regclass($1)`,
        [pub(ORDER_IDS)],
      )
    : [];
  const deleteAction: Record<string, string> = { a: "no action", r: "restrict", c: "cascade", n: "set null", d: "set default" };
  const references: Reference[] = [];
  for (const f of fks) {
    if (f.cols.length !== 1 || f.refcols.length !== 1 || f.refcols[0] !== "id") {
      throw new PartitionRefusal(
        `the foreign key ${f.constraint} on ${f.table} references ${ORDERS} (${f.refcols.join(", ")}): this script moves only single-column references to ${ORDERS} (id)`,
      );
    }
    const r = replacements.find((x) => x.constraint === replacementName(f.table, f.cols[0]));
    references.push({
      table: f.table,
      constraint: f.constraint,
      column: f.cols[0],
      onDelete: deleteAction[f.del] ?? "no action",
      replacement: r ? (r.validated ? "validated" : "added") : "absent",
    });
  }
  // After the swap nothing references orders but order_ids: the references are read from order_ids' side.
  if (shape === "partitioned") {
    for (const r of replacements) {
      const col = await one<{ c: string }>(
        sql,
        `select a.attname as c from pg_constraint f join pg_attribute a on a.attrelid = f.conrelid and a.attnum = f.conkey[1] where f.conname = $1 and f.conrelid = to_regclass($2)`,
        [r.constraint, pub(r.table)],
      );
      references.push({
        table: r.table,
        constraint: r.constraint,
        column: col.c,
        onDelete: "cascade",
        replacement: r.validated ? "validated" : "added",
      });
    }
  }
  const fk = orderIds
    ? await one<{ validated: boolean } | undefined>(
        sql,
        "select convalidated as validated from pg_constraint where conname = $1 and conrelid = to_regclass($2)",
        [ORDER_IDS_FK, pub(ORDER_IDS)],
      )
    : undefined;
  // Tables this script made (or reshaped) whose deletions the backups' log does not see yet.
  const untracked = await sql.unsafe<{ t: string }[]>(
    `select t from unnest($1::text[]) t
      where to_regprocedure('public.backup_track_deletions(regclass)') is not null and to_regclass('public.' || quote_ident(t)) is not null
        and not exists (select 1 from pg_trigger where tgrelid = to_regclass('public.' || quote_ident(t)) and tgname = $2)`,
    [shape === "partitioned" ? [ORDERS, ORDER_IDS] : [ORDER_IDS], DELETION_TRIGGERS[0]],
  );
  const trigger = await one<{ n: number }>(
    sql,
    "select count(*)::int as n from pg_trigger where tgname = $1 and tgrelid = to_regclass($2) and tgparentid = 0",
    [SYNC, pub(ORDERS)],
  );
  const index = await one<{ valid: boolean } | undefined>(
    sql,
    `select i.indisvalid as valid from pg_index i join pg_class c on c.oid = i.indexrelid
      where c.relname = $1 and c.relnamespace = 'public'::regnamespace`,
    [ID_KEY_INDEX],
  );
  const check = await one<{ def: string; validated: boolean } | undefined>(
    sql,
    "select pg_get_constraintdef(oid) as def, convalidated as validated from pg_constraint where conname = $1 and conrelid = to_regclass($2)",
    [BOUND_CHECK, pub(ORDERS)],
  );
  const checkBound = check ? /'([^']+)'/.exec(check.def)?.[1] : undefined;

  // The first monthly bound: at least 7 days away, so that every order written until the swap
  // still satisfies the bound check. An earlier run's check is reused while it stays 2 days away.
  const fresh = await one<{ bound: string; keep: boolean; current: string }>(
    sql,
    `select to_char(date_trunc('month', (now() at time zone 'utc') + interval '7 days') + interval '1 month', 'YYYY-MM-DD HH24:MI:SS') as bound,
            coalesce($1::timestamp > (now() at time zone 'utc') + interval '2 days', false) as keep,
            to_char(date_trunc('month', now() at time zone 'utc'), 'YYYY-MM-DD HH24:MI:SS') as current`,
    [checkBound ?? null],
  );
  const partitions: Partition[] = [];
  if (shape === "partitioned") {
    const parts = await sql.unsafe<{ name: string; bound: string }[]>(
      `select c.relname as name, pg_get_expr(c.relpartbound, c.oid) as bound
         from pg_inherits i join pg_class c on c.oid = i.inhrelid where i.inhparent = to_regclass($1) order by 1`,
      [pub(ORDERS)],
    );
    for (const p of parts) partitions.push({ name: p.name, ...parseBound(p.bound) });
  }
  const bound =
    shape === "partitioned" ? (partitions.find((p) => p.name === HISTORY)?.to ?? "") : checkBound && fresh.keep ? checkBound : fresh.bound;
  // Months through the current one plus monthsAhead, starting at the bound.
  const months: string[] = [];
  if (bound) {
    const last = addMonths(fresh.current, opts.monthsAhead);
    for (let m = bound; m <= last || months.length === 0; m = addMonths(m, 1)) {
      months.push(m);
      if (months.length > 600) break;
    }
  }
  if (shape === "plain" && bound) {
    // Orders dated on or after the bound would fail the bound check's validation: say so first.
    const [late] = await sql.unsafe<{ n: number }[]>(`select count(*)::int as n from ${pub(ORDERS)} where created_at >= $1::timestamp`, [
      bound,
    ]);
    if (late.n > 0) {
      throw new PartitionRefusal(
        `${late.n} orders have created_at on or after ${bound} (in the future): the history partition must hold every existing order; correct their created_at first`,
      );
    }
  }
  const source = shape === "plain" ? ORDERS : HISTORY;
  const indexes = await sql.unsafe<{ name: string; def: string }[]>(
    `select c.relname as name, pg_get_indexdef(i.indexrelid) as def
       from pg_index i join pg_class c on c.oid = i.indexrelid
      where i.indrelid = to_regclass($1) and not i.indisprimary and c.relname <> $2 order by 1`,
    [pub(source), ID_KEY_INDEX],
  );
  const constraints = await sql.unsafe<{ name: string; type: string; def: string }[]>(
    `select conname as name, contype::text as type, pg_get_constraintdef(oid) as def
       from pg_constraint where conrelid = to_regclass($1) and contype in ('c', 'f') and conname <> $2 order by 1`,
    [pub(source), BOUND_CHECK],
  );
  const grants = await sql.unsafe<{ g: string }[]>(
    `select format('%s on %%s to %s', a.privilege_type, case when a.grantee = 0 then 'public' else quote_ident(pg_get_userbyid(a.grantee)) end) as g
       from pg_class c, aclexplode(c.relacl) a
      where c.oid = to_regclass($1) and a.grantee <> c.relowner`,
    [pub(source)],
  );
  return {
    database: server.db,
    serverVersion: server.version,
    shape,
    rows,
    bytes,
    references,
    orderIds,
    untrackedDeletions: untracked.map((u) => u.t),
    syncTrigger: trigger.n > 0,
    idKeyIndex: index ? (index.valid ? "valid" : "invalid") : "absent",
    boundCheck: check && checkBound ? { bound: checkBound, validated: check.validated } : undefined,
    bound,
    months,
    partitions,
    orderIdsFk: fk ? (fk.validated ? "validated" : "added") : "absent",
    indexes,
    checks: constraints.filter((c) => c.type === "c").map(({ name, def }) => ({ name, def })),
    foreignKeys: constraints.filter((c) => c.type === "f").map(({ name, def }) => ({ name, def })),
    grants: grants.map((g) => g.g),
    owner: rel.owner,
    currentUser: server.usr,
  };
}

/** `YYYY-MM-01 00:00:00` plus n months. */
function addMonths(ts: string, n: number): string {
  const y = Number(ts.slice(0, 4));
  const m = Number(ts.slice(5, 7)) - 1 + n;
  const yy = y + Math.floor(m / 12);
  const mm = ((m % 12) + 12) % 12;
  return `${String(yy).padStart(4, "0")}-${String(mm + 1).padStart(2, "0")}-01 00:00:00`;
}

const replacementName = (table: string, column: string) => `${table}_${column}_${ORDER_IDS}_fk`;

// ---------------------------------------------------------------------------------------------
// Estimates: rough throughputs of this repository's 2-core rehearsal machine (bench/results/
// 2026-12-02-partition.md); a bigger server is faster, a busy one slower.
const MB = 1024 * 1024;
const SCAN_BYTES_PER_S = 250 * MB;
const INDEX_BYTES_PER_S = 60 * MB;
const BACKFILL_ROWS_PER_S = 120_000;
const FK_ROWS_PER_S = 600_000;

function seconds(s: number): string {
  if (s < 1) return "under a second";
  if (s < 90) return `~${Math.ceil(s)} s`;
  return `~${Math.ceil(s / 60)} min`;
}

const mb = (bytes: number) => `${(bytes / MB).toFixed(0)} MB`;

// ---------------------------------------------------------------------------------------------
// The plan

function syncFunction(): string {
  // Not SECURITY DEFINER: the service's role writes order_ids with the grants copied from orders.
  return `create or replace function public.${q(SYNC)}() returns trigger language plpgsql set search_path = pg_catalog, public as $$
begin
  -- One row per order: order_ids' primary key keeps orders.id unique across every partition.
  insert into public.${q(ORDER_IDS)} (id, created_at) values (new.id, new.created_at);
  return null;
end $$`;
}

/** The triggers `backup_track_deletions` (migration 0008) creates. */
const DELETION_TRIGGERS = ["backup_log_deletes", "backup_log_truncates"] as const;
/**
 * Logs the table's deletions for incremental backups, as every table of the migrations does
 * (migration 0008); a no-op when already done, or on a database without the deletion log.
 */
const trackDeletions = (table: string) =>
  `select public.backup_track_deletions(${lit(`public.${table}`)}::regclass)
    where to_regprocedure('public.backup_track_deletions(regclass)') is not null
      and not exists (select 1 from pg_trigger where tgrelid = ${lit(`public.${table}`)}::regclass and tgname = ${lit(DELETION_TRIGGERS[0])})`;

const syncTrigger = (table: string) =>
  `create or replace trigger ${q(SYNC)} after insert on ${pub(table)} for each row execute function public.${q(SYNC)}()`;

/** The history partition's name for one of orders' indexes (the new parent takes the original name). */
const historyIndexName = (name: string) => `${HISTORY}_${name.replace(new RegExp(`^idx_${ORDERS}_`), "")}_idx`.slice(0, 63);

export function buildPlan(state: OrdersState, opts: Omit<PartitionOptions, "log">): Step[] {
  return state.shape === "partitioned" ? upkeepPlan(state) : migrationPlan(state, opts);
}

function migrationPlan(s: OrdersState, opts: Omit<PartitionOptions, "log">): Step[] {
  const orderRows = s.rows[ORDERS] ?? 0;
  const orderBytes = s.bytes[ORDERS] ?? 0;
  const steps: Step[] = [];
  const lockNote = `lock_timeout ${opts.lockTimeoutMs} ms, up to ${opts.retries} attempts`;

  steps.push({
    title: `create the added table ${ORDER_IDS} (one row per order: id, created_at)`,
    phase: "before the swap (online)",
    lock: "none on existing tables",
    estimate: "under a second",
    statements: [
      `create table if not exists ${pub(ORDER_IDS)} (id uuid not null, created_at timestamp not null, constraint ${q(`${ORDER_IDS}_pkey`)} primary key (id))`,
      `comment on table ${pub(ORDER_IDS)} is ${lit("Added by npm run partition-orders: one row per order; its primary key keeps orders.id unique across partitions, and order_items and order_idempotency_keys reference it")}`,
      ...s.grants.map((g) => `grant ${g.replace("%s", pub(ORDER_IDS))}`),
      trackDeletions(ORDER_IDS),
    ],
    done: s.orderIds ? `${ORDER_IDS} exists` : undefined,
  });
  // An interrupted run of a version of this script that made order_ids without the triggers.
  if (s.orderIds && s.untrackedDeletions.includes(ORDER_IDS)) steps.push(deletionLogStep([ORDER_IDS], "before the swap (online)"));
  steps.push({
    title: `unique index on ${ORDERS} (id, created_at), built concurrently (the future primary key of ${HISTORY})`,
    phase: "before the swap (online)",
    lock: `SHARE UPDATE EXCLUSIVE on ${ORDERS}: reads and writes go on; waits for transactions older than it`,
    estimate: seconds(orderBytes / INDEX_BYTES_PER_S + 1),
    statements: [
      ...(s.idKeyIndex === "invalid" ? [`drop index concurrently if exists ${pub(ID_KEY_INDEX)}`] : []),
      `create unique index concurrently if not exists ${q(ID_KEY_INDEX)} on ${pub(ORDERS)} (id, created_at)`,
    ],
    done: s.idKeyIndex === "valid" ? "the index exists and is valid" : undefined,
  });
  steps.push({
    title: `trigger: every new order also writes its ${ORDER_IDS} row`,
    phase: "before the swap (online)",
    lock: `SHARE ROW EXCLUSIVE on ${ORDERS} for a moment (blocks writes, not reads; ${lockNote})`,
    estimate: "under a second",
    statements: [`lock table ${pub(ORDERS)} in share row exclusive mode`, syncFunction(), syncTrigger(ORDERS)],
    short: true,
    done: s.syncTrigger ? "the trigger exists" : undefined,
  });
  const batches = Math.max(1, Math.ceil(orderRows / opts.batchSize));
  steps.push({
    title: `backfill ${ORDER_IDS} from ${ORDERS} in id order, ${opts.batchSize} rows per transaction (~${batches} batches; re-runnable)`,
    phase: "before the swap (online)",
    lock: `ROW EXCLUSIVE on ${ORDER_IDS}, ACCESS SHARE on ${ORDERS}: blocks nothing the service does`,
    estimate: seconds(orderRows / BACKFILL_ROWS_PER_S),
    statements: [backfillStatement()],
    run: backfill,
  });
  for (const r of s.references) {
    const name = replacementName(r.table, r.column);
    const rows = s.rows[r.table] ?? 0;
    steps.push({
      title: `${r.table}.${r.column} also references ${ORDER_IDS} (id), added NOT VALID`,
      phase: "before the swap (online)",
      lock: `SHARE ROW EXCLUSIVE on ${r.table} and ${ORDER_IDS} for a moment (blocks their writes, not reads; ${lockNote})`,
      estimate: "under a second",
      statements: [
        // order_ids first, then the child: the order in which an order's transaction takes them
        // (the trigger writes order_ids before the items go in), so the two cannot deadlock.
        `lock table ${pub(ORDER_IDS)}, ${pub(r.table)} in share row exclusive mode`,
        `alter table ${pub(r.table)} add constraint ${q(name)} foreign key (${q(r.column)}) references ${pub(ORDER_IDS)} (id) on delete ${r.onDelete} not valid`,
      ],
      short: true,
      done: r.replacement !== "absent" ? "the foreign key exists" : undefined,
    });
    steps.push({
      title: `validate ${name}`,
      phase: "before the swap (online)",
      lock: `SHARE UPDATE EXCLUSIVE on ${r.table}, ROW SHARE on ${ORDER_IDS}: reads and writes go on`,
      estimate: seconds(rows / FK_ROWS_PER_S + (s.bytes[r.table] ?? 0) / SCAN_BYTES_PER_S),
      statements: [`alter table ${pub(r.table)} validate constraint ${q(name)}`],
      done: r.replacement === "validated" ? "validated" : undefined,
    });
  }
  const boundOk = s.boundCheck && s.boundCheck.bound === s.bound;
  steps.push({
    title: `check (created_at < '${s.bound}') on ${ORDERS}, NOT VALID: the history partition's bound, so attaching needs no scan`,
    phase: "before the swap (online)",
    lock: `ACCESS EXCLUSIVE on ${ORDERS} for a moment (catalog only; ${lockNote})`,
    estimate: "under a second",
    statements: [
      `lock table ${pub(ORDERS)} in access exclusive mode`,
      ...(s.boundCheck && !boundOk ? [`alter table ${pub(ORDERS)} drop constraint ${q(BOUND_CHECK)}`] : []),
      `alter table ${pub(ORDERS)} add constraint ${q(BOUND_CHECK)} check (created_at < ${lit(s.bound)}) not valid`,
    ],
    short: true,
    done: boundOk ? `exists with bound ${s.bound}` : undefined,
  });
  steps.push({
    title: `validate ${BOUND_CHECK} (one scan of ${ORDERS})`,
    phase: "before the swap (online)",
    lock: `SHARE UPDATE EXCLUSIVE on ${ORDERS}: reads and writes go on`,
    estimate: seconds(orderBytes / SCAN_BYTES_PER_S),
    statements: [`alter table ${pub(ORDERS)} validate constraint ${q(BOUND_CHECK)}`],
    done: boundOk && s.boundCheck?.validated ? "validated" : undefined,
  });
  steps.push(swapStep(s, opts));
  steps.push({
    title: `validate ${ORDER_IDS_FK}: every ${ORDER_IDS} row has its order (orphans of orders deleted during the backfill are removed first if any)`,
    phase: "after the swap (online)",
    lock: `SHARE UPDATE EXCLUSIVE on ${ORDER_IDS}, ROW SHARE on ${ORDERS}: reads and writes go on`,
    estimate: seconds(orderRows / FK_ROWS_PER_S),
    statements: [`alter table ${pub(ORDER_IDS)} validate constraint ${q(ORDER_IDS_FK)}`],
    run: validateOrderIds,
  });
  steps.push({
    title: `analyze ${ORDERS}: the partitioned parent's own statistics (autovacuum never analyzes a partitioned parent)`,
    phase: "after the swap (online)",
    lock: `SHARE UPDATE EXCLUSIVE on ${ORDERS} and its partitions: reads and writes go on`,
    estimate: "a few seconds (a sample)",
    statements: [`analyze ${pub(ORDERS)}`],
  });
  return steps;
}

function backfillStatement(): string {
  return `with batch as (select id, created_at from ${pub(ORDERS)} where id > $1::uuid order by id limit $2::int),
     copied as (insert into ${pub(ORDER_IDS)} (id, created_at) select id, created_at from batch on conflict (id) do nothing)
select (select id::text from batch order by id desc limit 1) as last, (select count(*) from batch)::int as n`;
}

async function backfill(sql: Sql, opts: PartitionOptions) {
  let last = "00000000-0000-0000-0000-000000000000";
  let rows = 0;
  let batches = 0;
  const started = performance.now();
  let reported = started;
  for (;;) {
    const [r] = await sql.unsafe<{ last: string | null; n: number }[]>(backfillStatement(), [last, opts.batchSize]);
    if (!r || r.n === 0 || r.last === null) break;
    rows += r.n;
    batches++;
    last = r.last;
    if (performance.now() - reported > 5000) {
      reported = performance.now();
      opts.log(`    … ${rows} rows in ${batches} batches (${Math.round(rows / ((reported - started) / 1000))} rows/s), at id ${last}`);
    }
  }
  return { rows, batches };
}

/** The one short transaction; its statements in order (the ACCESS EXCLUSIVE lasts from LOCK to COMMIT). */
function swapStatements(s: OrdersState): string[] {
  const out: string[] = [];
  // Locks in the order an order's transaction takes them (orders, then order_ids through the
  // trigger, then its items and key), so that a deadlock with the shop is not possible.
  out.push(
    `lock table ${pub(ORDERS)} in access exclusive mode`,
    `lock table ${pub(ORDER_IDS)} in share row exclusive mode`,
    ...(s.references.length ? [`lock table ${s.references.map((r) => pub(r.table)).join(", ")} in access exclusive mode`] : []),
    `lock table ${pub(getTableName(users))} in share row exclusive mode`,
    `alter table ${pub(ORDERS)} rename to ${q(HISTORY)}`,
  );
  for (const r of s.references) out.push(`alter table ${pub(r.table)} drop constraint ${q(r.constraint)}`);
  out.push(
    `alter table ${pub(HISTORY)} drop constraint ${q(`${ORDERS}_pkey`)}`,
    `alter table ${pub(HISTORY)} add constraint ${q(`${HISTORY}_pkey`)} primary key using index ${q(ID_KEY_INDEX)}`,
  );
  for (const i of s.indexes) out.push(`alter index public.${q(i.name)} rename to ${q(historyIndexName(i.name))}`);
  out.push(
    `drop trigger ${q(SYNC)} on ${pub(HISTORY)}`,
    // INCLUDING CONSTRAINTS copies the CHECK expressions node for node (re-parsing their printed
    // text may not give the same tree, and attaching needs the same one); the bound check is
    // the old table's own and leaves the parent at once.
    `create table ${pub(ORDERS)} (like ${pub(HISTORY)} including defaults including constraints including storage including comments) partition by range (created_at)`,
    `alter table ${pub(ORDERS)} drop constraint ${q(BOUND_CHECK)}`,
    `alter table ${pub(ORDERS)} add constraint ${q(`${ORDERS}_pkey`)} primary key (id, created_at)`,
  );
  for (const f of s.foreignKeys) out.push(`alter table ${pub(ORDERS)} add constraint ${q(f.name)} ${f.def}`);
  // The definitions were read while the table was still called orders: they now name the new parent.
  for (const i of s.indexes) out.push(i.def);
  out.push(
    `alter table ${pub(ORDERS)} attach partition ${pub(HISTORY)} for values from (minvalue) to (${lit(s.bound)})`,
    `alter table ${pub(HISTORY)} drop constraint ${q(BOUND_CHECK)}`,
  );
  const months = s.months;
  for (let n = 0; n < months.length; n++) {
    out.push(
      `create table ${pub(monthName(months[n]))} partition of ${pub(ORDERS)} for values from (${lit(months[n])}) to (${lit(addMonths(months[n], 1))})`,
    );
  }
  out.push(`create table ${pub(DEFAULT_PARTITION)} partition of ${pub(ORDERS)} default`, syncTrigger(ORDERS));
  // The backups' deletion log (migration 0008): the new parent logs every delete issued through
  // it (a partition's own statement triggers would not fire for those); the old table's pair,
  // now a partition's, would log under a name no backup reads.
  out.push(
    `drop trigger if exists ${q(DELETION_TRIGGERS[0])} on ${pub(HISTORY)}`,
    `drop trigger if exists ${q(DELETION_TRIGGERS[1])} on ${pub(HISTORY)}`,
    trackDeletions(ORDERS),
  );
  out.push(
    `alter table ${pub(ORDER_IDS)} add constraint ${q(ORDER_IDS_FK)} foreign key (id, created_at) references ${pub(ORDERS)} (id, created_at) on delete cascade on update cascade not valid`,
  );
  for (const g of s.grants) out.push(`grant ${g.replace("%s", pub(ORDERS))}`);
  if (s.owner !== s.currentUser) out.push(`alter table ${pub(ORDERS)} owner to ${q(s.owner)}`);
  out.push(
    `comment on table ${pub(ORDERS)} is ${lit(`Partitioned by created_at by npm run partition-orders: ${HISTORY} holds every order before ${s.bound}, then one partition per month, and ${DEFAULT_PARTITION}`)}`,
  );
  return out;
}

function swapStep(s: OrdersState, opts: Omit<PartitionOptions, "log">): Step {
  return {
    title: `swap: ${ORDERS} becomes the partitioned table; the old table is attached as ${HISTORY} (created_at < '${s.bound}'); ${s.months.length} monthly partitions (${s.months[0]?.slice(0, 7)} to ${s.months.at(-1)?.slice(0, 7)}) and ${DEFAULT_PARTITION}`,
    phase: "the swap (one short transaction)",
    lock: `ACCESS EXCLUSIVE on ${ORDERS}, ${s.references.map((r) => r.table).join(", ")} (reads and writes of orders and items wait), SHARE ROW EXCLUSIVE on ${ORDER_IDS} and ${getTableName(users)} (their writes wait), from LOCK to COMMIT; lock_timeout ${opts.lockTimeoutMs} ms, up to ${opts.retries} attempts`,
    estimate: "tens of milliseconds (catalog changes only: no scan, no index build, no rewrite)",
    statements: swapStatements(s),
    short: true,
  };
}

async function validateOrderIds(sql: Sql) {
  const validate = `alter table ${pub(ORDER_IDS)} validate constraint ${q(ORDER_IDS_FK)}`;
  try {
    await sql.unsafe(validate);
    return { orphans: 0 };
  } catch (error) {
    if ((error as { code?: string }).code !== "23503") throw error;
    // An order deleted while the backfill copied it leaves its order_ids row behind (the old
    // foreign keys had already cascaded to its items). Since the swap the NOT VALID key's cascade
    // keeps new deletes clean, so removing the leftovers once is enough.
    const removed = await sql.unsafe(
      `delete from ${pub(ORDER_IDS)} i where not exists (select 1 from ${pub(ORDERS)} o where o.id = i.id and o.created_at = i.created_at)`,
    );
    await sql.unsafe(validate);
    return { orphans: removed.count };
  }
}

/** The backups' deletion triggers for tables an earlier run of this script left without them. */
function deletionLogStep(tables: string[], phase: Step["phase"]): Step {
  return {
    title: `log deletions from ${tables.join(" and ")} for incremental backups (migration 0008's triggers)`,
    phase,
    lock: `SHARE ROW EXCLUSIVE on ${tables.join(" and ")} for a moment (CREATE TRIGGER: blocks writes, not reads)`,
    estimate: "under a second",
    statements: tables.map(trackDeletions),
  };
}

function upkeepPlan(s: OrdersState): Step[] {
  if (!s.orderIds || !s.partitions.some((p) => p.name === HISTORY)) {
    throw new PartitionRefusal(
      `public.${ORDERS} is already partitioned, but not by this script (no ${ORDER_IDS} table or no ${HISTORY} partition): nothing done`,
    );
  }
  const steps: Step[] = [];
  if (s.untrackedDeletions.length) steps.push(deletionLogStep(s.untrackedDeletions, "after the swap (online)"));
  if (s.orderIdsFk !== "validated") {
    steps.push({
      title: `validate ${ORDER_IDS_FK} (left over from an interrupted run)`,
      phase: "after the swap (online)",
      lock: `SHARE UPDATE EXCLUSIVE on ${ORDER_IDS}, ROW SHARE on ${ORDERS}: reads and writes go on`,
      estimate: seconds((s.rows[ORDER_IDS] ?? 0) / FK_ROWS_PER_S),
      statements: [`alter table ${pub(ORDER_IDS)} validate constraint ${q(ORDER_IDS_FK)}`],
      run: validateOrderIds,
    });
  }
  for (const r of s.references.filter((x) => x.replacement !== "validated")) {
    steps.push({
      title: `validate ${r.constraint} (left over from an interrupted run)`,
      phase: "after the swap (online)",
      lock: `SHARE UPDATE EXCLUSIVE on ${r.table}, ROW SHARE on ${ORDER_IDS}: reads and writes go on`,
      estimate: seconds((s.rows[r.table] ?? 0) / FK_ROWS_PER_S),
      statements: [`alter table ${pub(r.table)} validate constraint ${q(r.constraint)}`],
    });
  }
  const lastUpper = s.partitions.reduce((max, p) => (p.to && p.to > max ? p.to : max), "");
  for (const m of s.months.filter((month) => month >= lastUpper)) {
    const next = addMonths(m, 1);
    const name = monthName(m);
    steps.push({
      title: `partition ${name} for [${m}, ${next})`,
      phase: "monthly upkeep",
      lock: `ACCESS EXCLUSIVE on ${ORDERS} and ${DEFAULT_PARTITION} for a moment (empty table; the DEFAULT partition is scanned, it should be empty)`,
      estimate: "under a second",
      statements: [`create table ${pub(name)} partition of ${pub(ORDERS)} for values from (${lit(m)}) to (${lit(next)})`],
      short: true,
      run: async (sql, opts) => {
        const [stray] = await sql.unsafe<{ n: number }[]>(
          `select count(*)::int as n from ${pub(DEFAULT_PARTITION)} where created_at >= $1::timestamp and created_at < $2::timestamp`,
          [m, next],
        );
        if (stray.n > 0) {
          throw new PartitionRefusal(
            `${DEFAULT_PARTITION} holds ${stray.n} orders of ${m.slice(0, 7)}: create ${name} by hand (move those rows out of the DEFAULT partition in the same transaction), then re-run`,
          );
        }
        return runShort(sql, opts, [`create table ${pub(name)} partition of ${pub(ORDERS)} for values from (${lit(m)}) to (${lit(next)})`]);
      },
    });
  }
  return steps;
}

// ---------------------------------------------------------------------------------------------
// Printing and applying

export function describePlan(s: OrdersState, steps: Step[]): string {
  const lines: string[] = [];
  const n = (k: string) => Math.round(s.rows[k] ?? 0).toLocaleString("en-US");
  lines.push(`partition-orders: database ${s.database}, Postgres ${s.serverVersion}`);
  lines.push(
    `  ${ORDERS}: ${s.shape}, ~${n(ORDERS)} rows, ${mb(s.bytes[ORDERS] ?? 0)}; ${s.references.map((r) => `${r.table}: ~${n(r.table)} rows, ${mb(s.bytes[r.table] ?? 0)}`).join("; ")}`,
  );
  if (s.shape === "partitioned") {
    lines.push(
      `  partitions: ${s.partitions.map((p) => (p.to ? `${p.name} (< ${p.to.slice(0, 10)})` : `${p.name} (default)`)).join(", ")}`,
    );
  } else {
    lines.push(
      `  after the swap: ${HISTORY} holds every order with created_at < '${s.bound}' (the table as it is, attached without a scan), then one partition per month, then ${DEFAULT_PARTITION}`,
    );
  }
  if (steps.length === 0) lines.push("  nothing to do: the partitions ahead exist and every constraint is validated");
  let phase = "";
  steps.forEach((step, i) => {
    if (step.phase !== phase) {
      phase = step.phase;
      lines.push("", `${phase}:`);
    }
    lines.push(`${String(i + 1).padStart(2)}. ${step.title}${step.done ? `  [already done: ${step.done}]` : ""}`);
    lines.push(`    lock: ${step.lock}`);
    lines.push(`    time: ${step.estimate}`);
    for (const statement of step.statements) lines.push(...`${statement};`.split("\n").map((l, k) => `    ${k === 0 ? "> " : "  "}${l}`));
  });
  return lines.join("\n");
}

const retriable = (error: unknown) => ["55P03", "40P01"].includes((error as { code?: string }).code ?? "");

/** Statements in one transaction with lock_timeout, retried on lock timeout or deadlock. */
async function runShort(sql: Sql, opts: PartitionOptions, statements: string[]) {
  for (let attempt = 1; ; attempt++) {
    let waited = 0;
    let held = 0;
    try {
      const begun = performance.now();
      let locked = 0;
      await sql.begin(async (tx) => {
        await tx.unsafe(`set local lock_timeout = ${Math.max(1, Math.floor(opts.lockTimeoutMs))}`);
        await tx.unsafe("set local statement_timeout = '60s'");
        // The LOCK statements come first; the rest go as one simple-protocol round trip, so the
        // locks are held for the server's work, not for one network round trip per statement.
        let k = 0;
        while (k < statements.length && statements[k].startsWith("lock table ")) await tx.unsafe(statements[k++]);
        locked = performance.now();
        if (k < statements.length) await tx.unsafe(statements.slice(k).join(";\n")).simple();
      });
      const end = performance.now();
      waited = locked - begun;
      held = end - locked;
      return { attempts: attempt, lockWaitMs: round(waited), lockHeldMs: round(held) };
    } catch (error) {
      if (!retriable(error) || attempt >= opts.retries) throw error;
      const pause = Math.min(5000, 200 * attempt) + Math.random() * 200;
      opts.log(`    attempt ${attempt}: ${(error as Error).message}; retrying in ${Math.round(pause)} ms`);
      await new Promise((r) => setTimeout(r, pause));
    }
  }
}

const round = (ms: number) => Math.round(ms * 10) / 10;

/**
 * The connection must be one session for the whole run (a session advisory lock, CREATE INDEX
 * CONCURRENTLY, a swap whose lock it times). Through a transaction-mode pooler two client
 * connections share server sessions: seen here as another client's transaction getting this
 * client's backend, or this client's backend changing between two statements.
 */
export async function sharesServerSessions(url: string): Promise<boolean> {
  const { default: connect } = await import("postgres");
  const a = connect(url, { max: 1, prepare: false, onnotice: () => {}, connect_timeout: 10 });
  const b = connect(url, { max: 1, prepare: false, onnotice: () => {}, connect_timeout: 10 });
  try {
    for (let i = 0; i < 3; i++) {
      const [{ pid: p1 }] = await a`select pg_backend_pid() as pid`;
      let shared = false;
      await b.begin(async (tx) => {
        const [{ pid: p2 }] = await tx`select pg_backend_pid() as pid`;
        const [{ pid: p3 }] = await a`select pg_backend_pid() as pid`;
        shared = p2 === p1 || p3 !== p1;
      });
      if (shared) return true;
    }
    return false;
  } finally {
    await Promise.all([a.end({ timeout: 5 }), b.end({ timeout: 5 })]);
  }
}

export interface PartitionReport {
  state: OrdersState;
  plan: string;
  steps: StepResult[];
  totalMs: number;
}

/**
 * Prints the plan (dryRun) or applies it. `url` must reach Postgres directly (the caller checks
 * it with sharesServerSessions). Each step re-reads nothing: a re-run reads the state again and
 * skips what is done.
 */
export async function partitionOrders(url: string, opts: PartitionOptions & { dryRun: boolean }): Promise<PartitionReport> {
  const { default: connect } = await import("postgres");
  const sql = connect(url, { max: 1, prepare: false, onnotice: () => {}, connect_timeout: 10, idle_timeout: 0 });
  try {
    // The role's statement_timeout (npm run db:migrate sets one) would cut the long online steps.
    await sql.unsafe("set statement_timeout = 0");
    await sql.unsafe("set lock_timeout = 0");
    await sql.unsafe("set search_path = public");
    const state = await readState(sql, opts);
    const steps = buildPlan(state, opts);
    const plan = describePlan(state, steps);
    if (opts.dryRun) return { state, plan, steps: [], totalMs: 0 };
    const [{ ok }] = await sql<{ ok: boolean }[]>`select pg_try_advisory_lock(${RUN_LOCK}) as ok`;
    if (!ok) throw new PartitionRefusal("another partition-orders run holds its lock on this database: wait for it to finish");
    const results: StepResult[] = [];
    const started = performance.now();
    let boundAdded = false;
    try {
      for (const [i, step] of steps.entries()) {
        const head = `${String(i + 1).padStart(2)}. ${step.title}`;
        if (step.done) {
          opts.log(`${head}: already done (${step.done})`);
          results.push({ title: step.title, lock: step.lock, ms: 0, skipped: step.done });
          continue;
        }
        opts.log(`${head} …`);
        const t0 = performance.now();
        let details: Record<string, number | string> | undefined;
        if (step.run) details = await step.run(sql, opts);
        else if (step.short) details = await runShort(sql, opts, step.statements);
        else for (const statement of step.statements) await sql.unsafe(statement);
        if (step.statements.some((x) => x.includes(`add constraint ${q(BOUND_CHECK)}`))) boundAdded = true;
        if (step.phase === "the swap (one short transaction)") boundAdded = false;
        const ms = round(performance.now() - t0);
        results.push({ title: step.title, lock: step.lock, ms, details, attempts: details?.attempts as number | undefined });
        opts.log(`    done in ${ms} ms${details ? ` ${JSON.stringify(details)}` : ""}`);
      }
    } catch (error) {
      // The bound check refuses every order past its bound: never leave it behind a failed run.
      if (boundAdded) {
        await sql.unsafe(`alter table ${pub(ORDERS)} drop constraint if exists ${q(BOUND_CHECK)}`).catch(() => {});
        opts.log(`    removed ${BOUND_CHECK} again (the swap did not happen)`);
      }
      throw error;
    } finally {
      await sql`select pg_advisory_unlock(${RUN_LOCK})`.catch(() => {});
    }
    return { state, plan, steps: results, totalMs: round(performance.now() - started) };
  } finally {
    await sql.end({ timeout: 5 });
  }
}
