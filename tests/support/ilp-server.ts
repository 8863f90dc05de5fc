/**
 * A strict InfluxDB line protocol (ILP) server for tests, speaking QuestDB's TCP dialect on 127.0.0.1.
 *
 * Every byte is parsed; anything QuestDB would reject, or that our sink promises never to send, is an
 * error: unescaped separators, unknown escapes, raw newlines in strings, empty names or symbol values,
 * non-finite or out-of-range numbers, duplicate columns, a column whose type changes within a table,
 * invalid UTF-8, a missing designated timestamp. Like QuestDB (line.tcp.disconnect.on.error) the
 * connection is closed at the first error; tests call assertNoErrors() so a malformed line fails them.
 * Grammar: https://questdb.com/docs/ingestion/ilp/advanced-settings/ and .../ilp/columnset-types/
 *
 * For fault tests (reusable by the end-to-end suite): stop/restart on the same port, drop every
 * connection (orderly FIN or abrupt), count rows per table, wait for rows.
 *
 * With `auth`, every connection must first pass QuestDB's ILP/TCP authentication
 * (https://questdb.io/docs/reference/api/ilp/authenticate/): the client sends its key id and `\n`, the
 * server answers a challenge of printable characters and `\n`, the client sends the base64 ECDSA P-256
 * SHA-256 signature of the challenge and `\n`; a wrong key id or signature then closes the connection.
 */
import { randomBytes, verify, type KeyObject } from "node:crypto";
import type { Socket, TCPSocketListener } from "bun";

export type IlpValue =
  | { readonly kind: "string"; readonly value: string }
  | { readonly kind: "long"; readonly value: bigint }
  | { readonly kind: "double"; readonly value: number }
  | { readonly kind: "boolean"; readonly value: boolean }
  /** Non-designated TIMESTAMP column, microseconds (suffix t). */
  | { readonly kind: "timestamp"; readonly value: bigint }
  /** Nanoseconds (suffix n). */
  | { readonly kind: "timestamp_ns"; readonly value: bigint };

export interface IlpRow {
  readonly table: string;
  readonly symbols: Readonly<Record<string, string>>;
  readonly fields: Readonly<Record<string, IlpValue>>;
  /** The designated timestamp as sent (nanoseconds by default). */
  readonly timestamp: bigint | undefined;
}

export type ParseResult =
  | { readonly kind: "row"; readonly row: IlpRow; readonly end: number }
  | { readonly kind: "incomplete" }
  | { readonly kind: "error"; readonly message: string };

const NL = 10;
const CR = 13;
const SPACE = 32;
const COMMA = 44;
const EQUALS = 61;
const QUOTE = 34;
const BACKSLASH = 92;

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;
const NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const FLOAT = /^-?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$/;
const INTEGER = /^-?\d+$/;
const BOOLEANS: Readonly<Record<string, boolean>> = {
  t: true, T: true, true: true, True: true, TRUE: true,
  f: false, F: false, false: false, False: false, FALSE: false,
};
const UNQUOTED_ESCAPABLE = new Set([SPACE, COMMA, EQUALS, BACKSLASH, NL, CR]);
const QUOTED_ESCAPABLE = new Set([QUOTE, BACKSLASH, NL, CR]);

const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

class LineError extends Error {}
class Incomplete extends Error {}

/**
 * Parses one line starting at `start`. Tables and names are plain identifiers (what QuestDB accepts
 * without quoting and what the sink sends); values follow the escaping rules.
 */
