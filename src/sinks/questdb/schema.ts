/**
 * QuestDB table definitions, derived from the shared schema (src/core/tables.ts) so the tables have
 * exactly the stored columns. Every table: designated timestamp `timestamp` (exchange event time),
 * PARTITION BY DAY, WAL, and DEDUP UPSERT KEYS.
 *
 * Why these keys (https://questdb.com/docs/concepts/deduplication/: a row whose keys match an earlier
 * row replaces it): over TCP the sink re-sends the rows of the last few seconds after a reconnect,
 * because ILP/TCP has no acknowledgement. A re-sent row is a byte-for-byte copy, so any key set makes the
 * re-send idempotent; each key is chosen so that two *different* observations can never share it, venue
 * by venue (the table and the venue rules behind it are in docs/sinks/questdb.md, "Why these dedup keys"):
 * - trades: the venue's trade id is unique per instrument on every venue;
 * - liquidations: the id plus `side`: one Deribit trade can liquidate both its maker and its taker
 *   (`liquidation: "MT"`), two rows with the trade's id that differ only in side;
 * - l2: one row per level of one message: the message's sequence and snapshot flag plus side and price
 *   (a message that sets and then removes one price leaves its last row, the book's state);
 * - bbo and funding: the receive time and every value: venues send several updates within one
 *   millisecond and the receive clock can repeat a microsecond, so only identical rows collapse;
 * - gaps: stream, reason, receive time and detail.
 * The designated timestamp must be part of the keys (https://questdb.com/docs/query/sql/create-table/#deduplication).
 */
import { TABLES, TABLE_NAMES, type ColumnKind, type TableName } from "../../core/tables.ts";

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
  funding: [
    "timestamp",
    "exchange",
    "symbol",
    "local_timestamp",
    "mark_price",
    "index_price",
    "funding_rate",
    "next_funding_time",
    "current_funding_rate",
  ],
  liquidations: ["timestamp", "exchange", "symbol", "id", "side"],
  gaps: ["timestamp", "exchange", "symbol", "stream", "reason", "local_timestamp", "detail"],
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
