/**
 * The stored tables, shared by every sink so Parquet files and QuestDB tables have the same columns.
 * One table per stream plus `gaps`; documented in docs/data-model.md.
 *
 * Kinds: `symbol` = low-cardinality string (Parquet dictionary-encoded STRING, QuestDB SYMBOL);
 * `timestamp` = integer microseconds since the epoch (Parquet TIMESTAMP(MICROS, UTC), QuestDB TIMESTAMP).
 * In every table `timestamp` is the exchange event time and `local_timestamp` the receive time.
 */
import type { EventType, Stream } from "./events.ts";

export type ColumnKind = "symbol" | "string" | "double" | "long" | "timestamp" | "boolean";

export interface Column {
  readonly name: string;
  readonly kind: ColumnKind;
  /** May be null (a venue that does not send the field). */
  readonly nullable?: boolean;
}

export const TABLE_NAMES = ["trades", "l2", "bbo", "funding", "liquidations", "gaps"] as const;
export type TableName = (typeof TABLE_NAMES)[number];

const ENVELOPE: readonly Column[] = [
  { name: "exchange", kind: "symbol" },
  { name: "symbol", kind: "symbol" },
  { name: "timestamp", kind: "timestamp" },
  { name: "local_timestamp", kind: "timestamp" },
];

export const TABLES: Readonly<Record<TableName, readonly Column[]>> = {
  trades: [
    ...ENVELOPE,
    { name: "id", kind: "string" },
    { name: "side", kind: "symbol" },
    { name: "price", kind: "double" },
    { name: "amount", kind: "double" },
    { name: "base_amount", kind: "double" },
  ],
  l2: [
    ...ENVELOPE,
    { name: "is_snapshot", kind: "boolean" },
    { name: "side", kind: "symbol" },
    { name: "price", kind: "double" },
    { name: "amount", kind: "double" },
    { name: "base_amount", kind: "double" },
    { name: "sequence", kind: "long" },
  ],
  bbo: [
    ...ENVELOPE,
    { name: "bid_price", kind: "double" },
    { name: "bid_amount", kind: "double" },
    { name: "ask_price", kind: "double" },
    { name: "ask_amount", kind: "double" },
  ],
  funding: [
    ...ENVELOPE,
    { name: "mark_price", kind: "double", nullable: true },
    { name: "index_price", kind: "double", nullable: true },
    { name: "funding_rate", kind: "double", nullable: true },
    { name: "next_funding_time", kind: "timestamp", nullable: true },
    { name: "current_funding_rate", kind: "double", nullable: true },
  ],
  liquidations: [
    ...ENVELOPE,
    { name: "id", kind: "string" },
    { name: "side", kind: "symbol" },
    { name: "price", kind: "double" },
    { name: "amount", kind: "double" },
    { name: "base_amount", kind: "double" },
  ],
  gaps: [
    ...ENVELOPE,
    { name: "stream", kind: "symbol" },
    { name: "reason", kind: "symbol" },
    { name: "detail", kind: "string" },
  ],
};

export const TABLE_OF_EVENT: Readonly<Record<EventType, TableName>> = {
  trade: "trades",
  book_change: "l2",
  bbo: "bbo",
  funding: "funding",
  liquidation: "liquidations",
  gap: "gaps",
};

/** The stream whose rows a table holds (`gaps` holds markers of every stream). */
export const STREAM_OF_TABLE: Readonly<Record<Exclude<TableName, "gaps">, Stream>> = {
  trades: "TRADES",
  l2: "L2",
  bbo: "BBO",
  funding: "FUNDING",
  liquidations: "LIQUIDATIONS",
};