export function parseIlpLine(buffer: Uint8Array, start: number, options: { requireTimestamp?: boolean } = {}): ParseResult {
  let i = start;
  const at = (): number => {
    if (i >= buffer.length) throw new Incomplete();
    return buffer[i]!;
  };
  const decode = (bytes: Uint8Array, what: string): string => {
    try {
      return utf8.decode(bytes);
    } catch {
      throw new LineError(`invalid UTF-8 in ${what}`);
    }
  };
  /** The bytes of a token: a view when it had no escapes, else a copy without the backslashes. */
  const token = (from: number, to: number, escapes: number): Uint8Array => {
    if (escapes === 0) return buffer.subarray(from, to);
    const out = new Uint8Array(to - from - escapes);
    let o = 0;
    for (let k = from; k < to; k++) {
      const byte = buffer[k]!;
      if (byte === BACKSLASH) k++;
      out[o++] = buffer[k]!;
    }
    return out;
  };
  /** A name ends at one of `stops`; no escapes allowed in names. */
  const name = (stops: readonly number[], what: string): { text: string; stop: number } => {
    const from = i;
    for (;;) {
      const byte = at();
      i++;
      if (stops.includes(byte)) {
        const text = decode(buffer.subarray(from, i - 1), what);
        if (!NAME.test(text)) throw new LineError(`invalid ${what} '${text}'`);
        return { text, stop: byte };
      }
      if (byte === NL || byte === SPACE || byte === COMMA || byte === EQUALS || byte === BACKSLASH || byte === QUOTE) {
        throw new LineError(`unexpected ${JSON.stringify(String.fromCharCode(byte))} in ${what}`);
      }
    }
  };
  /** An unquoted value: ends at an unescaped comma, space or newline. */
  const unquoted = (what: string): { bytes: Uint8Array; stop: number } => {
    const from = i;
    let escapes = 0;
    for (;;) {
      const byte = at();
      i++;
      if (byte === BACKSLASH) {
        const next = at();
        i++;
        if (!UNQUOTED_ESCAPABLE.has(next)) throw new LineError(`invalid escape \\${String.fromCharCode(next)} in ${what}`);
        escapes++;
        continue;
      }
      if (byte === COMMA || byte === SPACE || byte === NL) return { bytes: token(from, i - 1, escapes), stop: byte };
      if (byte === EQUALS) throw new LineError(`unescaped '=' in ${what}`);
      if (byte === CR) throw new LineError(`unescaped carriage return in ${what}`);
    }
  };
  const quoted = (what: string): string => {
    const from = i;
    let escapes = 0;
    for (;;) {
      const byte = at();
      i++;
      if (byte === QUOTE) return decode(token(from, i - 1, escapes), what);
      if (byte === BACKSLASH) {
        const next = at();
        i++;
        if (!QUOTED_ESCAPABLE.has(next)) throw new LineError(`invalid escape \\${String.fromCharCode(next)} in ${what}`);
        escapes++;
        continue;
      }
      if (byte === NL || byte === CR) throw new LineError(`unescaped line break in ${what}`);
    }
  };

  try {
    const table = name([COMMA, SPACE], "table name");
    const symbols: Record<string, string> = {};
    const fields: Record<string, IlpValue> = {};
    let stop = table.stop;
    while (stop === COMMA) {
      const symbolName = name([EQUALS], "symbol name").text;
      if (symbolName in symbols) throw new LineError(`duplicate symbol '${symbolName}'`);
      const value = unquoted(`symbol ${symbolName}`);
      if (value.bytes.length === 0) throw new LineError(`empty value for symbol '${symbolName}'`);
      if (value.stop === NL) throw new LineError("line ends without fields");
      symbols[symbolName] = decode(value.bytes, `symbol ${symbolName}`);
      stop = value.stop;
    }
    // stop is SPACE: the column set follows.
    for (;;) {
      const fieldName = name([EQUALS], "column name").text;
      if (fieldName in fields || fieldName in symbols) throw new LineError(`duplicate column '${fieldName}'`);
      if (at() === QUOTE) {
        i++;
        fields[fieldName] = { kind: "string", value: quoted(`string ${fieldName}`) };
        const after = at();
        i++;
        if (after !== COMMA && after !== SPACE && after !== NL) throw new LineError(`unexpected byte after string ${fieldName}`);
        stop = after;
      } else {
        const value = unquoted(`column ${fieldName}`);
        fields[fieldName] = scalar(decode(value.bytes, `column ${fieldName}`), fieldName);
        stop = value.stop;
      }
      if (stop !== COMMA) break;
    }
    let timestamp: bigint | undefined;
    if (stop === SPACE) {
      const from = i;
      while (at() !== NL) i++;
      i++;
      const text = Buffer.from(buffer.subarray(from, i - 1)).toString("latin1");
      if (!INTEGER.test(text)) throw new LineError(`invalid designated timestamp '${text}'`);
      timestamp = BigInt(text);
      if (timestamp < INT64_MIN || timestamp > INT64_MAX) throw new LineError(`designated timestamp out of range '${text}'`);
    } else if (options.requireTimestamp !== false) {
      throw new LineError("missing designated timestamp");
    }
    return { kind: "row", row: { table: table.text, symbols, fields, timestamp }, end: i };
  } catch (error) {
    if (error instanceof Incomplete) return { kind: "incomplete" };
    if (error instanceof LineError) return { kind: "error", message: error.message };
    throw error;
  }
}

