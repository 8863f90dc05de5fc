/**
 * The tables over QuestDB's REST endpoint (GET /exec?query=<sql>, answered with JSON: {"ddl":"OK"} for
 * DDL, {"query","columns":[{name,type}],"dataset":[[...]],"count"} for a query, or 400 with
 * {"query","error","position"}; https://questdb.com/docs/query/rest-api/#exec---execute-queries).
 *
 * For each table: CREATE TABLE IF NOT EXISTS (a no-op when it exists), then its columns as QuestDB has
 * them (`table_columns('t')`: column, type, designated, upsertKey; https://questdb.com/docs/query/functions/meta/#table_columns)
 * compared with what the sink writes. A column QuestDB cannot store our value in would make it refuse
 * every line of the table (over TCP by closing the connection), so it is reported before any row is
 * sent. Which types accept which ILP value is QuestDB's cast table
 * (https://questdb.com/docs/ingestion/ilp/columnset-types/): an ILP symbol only goes into SYMBOL
 * (https://questdb.com/docs/ingestion/ilp/advanced-settings/#symbolset-values), a string into VARCHAR,
 * STRING or SYMBOL, a float into DOUBLE, FLOAT or DECIMAL, an integer into LONG and wider types (not
 * BYTE, SHORT or INT: sequence numbers overflow them, and a cast that loses data refuses the line), a
 * timestamp into TIMESTAMP or TIMESTAMP_NS, a boolean into BOOLEAN or a number type. Columns the table
 * lacks are fine: ILP adds them.
 *
 * DEDUP keys: a table whose keys are missing or a subset of ours (created by ILP without keys, or by an
 * older xtrader whose liquidations key merged a trade's two liquidated sides) gets ours with
 * ALTER TABLE ... DEDUP ENABLE UPSERT KEYS: widening keys never merges rows that were kept apart before.
 * A table with other keys is left alone, with a warning.
 */
import { errorMessage } from "../../core/errors.ts";
import type { Logger } from "../../core/log.ts";
import { TABLES, type ColumnKind, type TableName } from "../../core/tables.ts";
import { DEDUP_KEYS, DESIGNATED_TIMESTAMP, SQL_TYPES, createTableSql } from "./schema.ts";
import type { HttpEndpoint } from "./settings.ts";

/** Column types QuestDB stores each value we send in, ours first. */
export const ACCEPTED_TYPES: Readonly<Record<ColumnKind, readonly string[]>> = {
  symbol: ["SYMBOL"],
  string: ["VARCHAR", "STRING", "SYMBOL"],
  double: ["DOUBLE", "FLOAT", "DECIMAL"],
  long: ["LONG", "DOUBLE", "FLOAT", "DATE", "TIMESTAMP", "DECIMAL"],
  timestamp: ["TIMESTAMP", "TIMESTAMP_NS"],
  boolean: ["BOOLEAN", "BYTE", "SHORT", "INT", "LONG", "FLOAT", "DOUBLE"],
};

export interface ExistingColumn {
  readonly name: string;
  /** QuestDB's type name, e.g. VARCHAR, DECIMAL(18,3). */
  readonly type: string;
  readonly designated: boolean;
  /** Part of the table's DEDUP UPSERT KEYS; undefined when QuestDB does not say (older versions). */
  readonly upsertKey: boolean | undefined;
}

export interface TableComparison {
  /** One entry per column QuestDB cannot store our values in (empty: compatible). */
  readonly problems: readonly string[];
  /** The table's dedup keys, when QuestDB said. */
  readonly keys: readonly string[] | undefined;
  /** `widen`: no keys, or a subset of ours; `other`: keys we do not use. */
  readonly keysVerdict: "same" | "widen" | "other" | "unknown";
}

