/**
 * QuestDB table definitions, derived from the shared schema (src/sinks/tables.ts) so the tables have
 * exactly the stored columns. Every table: designated timestamp `timestamp` (exchange event time),
 * PARTITION BY DAY, WAL, and DEDUP UPSERT KEYS.
 *
 * Why these keys (https://questdb.com/docs/concepts/deduplication/): over TCP the sink re-sends the rows
 * of the last few seconds after a reconnect, because ILP/TCP has no acknowledgement. A re-sent row is a
 * byte-for-byte copy, so any key set makes the re-send idempotent; the keys are chosen so that two
 * *different* observations never share a key (they would silently replace each other):
 * - trades and liquidations: the id (the venue's, or for liquidations without one a deterministic id
 *   built from the message, docs/data-model.md) is unique per instrument, so (timestamp, exchange,
 *   symbol, id); this also removes events a venue repeats after a reconnect of the exchange socket;
 * - l2: one row per level of one message: the message's sequence and snapshot flag plus side and price;
 * - bbo and funding: venues send several updates within one millisecond, so the receive time and (bbo)
 *   the quoted values are part of the key; only identical rows collapse;
 * - gaps: stream, reason and receive time.
 * The designated timestamp must be part of the keys (https://questdb.com/docs/query/sql/create-table/#deduplication).
 */
import { TABLES, TABLE_NAMES, type ColumnKind, type TableName } from "../tables.ts";

export const SQL_TYPES: Readonly<Record<ColumnKind, string>> = {
  symbol: "SYMBOL",
  string: "VARCHAR",
  double: "DOUBLE",
  long: "LONG",
  timestamp: "TIMESTAMP",
  boolean: "BOOLEAN",
};

export const DESIGNATED_TIMESTAMP = "timestamp";

export const DEDUP_KEYS: Readonly<Record<TableName, readonly string[]>> = {
  trades: ["timestamp", "exchange", "symbol", "id"],
  l2: ["timestamp", "exchange", "symbol", "sequence", "is_snapshot", "side", "price"],
  bbo: ["timestamp", "exchange", "symbol", "local_timestamp", "bid_price", "bid_amount", "ask_price", "ask_amount"],
  funding: ["timestamp", "exchange", "symbol", "local_timestamp"],
  liquidations: ["timestamp", "exchange", "symbol", "id"],
  gaps: ["timestamp", "exchange", "symbol", "stream", "reason", "local_timestamp"],
};

/** `CREATE TABLE IF NOT EXISTS` for one table: a no-op when it exists (its settings are kept). */
export function createTableSql(table: TableName): string {
  const columns = TABLES[table].map((column) => `${column.name} ${SQL_TYPES[column.kind]}`).join(", ");
  return (
    `CREATE TABLE IF NOT EXISTS ${table} (${columns}) TIMESTAMP(${DESIGNATED_TIMESTAMP}) PARTITION BY DAY WAL ` +
    `DEDUP UPSERT KEYS(${DEDUP_KEYS[table].join(", ")})`
  );
}

export function allCreateTableSql(): Array<{ table: TableName; sql: string }> {
  return TABLE_NAMES.map((table) => ({ table, sql: createTableSql(table) }));
}