function scalar(text: string, column: string): IlpValue {
  if (text === "") throw new LineError(`empty value for column '${column}'`);
  const last = text[text.length - 1]!;
  const body = text.slice(0, -1);
  if (last === "i") {
    if (!INTEGER.test(body)) throw new LineError(`invalid integer '${text}' in ${column}`);
    const value = BigInt(body);
    if (value < INT64_MIN || value > INT64_MAX) throw new LineError(`integer out of range '${text}' in ${column}`);
    return { kind: "long", value };
  }
  if (last === "t" || last === "n") {
    if (INTEGER.test(body)) {
      const value = BigInt(body);
      if (value < INT64_MIN || value > INT64_MAX) throw new LineError(`timestamp out of range '${text}' in ${column}`);
      return last === "t" ? { kind: "timestamp", value } : { kind: "timestamp_ns", value };
    }
  }
  if (text in BOOLEANS) return { kind: "boolean", value: BOOLEANS[text]! };
  if (FLOAT.test(text)) {
    const value = Number(text);
    if (!Number.isFinite(value)) throw new LineError(`non-finite number '${text}' in ${column}`);
    return { kind: "double", value };
  }
  throw new LineError(`unrecognised value '${text}' in ${column}`);
}

/** Column kinds seen per table: a column never changes type (QuestDB rejects the line). */
export class SchemaTracker {
  private readonly kinds = new Map<string, Map<string, string>>();

  check(row: IlpRow): string | undefined {
    let columns = this.kinds.get(row.table);
    if (!columns) {
      columns = new Map();
      this.kinds.set(row.table, columns);
    }
    const entries: Array<[string, string]> = [
      ...Object.keys(row.symbols).map((name): [string, string] => [name, "symbol"]),
      ...Object.entries(row.fields).map(([name, value]): [string, string] => [name, value.kind]),
    ];
    for (const [name, kind] of entries) {
      const known = columns.get(name);
      if (known === undefined) columns.set(name, kind);
      else if (known !== kind) return `column ${row.table}.${name} was ${known}, now ${kind}`;
    }
    return undefined;
  }
}

/** One table as QuestDB keeps it: typed columns, designated timestamp, DEDUP UPSERT KEYS, stored rows. */
export interface CatalogTable {
  /** Column name → QuestDB type name (SYMBOL, VARCHAR, DOUBLE, LONG, TIMESTAMP, BOOLEAN, ...), in order. */
  readonly columns: Map<string, string>;
  readonly designated: string;
  /** DEDUP UPSERT KEYS; undefined when the table does not deduplicate (e.g. created by ILP). */
  dedupKeys: readonly string[] | undefined;
  /** Rows as stored: one per dedup key, the last one received wins (in the first one's place). */
  readonly rows: IlpRow[];
  readonly index: Map<string, number>;
}