/** Compares a table's columns with what the sink writes into it. */
export function compareTable(table: TableName, existing: readonly ExistingColumn[]): TableComparison {
  const problems: string[] = [];
  const byName = new Map(existing.map((column) => [column.name, column]));
  for (const column of TABLES[table]) {
    const found = byName.get(column.name);
    if (found === undefined) continue; // ILP adds it
    const type = baseType(found.type);
    const accepted = ACCEPTED_TYPES[column.kind];
    if (!accepted.includes(type)) {
      const others = accepted.slice(1);
      problems.push(
        `column ${column.name} is ${found.type}, expected ${SQL_TYPES[column.kind]}${others.length > 0 ? ` (or ${others.join(", ")})` : ""}`,
      );
    }
  }
  const designated = existing.find((column) => column.designated);
  if (designated === undefined) problems.push(`it has no designated timestamp, expected ${DESIGNATED_TIMESTAMP}`);
  else if (designated.name !== DESIGNATED_TIMESTAMP) problems.push(`its designated timestamp is ${designated.name}, expected ${DESIGNATED_TIMESTAMP}`);

  if (existing.some((column) => column.upsertKey === undefined)) return { problems, keys: undefined, keysVerdict: "unknown" };
  const keys = existing.filter((column) => column.upsertKey).map((column) => column.name);
  const ours = DEDUP_KEYS[table];
  const keysVerdict =
    keys.length === ours.length && keys.every((key) => ours.includes(key))
      ? "same"
      : keys.every((key) => ours.includes(key))
        ? "widen"
        : "other";
  return { problems, keys, keysVerdict };
}

/** DECIMAL(18,3) → DECIMAL, GEOHASH(4b) → GEOHASH. */
function baseType(type: string): string {
  const parenthesis = type.indexOf("(");
  return (parenthesis < 0 ? type : type.slice(0, parenthesis)).trim().toUpperCase();
}

export type TableSetup =
  | { readonly kind: "ready"; readonly table: TableName }
  /** QuestDB refused to create it: rows still go, ILP creates it (without our settings). */
  | { readonly kind: "failed"; readonly table: TableName; readonly error: string }
  /** It exists with columns QuestDB cannot store our values in. */
  | { readonly kind: "incompatible"; readonly table: TableName; readonly problems: readonly string[] };

export type SetupResult =
  | { readonly kind: "done"; readonly tables: readonly TableSetup[] }
  /** QuestDB's HTTP endpoint did not answer; `tables` are those set up before it stopped answering. */
  | { readonly kind: "unreachable"; readonly reason: string; readonly tables: readonly TableSetup[] };

/** Creates (when missing) and checks each table, in order; stops at the first unanswered request. */
export async function setUpTables(
  endpoint: HttpEndpoint,
  tables: readonly TableName[],
  log: Logger,
  timeoutMs: number,
): Promise<SetupResult> {
  const done: TableSetup[] = [];
  for (const table of tables) {
    const created = await execute(endpoint, createTableSql(table), timeoutMs);
    if (created.kind === "unreachable") return { kind: "unreachable", reason: created.reason, tables: done };
    if (created.kind === "error") {
      done.push({ kind: "failed", table, error: created.error });
      continue;
    }
    const checked = await checkTable(endpoint, table, log, timeoutMs);
    if (checked.kind === "unreachable") return { kind: "unreachable", reason: checked.reason, tables: done };
    done.push(checked.kind === "incompatible" ? { kind: "incompatible", table, problems: checked.problems } : { kind: "ready", table });
  }
  return { kind: "done", tables: done };
}

export type TableCheck =
  | { readonly kind: "compatible" }
  | { readonly kind: "incompatible"; readonly problems: readonly string[] }
  /** QuestDB answered, but not with the table's columns (the table does not exist, a proxy...). */
  | { readonly kind: "unknown"; readonly reason: string }
  | { readonly kind: "unreachable"; readonly reason: string };