/** Column types an ILP value may be written to (https://questdb.com/docs/ingestion/ilp/columnset-types/). */
const ILP_TARGETS: Readonly<Record<IlpValue["kind"] | "symbol", readonly string[]>> = {
  // Symbolset values: "when the column does exist, it is expected to be of SYMBOL type, otherwise the line
  // is rejected" (https://questdb.com/docs/ingestion/ilp/advanced-settings/#symbolset-values).
  symbol: ["SYMBOL"],
  string: ["VARCHAR", "STRING", "SYMBOL", "CHAR", "UUID", "DECIMAL"],
  double: ["DOUBLE", "FLOAT", "DECIMAL"],
  long: ["LONG", "BYTE", "SHORT", "INT", "FLOAT", "DOUBLE", "DATE", "TIMESTAMP", "DECIMAL"],
  boolean: ["BOOLEAN", "BYTE", "SHORT", "INT", "FLOAT", "LONG", "DOUBLE"],
  timestamp: ["TIMESTAMP", "TIMESTAMP_NS"],
  timestamp_ns: ["TIMESTAMP", "TIMESTAMP_NS"],
};
/** The type ILP gives a column it creates. */
const ILP_CREATES: Readonly<Record<IlpValue["kind"] | "symbol", string>> = {
  symbol: "SYMBOL",
  string: "VARCHAR",
  double: "DOUBLE",
  long: "LONG",
  boolean: "BOOLEAN",
  timestamp: "TIMESTAMP",
  timestamp_ns: "TIMESTAMP",
};
const PROTOCOL_TYPE: Readonly<Record<IlpValue["kind"] | "symbol", string>> = {
  symbol: "TAG",
  string: "STRING",
  double: "DOUBLE",
  long: "LONG",
  boolean: "BOOLEAN",
  timestamp: "TIMESTAMP",
  timestamp_ns: "TIMESTAMP",
};
const INTEGER_RANGES: Readonly<Record<string, readonly [bigint, bigint]>> = {
  BYTE: [-128n, 127n],
  SHORT: [-32768n, 32767n],
  INT: [-(2n ** 31n) + 1n, 2n ** 31n - 1n],
};
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * What QuestDB knows about its tables, shared by the fake ILP server and the fake HTTP endpoint so that
 * they behave as one database:
 * - `exec()` answers the SQL the sink sends over /exec: CREATE TABLE IF NOT EXISTS (with DEDUP UPSERT
 *   KEYS), `table_columns('t')` / `SHOW COLUMNS FROM t` (QuestDB's column names and JSON shape,
 *   https://questdb.com/docs/query/functions/meta/#table_columns), ALTER TABLE ... DEDUP ENABLE;
 * - `admit()` checks a row like QuestDB's ILP: a missing table or column is created from the value's
 *   type, an existing column must be of a type the value can be cast to, else the line is refused
 *   ("cast error"), which over TCP closes the connection;
 * - `store()` keeps rows with QuestDB's deduplication: a row whose UPSERT KEYS match a stored row
 *   replaces it (https://questdb.com/docs/concepts/deduplication/), so a key that merges two different
 *   observations loses one of them, as it would in QuestDB.
 */
export class QuestDbCatalog {
  readonly tables = new Map<string, CatalogTable>();

  /** A table as someone else created it (tests of hostile pre-existing tables). */
  createTable(name: string, columns: Readonly<Record<string, string>>, options: { designated?: string; dedupKeys?: readonly string[] } = {}): void {
    this.tables.set(name, {
      columns: new Map(Object.entries(columns).map(([column, type]) => [column, type.toUpperCase()])),
      designated: options.designated ?? "timestamp",
      dedupKeys: options.dedupKeys,
      rows: [],
      index: new Map(),
    });
  }

  /** The answer QuestDB's /exec gives to `sql`, for the statements the sink sends. */
  exec(sql: string): { status: number; body: unknown } {
    const error = (message: string) => ({ status: 400, body: { query: sql, error: message, position: 0 } });
    const create = /^CREATE TABLE IF NOT EXISTS (\w+) \((.*)\) TIMESTAMP\((\w+)\) PARTITION BY DAY WAL DEDUP UPSERT KEYS\((.*)\)$/.exec(sql);
    if (create) {
      const [, name, columns, designated, keys] = create as unknown as [string, string, string, string, string];
      if (!this.tables.has(name)) {
        const definition = Object.fromEntries(columns.split(", ").map((column) => column.split(" ") as [string, string]));
        const dedupKeys = keys.split(", ");
        for (const key of dedupKeys) if (!(key in definition)) return error(`deduplicate key column not found [column=${key}]`);
        this.createTable(name, definition, { designated, dedupKeys });
      }
      return { status: 200, body: { ddl: "OK" } };
    }
    const columns = /^(?:SELECT \* FROM )?table_columns\('(\w+)'\);?$/.exec(sql) ?? /^SHOW COLUMNS FROM (\w+);?$/.exec(sql);
    if (columns) {
      const table = this.tables.get(columns[1]!);
      if (!table) return error(`table does not exist [table=${columns[1]}]`);
      const names = ["column", "type", "indexed", "indexBlockCapacity", "symbolCached", "symbolCapacity", "designated", "upsertKey"];
      const types = ["STRING", "STRING", "BOOLEAN", "INT", "BOOLEAN", "INT", "BOOLEAN", "BOOLEAN"];
      const dataset = [...table.columns].map(([column, type]) => [
        column,
        type,
        false,
        0,
        type === "SYMBOL",
        type === "SYMBOL" ? 128 : 0,
        column === table.designated,
        table.dedupKeys?.includes(column) ?? false,
      ]);
      return {
        status: 200,
        body: { query: sql, columns: names.map((name, i) => ({ name, type: types[i] })), timestamp: -1, dataset, count: dataset.length },
      };
    }
    const dedup = /^ALTER TABLE (\w+) DEDUP ENABLE UPSERT KEYS\((.*)\)$/.exec(sql);
    if (dedup) {
      const table = this.tables.get(dedup[1]!);
      if (!table) return error(`table does not exist [table=${dedup[1]}]`);
      const keys = dedup[2]!.split(", ");
      for (const key of keys) if (!table.columns.has(key)) return error(`deduplicate key column not found [column=${key}]`);
      if (!keys.includes(table.designated)) return error("deduplicate key list must include dedicated timestamp column");
      table.dedupKeys = keys;
      return { status: 200, body: { ddl: "OK" } };
    }
    return error("this fake QuestDB does not know the statement");
  }

  /** Checks a row against its table (creating what ILP creates); returns QuestDB's refusal, if any. */
  admit(row: IlpRow): string | undefined {
    let table = this.tables.get(row.table);
    if (!table) {
      this.createTable(row.table, { timestamp: "TIMESTAMP" });
      table = this.tables.get(row.table)!;
    }
    const values: Array<[string, IlpValue["kind"] | "symbol", IlpValue | undefined]> = [
      ...Object.keys(row.symbols).map((name): [string, "symbol", undefined] => [name, "symbol", undefined]),
      ...Object.entries(row.fields).map(([name, value]): [string, IlpValue["kind"], IlpValue] => [name, value.kind, value]),
    ];
    for (const [name, kind, value] of values) {
      const type = table.columns.get(name);
      if (type === undefined) continue;
      const refused = `table: ${row.table}, column: ${name}; cast error from protocol type: ${PROTOCOL_TYPE[kind]} to column type: ${type}`;
      if (!ILP_TARGETS[kind].includes(type)) return refused;
      // Casts that would lose data refuse the line too.
      if (value?.kind === "long" && type in INTEGER_RANGES) {
        const [min, max] = INTEGER_RANGES[type]!;
        if (value.value < min || value.value > max) return refused;
      }
      if (value?.kind === "string" && type === "CHAR" && value.value.length > 1) return refused;
      if (value?.kind === "string" && type === "UUID" && !UUID.test(value.value)) return refused;
      if (value?.kind === "string" && type === "DECIMAL" && !/^-?\d+(\.\d+)?$/.test(value.value)) return refused;
    }
    for (const [name, kind] of values) if (!table.columns.has(name)) table.columns.set(name, ILP_CREATES[kind]);
    return undefined;
  }

  /** Stores an admitted row, deduplicated on its table's UPSERT KEYS. */
  store(row: IlpRow): void {
    const table = this.tables.get(row.table);
    if (!table) return;
    if (table.dedupKeys === undefined) {
      table.rows.push(row);
      return;
    }
    const key = table.dedupKeys.map((name) => keyValue(row, name, table.designated)).join("\u0000");
    const at = table.index.get(key);
    if (at !== undefined) {
      table.rows[at] = row;
      return;
    }
    table.index.set(key, table.rows.length);
    table.rows.push(row);
  }

  /** The rows a table holds, as QuestDB would return them (before ordering by timestamp). */
  stored(table: string): IlpRow[] {
    return this.tables.get(table)?.rows ?? [];
  }
}

/** A column's value in a row as a dedup key part (the designated timestamp in µs, as QuestDB stores it). */
function keyValue(row: IlpRow, name: string, designated: string): string {
  if (name === designated) return row.timestamp === undefined ? "NULL" : String(row.timestamp / 1000n);
  if (name in row.symbols) return `s:${row.symbols[name]}`;
  const value = row.fields[name];
  return value === undefined ? "NULL" : `${value.kind}:${String(value.value)}`;
}

/** Incremental parser for one stream of bytes (a TCP connection or an HTTP body). */
export class IlpStreamParser {
  private pending: Uint8Array = new Uint8Array(0);
  failed: string | undefined;
  /** The line was well formed but the database refused it (`failed` says why), as QuestDB does on a cast error. */
  refused = false;

  constructor(
    private readonly schema: SchemaTracker,
    private readonly onRow: (row: IlpRow) => void,
    /** Checks a row against the tables (QuestDbCatalog.admit): a message refuses it. */
    private readonly admit?: (row: IlpRow) => string | undefined,
  ) {}

  /** Bytes of an unfinished line. */
  get pendingBytes(): number {
    return this.pending.length;
  }

  feed(data: Uint8Array): void {
    if (this.failed !== undefined) return;
    const buffer = this.pending.length === 0 ? data : concat(this.pending, data);
    let offset = 0;
    while (offset < buffer.length) {
      const result = parseIlpLine(buffer, offset);
      if (result.kind === "incomplete") break;
      if (result.kind === "error") {
        this.failed = `${result.message} in line ${JSON.stringify(excerpt(buffer, offset))}`;
        this.pending = new Uint8Array(0);
        return;
      }
      const conflict = this.schema.check(result.row);
      if (conflict !== undefined) {
        this.failed = `${conflict} in line ${JSON.stringify(excerpt(buffer, offset))}`;
        return;
      }
      const refusal = this.admit?.(result.row);
      if (refusal !== undefined) {
        this.failed = `${refusal} in line ${JSON.stringify(excerpt(buffer, offset))}`;
        this.refused = true;
        return;
      }
      this.onRow(result.row);
      offset = result.end;
    }
    this.pending = buffer.slice(offset);
  }
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

function excerpt(buffer: Uint8Array, offset: number): string {
  const end = Math.min(buffer.length, offset + 300);
  return Buffer.from(buffer.subarray(offset, end)).toString("utf8");
}

interface ConnectionState {
  readonly id: number;
  readonly parser: IlpStreamParser;
  /** Authentication: what the server waits for (undefined: authenticated, or no auth configured). */
  auth?: { phase: "key" | "signature"; text: string; challenge: string; keyId?: string };
  /** The server closed it (drop/stop): an unfinished line is expected, not an error. */
  closedByServer: boolean;
}

export interface IlpServerOptions {
  /** Port to listen on; 0 (default) picks a free one, kept across restart(). */
  readonly port?: number;
  /** Require ILP/TCP authentication with this key id and P-256 public key. */
  readonly auth?: { readonly keyId: string; readonly publicKey: KeyObject };
  /** Speak TLS (QuestDB's `tcps`) with this certificate and key (PEM). */
  readonly tls?: { readonly cert: string; readonly key: string };
  /** The database's tables, shared with a FakeQuestDbHttp (default: a fresh one, filled by ILP alone). */
  readonly catalog?: QuestDbCatalog;
}

export class IlpServer {
  /** Every row received, in order, re-sent copies included (what is stored: storedRows()). */
  readonly rows: IlpRow[] = [];
  readonly errors: string[] = [];
  /**
   * Well-formed lines the tables refused (a cast error), each closing its connection as QuestDB does
   * (https://questdb.com/docs/ingestion/ilp/advanced-settings/#error-handling). Not an error of the test.
   */
  readonly refusals: string[] = [];
  /** Connections accepted since start, across restarts. */
  connectionsAccepted = 0;
  /** Unfinished lines thrown away because the server closed the connection (QuestDB does the same). */
  discardedPartialLines = 0;
  /**
   * Unfinished lines left by a client that closed its connection mid-line. QuestDB discards them; a
   * client only does this when it gives a connection up (a stalled write), so tests assert it is 0
   * unless that is the scenario.
   */
  abandonedPartialLines = 0;
  /** While true, every new connection is closed as soon as it is accepted (a server refusing clients). */
  closeOnAccept = false;
  /** Connections that authenticated, and those closed for a wrong key id or signature (with `auth`). */
  authenticated = 0;
  readonly authFailures: string[] = [];
  private listener: TCPSocketListener<ConnectionState> | undefined;
  private readonly sockets = new Set<Socket<ConnectionState>>();
  private readonly schema = new SchemaTracker();
  private listeners: Array<() => void> = [];
  private nextId = 1;

  private constructor(
    public port: number,
    /** Changeable while running: the key QuestDB's authentication file lists (for new connections). */
    public auth: IlpServerOptions["auth"],
    private readonly tls: IlpServerOptions["tls"],
    readonly catalog: QuestDbCatalog,
  ) {}

  static async start(options: IlpServerOptions = {}): Promise<IlpServer> {
    const server = new IlpServer(options.port ?? 0, options.auth, options.tls, options.catalog ?? new QuestDbCatalog());
    server.listen();
    return server;
  }

  /** A port with nothing listening (for "QuestDB down at start"); restart() later listens on it. */
  static async reservePort(options: Omit<IlpServerOptions, "port"> = {}): Promise<IlpServer> {
    const server = await IlpServer.start(options);
    await server.stop();
    return server;
  }

  get listening(): boolean {
    return this.listener !== undefined;
  }

  get openConnections(): number {
    return this.sockets.size;
  }

  private listen(): void {
    this.listener = Bun.listen<ConnectionState>({
      hostname: "127.0.0.1",
      port: this.port,
      tls: this.tls,
      socket: {
        open: (socket) => {
          this.connectionsAccepted++;
          const id = this.nextId++;
          socket.data = {
            id,
            closedByServer: false,
            parser: new IlpStreamParser(
              this.schema,
              (row) => {
                this.rows.push(row);
                this.catalog.store(row);
              },
              (row) => this.catalog.admit(row),
            ),
            auth: this.auth ? { phase: "key", text: "", challenge: "" } : undefined,
          };
          this.sockets.add(socket);
          if (this.closeOnAccept) {
            socket.data.closedByServer = true;
            socket.end();
          }
          this.notify();
        },
        data: (socket, data) => {
          const state = socket.data;
          if (state.closedByServer) return;
          if (state.auth) {
            const rest = this.authenticate(socket, Buffer.from(data));
            if (rest === undefined) return;
            data = rest;
          }
          state.parser.feed(data);
          if (state.parser.failed !== undefined) {
            (state.parser.refused ? this.refusals : this.errors).push(`connection ${state.id}: ${state.parser.failed}`);
            state.closedByServer = true;
            socket.end();
          }
          this.notify();
        },
        close: (socket) => {
          const state = socket.data;
          this.sockets.delete(socket);
          if (state && state.parser.pendingBytes > 0 && state.parser.failed === undefined) {
            if (state.closedByServer) this.discardedPartialLines++;
            else this.abandonedPartialLines++;
          }
          this.notify();
        },
        error: (socket, error) => {
          // A reset by the peer is how a client may go away; only record it.
          void socket;
          void error;
        },
      },
    });
    this.port = this.listener.port;
  }

  /** Runs the challenge-response; returns the bytes after it once authenticated (ILP from then on). */
  private authenticate(socket: Socket<ConnectionState>, data: Buffer): Buffer | undefined {
    const auth = socket.data.auth!;
    const { keyId, publicKey } = this.auth!;
    let bytes = data;
    for (;;) {
      const newline = bytes.indexOf(10);
      if (newline < 0) {
        auth.text += Buffer.from(bytes).toString("latin1");
        return undefined;
      }
      const line = auth.text + Buffer.from(bytes.subarray(0, newline)).toString("latin1");
      auth.text = "";
      bytes = bytes.subarray(newline + 1);
      const fail = (reason: string) => {
        this.authFailures.push(`connection ${socket.data.id}: ${reason}`);
        socket.data.closedByServer = true;
        socket.end();
        this.notify();
        return undefined;
      };
      if (auth.phase === "key") {
        // QuestDB sends a random challenge of printable characters whatever the key id, and says no only
        // after the signature (LineTcpAuthConnectionContext: "authentication failed, unknown key id").
        auth.keyId = line;
        auth.challenge = randomBytes(48).toString("base64");
        auth.phase = "signature";
        socket.write(`${auth.challenge}\n`);
        continue;
      }
      if (auth.keyId !== keyId) return fail(`unknown key id '${auth.keyId}'`);
      const signature = Buffer.from(line, "base64");
      const challenge = Buffer.from(auth.challenge, "latin1");
      // DER (what node's crypto.sign gives) or raw r||s (WebCrypto's form, in QuestDB's own example).
      const valid =
        verify("sha256", challenge, publicKey, signature) ||
        (signature.length === 64 && verify("sha256", challenge, { key: publicKey, dsaEncoding: "ieee-p1363" }, signature));
      if (!valid) return fail("signature does not verify");
      socket.data.auth = undefined;
      this.authenticated++;
      this.notify();
      return bytes;
    }
  }

  /** Stops listening and closes every connection (QuestDB going down). */
  async stop(): Promise<void> {
    for (const socket of this.sockets) socket.data.closedByServer = true;
    this.listener?.stop(true);
    this.listener = undefined;
    await this.waitFor(() => this.sockets.size === 0 || undefined, 2000, "connections to close").catch(() => undefined);
  }

  /** Listens again on the same port (QuestDB back after a restart). */
  async restart(): Promise<void> {
    if (this.listener) await this.stop();
    this.listen();
  }

  /**
   * Closes every open connection from the server side while still listening: "close" sends FIN (QuestDB
   * closing an idle or failed connection), "reset" aborts the socket. Returns how many were closed.
   */
  dropConnections(mode: "close" | "reset" = "close"): number {
    let count = 0;
    for (const socket of this.sockets) {
      socket.data.closedByServer = true;
      if (mode === "close") socket.end();
      else socket.terminate();
      count++;
    }
    return count;
  }

  /** The rows QuestDB would hold: per table, deduplicated on its DEDUP UPSERT KEYS (see QuestDbCatalog). */
  storedRows(table?: string): IlpRow[] {
    if (table !== undefined) return this.catalog.stored(table);
    return [...this.catalog.tables.keys()].flatMap((name) => this.catalog.stored(name));
  }

  rowsIn(table: string): IlpRow[] {
    return this.rows.filter((row) => row.table === table);
  }

  countRows(table?: string): number {
    return table === undefined ? this.rows.length : this.rows.reduce((count, row) => count + (row.table === table ? 1 : 0), 0);
  }

  countsByTable(): Record<string, number> {
    const counts: Record<string, number> = {};
    for (const row of this.rows) counts[row.table] = (counts[row.table] ?? 0) + 1;
    return counts;
  }

  /** Throws with every recorded protocol error: call it in each test that sends lines. */
  assertNoErrors(): void {
    if (this.errors.length > 0) throw new Error(`ILP server saw malformed input:\n${this.errors.join("\n")}`);
  }

  waitForRows(count: number, table?: string, timeoutMs = 5000): Promise<IlpRow[]> {
    return this.waitFor(
      () => {
        this.assertNoErrors();
        return this.countRows(table) >= count ? (table === undefined ? this.rows : this.rowsIn(table)) : undefined;
      },
      timeoutMs,
      `${count} row(s)${table ? ` in ${table}` : ""} (have ${this.countRows(table)})`,
    );
  }

  /** Resolves with the first truthy value of `check`, re-evaluated on every server event and every 20 ms. */
  waitFor<T>(check: () => T | undefined | false, timeoutMs: number, what: string): Promise<T> {
    return new Promise((resolve, reject) => {
      let done = false;
      const finish = (error: Error | undefined, value?: T) => {
        if (done) return;
        done = true;
        clearTimeout(deadline);
        clearInterval(poll);
        if (error) reject(error);
        else resolve(value as T);
      };
      const attempt = (): void => {
        if (done) return;
        try {
          const value = check();
          if (value !== undefined && value !== false) finish(undefined, value);
        } catch (error) {
          finish(error as Error);
        }
      };
      const subscribe = (): void => {
        this.listeners.push(() => {
          attempt();
          if (!done) subscribe();
        });
      };
      const deadline = setTimeout(() => finish(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)), timeoutMs);
      const poll = setInterval(attempt, 20);
      attempt();
      if (!done) subscribe();
    });
  }

  private notify(): void {
    const listeners = this.listeners;
    this.listeners = [];
    for (const listener of listeners) listener();
  }
}