/** Reads the table's columns and compares them with ours; widens its DEDUP keys where that is safe. */
export async function checkTable(endpoint: HttpEndpoint, table: TableName, log: Logger, timeoutMs: number): Promise<TableCheck> {
  const answer = await execute(endpoint, `SELECT * FROM table_columns('${table}')`, timeoutMs);
  if (answer.kind === "unreachable") return answer;
  if (answer.kind === "error") return { kind: "unknown", reason: answer.error };
  const existing = columnsOf(answer.body);
  if (existing === undefined) return { kind: "unknown", reason: "the answer to table_columns() has no columns" };
  const comparison = compareTable(table, existing);
  if (comparison.problems.length > 0) return { kind: "incompatible", problems: comparison.problems };
  const ours = DEDUP_KEYS[table];
  const theirs = comparison.keys && comparison.keys.length > 0 ? `(${comparison.keys.join(", ")})` : "nothing";
  if (comparison.keysVerdict === "widen") {
    const missing = ours.filter((key) => !existing.some((column) => column.name === key));
    const sql = `ALTER TABLE ${table} DEDUP ENABLE UPSERT KEYS(${ours.join(", ")})`;
    if (missing.length > 0) {
      log.warn(`QuestDB table ${table} deduplicates on ${theirs}, not on xtrader's keys, and lacks ${missing.join(", ")}: run "${sql}" once ILP has added them`);
    } else {
      const altered = await execute(endpoint, sql, timeoutMs);
      if (altered.kind === "ok") {
        log.info(`QuestDB table ${table}: DEDUP UPSERT KEYS set to (${ours.join(", ")}), from ${theirs}, so that re-sent rows collapse and different observations never do`);
      } else {
        log.warn(
          `QuestDB table ${table} deduplicates on ${theirs}, and setting xtrader's keys failed (${altered.kind === "error" ? altered.error : altered.reason}): ` +
            `rows re-sent after a reconnect may be duplicated${comparison.keys!.length > 0 ? ", and rows that differ only outside those keys replace each other" : ""}`,
        );
      }
    }
  } else if (comparison.keysVerdict === "other") {
    log.warn(
      `QuestDB table ${table} deduplicates on ${theirs}, not on xtrader's (${ours.join(", ")}): left as it is; rows that differ only outside its keys replace each other`,
    );
  }
  return { kind: "compatible" };
}

/** The rows of a table_columns() answer, by column name (QuestDB's JSON: columns metadata + dataset). */
function columnsOf(body: unknown): ExistingColumn[] | undefined {
  const answer = body as { columns?: Array<{ name?: unknown }>; dataset?: unknown[][] } | undefined;
  if (!Array.isArray(answer?.columns) || !Array.isArray(answer.dataset)) return undefined;
  const index = (name: string) => answer.columns!.findIndex((column) => column?.name === name);
  const [name, type, designated, upsertKey] = [index("column"), index("type"), index("designated"), index("upsertKey")];
  if (name < 0 || type < 0 || designated < 0) return undefined;
  return answer.dataset.map((row) => ({
    name: String(row[name]),
    type: String(row[type]),
    designated: row[designated] === true,
    upsertKey: upsertKey < 0 ? undefined : row[upsertKey] === true,
  }));
}

type Execution =
  | { readonly kind: "ok"; readonly body: unknown }
  | { readonly kind: "error"; readonly error: string }
  | { readonly kind: "unreachable"; readonly reason: string };

async function execute(endpoint: HttpEndpoint, sql: string, timeoutMs: number): Promise<Execution> {
  let response: Response;
  let text: string;
  try {
    response = await fetch(`${endpoint.baseUrl}/exec?query=${encodeURIComponent(sql)}`, {
      headers: endpoint.headers,
      signal: AbortSignal.timeout(timeoutMs),
      ...(endpoint.tls ? { tls: endpoint.tls } : {}),
    });
    text = await response.text();
  } catch (error) {
    return { kind: "unreachable", reason: errorMessage(error) };
  }
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    body = undefined;
  }
  const error = typeof (body as { error?: unknown })?.error === "string" ? (body as { error: string }).error : undefined;
  // A proxy or a starting server answering 5xx is not QuestDB's verdict on the statement: try again later.
  if (response.status >= 500) return { kind: "unreachable", reason: `HTTP ${response.status}${error ? `: ${error}` : ""}` };
  if (!response.ok) return { kind: "error", error: `HTTP ${response.status}: ${error ?? text.slice(0, 200)}` };
  if (error !== undefined) return { kind: "error", error };
  return { kind: "ok", body };
}
